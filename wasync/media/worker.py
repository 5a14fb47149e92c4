"""The media worker: one per node, it takes PENDING media and runs them to an outcome.

Ingest never waits for it: a new media message is PENDING in the transaction that stores it,
and the worker hears of it after the commit (it subscribes to the pipeline) or, for rows other
nodes stored, within `poll_interval_s`. It claims due rows through the one writer
(`MediaClaim`: a lease, so several nodes never fetch the same file), URLs that may expire
first (WAHA deletes files after 180 s), at most `concurrency` downloads in flight and
`per_session` per session, and hands each outcome back as a command.

`own(session_ids)` says which sessions this node serves (the per-session leases: default
all); `offer(events)` keeps files a webhook carried inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Self

import httpx
from sqlalchemy import func, or_, select

from wasync.config import MediaConfig, PollConfig
from wasync.eventlog import NEW_MESSAGE, PublishedEvent
from wasync.events import (
    Event,
    MediaClaim,
    MediaCommand,
    MediaExpired,
    MediaFailed,
    MediaStatus,
    MediaStored,
)
from wasync.media.fetch import Fetcher, kept_reason
from wasync.media.job import InlineFiles, MediaJob
from wasync.media.store import MediaStore
from wasync.metrics import Metrics
from wasync.pipeline import Pipeline
from wasync.registry import Registry
from wasync.store import Store
from wasync.store import models as m

log = logging.getLogger(__name__)

T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
DRAIN_S = 5.0  # on stop, downloads in flight get this long; the rest are released
# After a commit announced new messages, wait this long for the ones right behind them: a
# burst of webhooks is one claim (one write) instead of one claim each.
GATHER_S = 0.05


class MediaWorker:
    """Fetches PENDING media (see the module docstring). Use as an async context manager;
    `only` limits it to these message ids (`wasync backfill --media`)."""

    def __init__(
        self,
        cfg: MediaConfig,
        *,
        pipeline: Pipeline,
        store: Store,
        media: MediaStore,
        registry: Registry,
        client: httpx.AsyncClient,
        poll: PollConfig,
        metrics: Metrics | None = None,
        only: Sequence[int] | None = None,
    ) -> None:
        self.cfg, self.pipeline, self.store, self.metrics = cfg, pipeline, store, metrics
        self.inline = InlineFiles()
        self.fetcher = Fetcher(
            cfg,
            store=store,
            media=media,
            registry=registry,
            client=client,
            poll=poll,
            inline=self.inline,
        )
        self.only = tuple(only) if only is not None else None
        self.outcomes: Counter[str] = Counter()
        self._owned: frozenset[int] | None = None
        self._wake = asyncio.Event()
        self._news = False  # the last wake-up was new messages (gather a moment)
        self._stopping = asyncio.Event()
        self._inflight: dict[int, MediaJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_session: defaultdict[int, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(cfg.per_session)
        )
        self._loops: list[asyncio.Task[None]] = []
        self.idle = asyncio.Event()  # set when a claim found nothing and nothing is in flight

    # --- what the rest of the node tells it ---------------------------------------------------

    def own(self, session_ids: Iterable[int] | None) -> None:
        """Serve only these sessions' media (None: every session), e.g. the leases held."""
        self._owned = frozenset(session_ids) if session_ids is not None else None
        self._wake.set()

    def publish(self, events: Sequence[PublishedEvent]) -> None:
        """Pipeline subscriber: new messages may have media to fetch; look now."""
        if any(e.type == NEW_MESSAGE for e in events):
            self._news = True
            self._wake.set()

    def offer(self, events: Iterable[Event]) -> None:
        """Keep the files these webhook events carried inline (before they are ingested)."""
        self.inline.offer(events)

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._loops.append(asyncio.create_task(self._run(), name="wasync-media-worker"))
        if self.metrics is not None and self.only is None:
            self._loops.append(asyncio.create_task(self._gauge(), name="wasync-media-gauge"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop claiming; let downloads in flight finish for `DRAIN_S`, release the rest."""
        self._stopping.set()
        self._wake.set()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=DRAIN_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for job in list(self._inflight.values()):  # cancelled: free for another node now
            reason = kept_reason(job, "interrupted")
            release = MediaFailed(
                message_id=job.id, attempts=job.attempts, reason=reason, retry_in_s=0
            )
            await self._settle(job, release)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            if self._news:
                self._news = False
                await asyncio.sleep(GATHER_S)
            self._wake.clear()
            try:
                claimed = await self._claim()
            except Exception:  # the loop must survive a store outage
                log.exception("media worker: claim failed")
                claimed = []
            for job in claimed:
                self._start(job)
            if not claimed and not self._inflight:
                self.idle.set()
            if not claimed or len(self._inflight) >= self.cfg.concurrency:
                await self._pause(self.cfg.poll_interval_s)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _claim(self) -> list[MediaJob]:
        free = self.cfg.concurrency - len(self._inflight)
        if free <= 0 or not await self._anything_due():
            return []
        busy = Counter(job.session_id for job in self._inflight.values())
        command = MediaClaim(
            limit=free,
            per_session=self.cfg.per_session,
            lease_s=self.cfg.lease_s,
            sessions=self._owned,
            exclude=frozenset(s for s, n in busy.items() if n >= self.cfg.per_session),
            message_ids=self.only,
        )
        rows = await self.pipeline.execute(command, source="media")
        return [MediaJob.of(row) for row in rows]

    async def _anything_due(self) -> bool:
        """A read first: an idle worker must not take SQLite's write lock at every look."""
        c = T_MESSAGES.c
        due = or_(c.media_next_at.is_(None), c.media_next_at <= datetime.now(UTC))
        q = select(c.id).where(c.media_status == MediaStatus.PENDING.value, due)
        if self._owned is not None:
            q = q.where(c.session_id.in_(sorted(self._owned)))
        if self.only is not None:
            q = q.where(c.id.in_(self.only))
        async with self.store.read() as conn:
            return (await conn.execute(q.limit(1))).first() is not None

    def _start(self, job: MediaJob) -> None:
        self.idle.clear()
        self._inflight[job.id] = job
        task = asyncio.create_task(self._job(job), name=f"wasync-media-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _job(self, job: MediaJob) -> None:
        try:
            async with self._per_session[job.session_id]:
                outcome = await self.fetcher.run(job)
            await self._settle(job, outcome)
        except Exception:  # one job's bug must not stop the others: retry it later
            log.exception("media job %s failed", job.id)
            retry = self.cfg.retry_delay_s
            await self._settle(
                job,
                MediaFailed(
                    message_id=job.id,
                    attempts=job.attempts,
                    reason=kept_reason(job, "internal"),
                    retry_in_s=retry,
                ),
            )
        finally:
            self._wake.set()

    async def _settle(self, job: MediaJob, outcome: MediaCommand) -> None:
        """Record the outcome through the one writer; count it."""
        self._inflight.pop(job.id, None)
        try:
            await self.pipeline.execute(outcome, source="media")
        except Exception:  # the lease runs out and another attempt comes
            log.exception("media job %s: could not record its outcome", job.id)
            return
        name = _outcome_name(outcome)
        self.outcomes[name] += 1
        if self.metrics is not None:
            self.metrics.media.labels(outcome=name).inc()
        if name != "stored":
            log.info("media of message %s: %s (%s)", job.id, name, getattr(outcome, "reason", ""))

    async def _gauge(self) -> None:
        """`wasync_media_pending`: messages whose media waits (all nodes: one database)."""
        assert self.metrics is not None
        q = select(func.count()).where(T_MESSAGES.c.media_status == MediaStatus.PENDING.value)
        while not self._stopping.is_set():
            try:
                async with self.store.read() as conn:
                    self.metrics.media_pending.set(int((await conn.execute(q)).scalar() or 0))
            except Exception:
                log.exception("media gauge refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.cfg.poll_interval_s * 5)


def _outcome_name(outcome: MediaCommand) -> str:
    if isinstance(outcome, MediaStored):
        return "stored"
    if isinstance(outcome, MediaExpired):
        return "expired"
    if isinstance(outcome, MediaFailed):
        return "retry" if outcome.retry_in_s is not None else "failed"
    return "other"
