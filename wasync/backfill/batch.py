"""Where a backfill's events go: a sink (the pipeline, or a dry run's counter) fed in big
batches, with each window checkpointed once the batches holding it are stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol, cast

from sqlalchemy import select

from wasync.backfill.checkpoints import Window, has_table, save_checkpoints
from wasync.backfill.report import Counts, Observer, SessionStats
from wasync.errors import Quarantined, StoreUnavailable
from wasync.events import Event, Message, Reaction
from wasync.pipeline import IngestResult, Pipeline
from wasync.store import Store
from wasync.store import models as m

log = logging.getLogger(__name__)

SOURCE = "backfill"
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]

Done = Sequence[tuple[str, Window]]  # finished windows, by chat id


class Sink(Protocol):
    """Takes a session's events, then marks the windows they completed."""

    async def write(self, session_id: int, events: Sequence[Event], windows: Done) -> Counts:
        """Store (or count) `events`; checkpoint `windows` only after they are stored."""
        ...


class StoreSink:
    """The real thing: `Pipeline.ingest`, then the checkpoints in their own transaction."""

    def __init__(self, pipeline: Pipeline, store: Store, *, notify: bool) -> None:
        self.pipeline = pipeline
        self.store = store
        self.notify = notify

    async def write(self, session_id: int, events: Sequence[Event], windows: Done) -> Counts:
        """Ingest, then checkpoint."""
        counts = Counts()
        if events:
            result = await self._ingest(events)
            rejected = result.rejected + result.ignored + result.quarantined
            counts = Counts(result.new, result.duplicate, rejected)
        if windows:
            await save_checkpoints(self.store, session_id, windows)
        return counts

    async def _ingest(self, events: Sequence[Event]) -> IngestResult:
        """One retry for a batch that failed on data: another writer (the daemon) may have
        merged a chat this pipeline had cached; the failure emptied those caches."""
        for attempt in (1, 2):
            try:
                # History's media stays NONE: `wasync backfill --media` fetches it on a budget.
                return await self.pipeline.ingest(
                    events, source=SOURCE, notify=self.notify, realtime="summary", media=False
                )
            except Quarantined as exc:  # kept in dead_letters; the rest is stored
                return cast(IngestResult, exc.result)
            except StoreUnavailable:
                raise
            except Exception as exc:
                if attempt == 2:
                    raise
                log.warning("backfill batch failed (%s); retrying once", type(exc).__name__)
        raise AssertionError("unreachable")  # pragma: no cover


class DryRunSink:
    """Writes nothing: counts as new what the database does not hold yet (all without one),
    and what this run has not counted already (a row listed under two chats)."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.counted: set[tuple[int, str]] = set()

    async def write(self, session_id: int, events: Sequence[Event], windows: Done) -> Counts:
        """Look the message keys up, read-only."""
        keys = [k for k in (_key(ev) for ev in events) if k is not None]
        stored: set[str] = set()
        if keys and self.store is not None and session_id > 0:
            stored = await self._stored(session_id, set(keys))
        new = {k for k in keys if k not in stored and (session_id, k) not in self.counted}
        self.counted.update((session_id, k) for k in new)
        return Counts(new=len(new), duplicate=len(keys) - len(new))

    async def _stored(self, session_id: int, keys: set[str]) -> set[str]:
        assert self.store is not None
        c = T_MESSAGES.c
        async with self.store.read() as conn:
            if not await has_table(conn, T_MESSAGES.name):
                return set()
            rows = await conn.execute(
                select(c.provider_message_id).where(
                    c.session_id == session_id, c.provider_message_id.in_(sorted(keys))
                )
            )
            return {r.provider_message_id for r in rows}


def _key(ev: Event) -> str | None:
    return ev.provider_message_id if isinstance(ev, Message | Reaction) else None


class Batch:
    """A session's events and finished windows on their way to the sink, in big batches.

    Walkers add and go on reading while the previous batch is stored (one at a time, in
    order: a window's checkpoint is written only after every batch holding its events).
    """

    def __init__(
        self,
        sink: Sink,
        observer: Observer,
        session_id: int,
        stats: SessionStats,
        *,
        flush_events: int,
    ) -> None:
        self.sink = sink
        self.observer = observer
        self.flush_events = flush_events
        self.session_id = session_id
        self.stats = stats
        self.events: list[Event] = []
        self.windows: list[tuple[str, Window]] = []
        self._lock = asyncio.Lock()
        self._writing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Store what is left, also after a provider error; on cancellation, stop writing."""
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            if self._writing is not None:
                self._writing.cancel()
            return
        await self.flush()
        await self._wait()

    async def add(self, events: Sequence[Event]) -> None:
        """Buffer events; start storing once `flush_events` are waiting."""
        self.events.extend(events)
        if len(self.events) >= self.flush_events:
            await self.flush()

    def done(self, chat_jid: str, window: Window) -> None:
        """A window whose events are all buffered (or stored) already."""
        self.windows.append((chat_jid, window))

    async def flush(self) -> None:
        """Wait for the batch being stored, then start storing this one."""
        async with self._lock:
            if not self.events and not self.windows:
                return
            await self._wait()
            events, self.events = self.events, []
            windows, self.windows = self.windows, []
            self._writing = asyncio.create_task(self._write(events, windows))

    async def _wait(self) -> None:
        task, self._writing = self._writing, None
        if task is not None:
            await task

    async def _write(self, events: list[Event], windows: list[tuple[str, Window]]) -> None:
        counts = await self.sink.write(self.session_id, events, windows)
        self.stats.add(counts)
        self.observer.progressed(self.stats)
