"""`Pipeline`: the queue in front of the one writer, and group commit.

Poller, webhook, backfill and replay hand events to `ingest()`; the outbox, the sender and
REST hand commands to `execute()`. Concurrent callers are grouped: one writer task commits up
to `batch_max_events` events (or whatever arrived within `batch_max_wait_ms`) in a single
transaction (`wasync.ingest.Tx`) and answers every caller when it commits. A job that fails
is retried alone, so one bad caller never fails its neighbours. New event-log rows are
published to subscribers (the real-time hub) only after the commit.

One bad event never fails its job either. Events are normalized before they are queued
(`wasync.ingest.normalize`: text cleaned, keys checked against their columns); a key that
does not fit is refused there. A job whose transaction the store still refuses (after one
more try when the error was a deadlock or serialization failure) is committed in halves,
recursively, down to the events the store refuses one by one (at most 2n - 1 transactions
for n events, only on that path). Refused events are kept in `dead_letters`
(`wasync.ingest.quarantine`) by the job's last transaction, the one that moves its cursor,
and the caller gets `Quarantined` carrying the counts: everything else was stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from wasync import eventlog
from wasync.config import CrmConfig, Settings
from wasync.errors import Quarantined, StoreRefused, StoreUnavailable
from wasync.eventlog import PublishedEvent
from wasync.events import Command, CursorUpdate, Event
from wasync.ingest import IngestResult, Job, Memory, Realtime, Tx
from wasync.ingest.normalize import InvalidText, Refusal, normalize, usable_cursors
from wasync.store import Store, is_conflict, is_unavailable
from wasync.store.db import INGEST_LOCK

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    """Receives committed event-log rows (the real-time hub)."""

    def publish(self, events: Sequence[PublishedEvent]) -> None:
        """Called after each commit with its rows in id order; must not block."""


class Pipeline:
    """The group-committing writer. Use as an async context manager; one per process."""

    def __init__(
        self,
        store: Store,
        *,
        crm: CrmConfig | None = None,
        admins: Mapping[str, Sequence[str]] | None = None,
        subscribers: Sequence[Subscriber] = (),
        batch_max_events: int = 500,
        batch_max_wait_ms: float = 0.0,
        media: bool = False,
        invalid_text: InvalidText = "quarantine",
    ) -> None:
        self.store = store
        self.media = media  # new media messages become PENDING for the media worker
        self.crm = crm or CrmConfig()
        self.admins = {k: list(v) for k, v in (admins or {}).items()}
        self.subscribers = list(subscribers)
        self.batch_max_events = batch_max_events
        self.batch_max_wait_s = batch_max_wait_ms / 1000
        self.invalid_text: InvalidText = invalid_text
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._memory = Memory()

    @classmethod
    def from_settings(
        cls, store: Store, settings: Settings, *, subscribers: Sequence[Subscriber] = ()
    ) -> Pipeline:
        """The pipeline the configuration describes: CRM defaults, admins, batch limits."""
        return cls(
            store,
            crm=settings.crm,
            admins={t.id: t.admins for t in settings.tenants},
            subscribers=subscribers,
            batch_max_events=settings.database.batch_max_events,
            batch_max_wait_ms=settings.database.batch_max_wait_ms,
            media=settings.media.enabled,
            invalid_text=settings.database.invalid_text,
        )

    async def __aenter__(self) -> Pipeline:
        self._writer = asyncio.create_task(self._run(), name="wasync-pipeline-writer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Finish every queued job, then stop the writer."""
        if self._writer is None:
            return
        self._queue.put_nowait(None)
        await self._writer
        self._writer = None

    async def ingest(
        self,
        events: Iterable[Event],
        *,
        source: str,
        cursor: CursorUpdate | Sequence[CursorUpdate] | None = None,
        notify: bool = True,
        realtime: Realtime = "message",
        media: bool = True,
    ) -> IngestResult:
        """Store `events` in one transaction (shared with concurrent callers); return the counts.

        `notify=False` creates no admin notifications; `realtime="summary"` logs one
        `chat:updated` event per chat instead of one `chat:new-message` per message (backfill);
        `media=False` leaves new media untracked (`NONE`, history) even with the worker on.

        Raises StoreUnavailable when the database cannot be reached; nothing is half-written.
        Raises Quarantined, after the commit, when some events could not be stored: they are
        in `dead_letters`, the rest and the cursor are committed (`exc.result` has the counts).
        """
        cursors = usable_cursors([cursor] if isinstance(cursor, CursorUpdate) else cursor or [])
        good, refused = normalize(events, invalid_text=self.invalid_text)
        job = Job(
            events=good,
            refused=refused,
            source=source,
            cursors=cursors,
            notify=notify,
            realtime=realtime,
            media=media and self.media,
        )
        await self._submit(job)
        if job.refused:
            raise Quarantined(job.result, [r.reason for r in job.refused])
        return job.result

    async def execute(self, command: Command, *, source: str = "outbox") -> Any:
        """Apply one command in an ingest transaction; return its outcome (see
        `wasync.ingest.sends`, `wasync.ingest.actions` and `wasync.ingest.media`). A command
        creates no admin notifications. Raises StoreUnavailable like `ingest()`."""
        job = Job(commands=[command], source=source, notify=False, media=self.media)
        await self._submit(job)
        return job.outcomes[0]

    async def _submit(self, job: Job) -> None:
        if self._writer is None:
            raise RuntimeError("Pipeline is not running: use `async with Pipeline(...)`")
        job.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(job)
        await asyncio.shield(job.future)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            jobs, stopping = await self._collect(first)
            await self._commit(jobs)

    async def _collect(self, first: Job) -> tuple[list[Job], bool]:
        """Take the jobs queued meanwhile (they piled up while the last batch committed), and
        wait up to `batch_max_wait_ms` for more when that is configured."""
        jobs, size = [first], _size(first)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_max_wait_s
        while size < self.batch_max_events:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if job is None:
                return jobs, True
            jobs.append(job)
            size += _size(job)
        return jobs, False

    async def _commit(self, jobs: list[Job]) -> None:
        try:
            published = await self._transaction(jobs)
        except Exception as exc:
            self._memory.forget()
            if is_unavailable(exc):
                _fail(jobs, _wrap(exc))
            elif len(jobs) > 1:
                # One bad job must not fail its neighbours: retry each alone.
                for job in jobs:
                    job.reset()
                    await self._commit([job])
            else:
                await self._isolate(jobs[0], exc)
            return
        self._publish(published)
        _succeed(jobs)

    async def _isolate(self, job: Job, error: Exception) -> None:
        """A job the store refused, alone: a command fails with StoreRefused; events are
        committed in halves and the ones refused alone quarantined (see the module doc)."""
        if job.commands or not job.events:  # the reason is logged, not handed to a client
            log.warning("the store refused a %s change: %s", job.source, _reason(error))
            _fail([job], StoreRefused("the database refused a value of this change"))
            return
        job.reset()
        if is_conflict(error):  # a deadlock or serialization failure: nothing is wrong with it
            try:
                published = await self._transaction([job])
            except Exception as exc:
                self._memory.forget()
                job.reset()
                error = exc
            else:
                self._publish(published)
                _succeed([job])
                return
        try:
            job.refused += await self._halves(job, list(job.events), error)
            last = Job(events=[], source=job.source, cursors=job.cursors, refused=job.refused)
            published = await self._transaction([last])
        except Exception as exc:
            self._memory.forget()
            _fail([job], _wrap(exc))
            return
        job.result.add(last.result)
        self._publish(published)
        _succeed([job])

    async def _halves(self, job: Job, events: list[Event], error: Exception) -> list[Refusal]:
        """Commit what the store takes of `events`, which failed together with `error`; the
        events it refuses alone come back with the reason. Raises on an outage."""
        if len(events) == 1:
            return [Refusal(event=events[0], reason=f"refused by the store: {_reason(error)}")]
        refused: list[Refusal] = []
        middle = len(events) // 2
        for half in (events[:middle], events[middle:]):
            part = job.part(half)
            try:
                published = await self._transaction([part])
            except Exception as exc:
                self._memory.forget()
                if is_unavailable(exc):
                    raise
                refused += await self._halves(job, half, exc)
                continue
            job.result.add(part.result)
            self._publish(published)
        return refused

    async def _transaction(self, jobs: list[Job]) -> list[PublishedEvent]:
        pg = not self.store.is_sqlite
        tx = Tx(self._memory, jobs, crm=self.crm, admins=self.admins, pg=pg)
        published = await self.store.run_write(
            tx.run, lock=INGEST_LOCK, notify=eventlog.notify_payload
        )
        self._memory.remember(tx)
        return published

    def _publish(self, events: list[PublishedEvent]) -> None:
        if not events:
            return
        for sub in self.subscribers:
            try:
                sub.publish(events)
            except Exception:  # a broken subscriber never breaks ingest
                log.exception("subscriber %r failed", sub)


def _size(job: Job) -> int:
    return len(job.events) + len(job.commands)


def _succeed(jobs: Sequence[Job]) -> None:
    for job in jobs:
        if job.future is not None and not job.future.done():
            job.future.set_result(None)


def _fail(jobs: Sequence[Job], error: BaseException) -> None:
    for job in jobs:
        if job.future is not None and not job.future.done():
            job.future.set_exception(error)


def _reason(exc: BaseException) -> str:
    """What the database (or its driver) said, in one short line: the original error's class
    and first line, without SQLAlchemy's statement and parameters (bodies, never secrets,
    but long)."""
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {text}"[:300]


def _wrap(exc: BaseException) -> BaseException:
    if is_unavailable(exc):
        return StoreUnavailable(f"database unavailable: {type(exc).__name__}")
    return exc


__all__ = ["CursorUpdate", "IngestResult", "Pipeline", "PublishedEvent", "Subscriber"]
