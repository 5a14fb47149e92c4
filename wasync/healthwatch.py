"""After each poll cycle of a session: its health observed (`wasync.health.ObserveHealth`,
run by the pipeline like every change) and the answer shown as its Prometheus gauges.

An idle cycle of a healthy session can change nothing but the time of the last poll: it is
written at most every `heartbeat_s` (30 s), so a session polled every 5 s without webhooks
costs a transaction every 30 s, not every cycle. The same holds for a session `STALLED` for
silence (nothing inbound for `silence_s`: most sessions at night), which only a message ends: a
cycle that stored one is written at once, and one that came by webhook is seen within
`heartbeat_s`. Those heartbeats, the time of the last poll alone, are not a transaction each:
`PollBeats` collects every session's and writes them together every few seconds (a thousand
sessions: one transaction per flush, not 33 a second). Any cycle that could change the state
(it stored messages, a suspicion or a missed-webhooks stall is pending, the provider's state
moved, the silence deadline is near) is written at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from wasync.cycle import CycleStats
from wasync.errors import StoreRefused, StoreUnavailable
from wasync.health import DOWN, OK, SILENCE, STALLED, ObserveHealth, RecordPolls, SessionHealth
from wasync.metrics import SessionMetrics
from wasync.pipeline import Pipeline

if TYPE_CHECKING:
    from prometheus_client import Gauge

log = logging.getLogger(__name__)


class PollBeats:
    """The last poll times of idle cycles, of every session, written in one `RecordPolls`
    command `flush_s` after the first one waiting (and at `aclose`). A flush the store
    refuses is logged and dropped: the next heartbeat comes within `heartbeat_s`."""

    def __init__(self, pipeline: Pipeline, *, flush_s: float = 5.0) -> None:
        self.pipeline = pipeline
        self.flush_s = flush_s
        self._pending: dict[int, tuple[datetime, Callable[[SessionHealth], None]]] = {}
        self._flushing: asyncio.Task[None] | None = None

    def add(self, session_id: int, at: datetime, written: Callable[[SessionHealth], None]) -> None:
        """`session_id`'s idle cycle ended at `at`: write it with the next flush, then hand
        `written` the session's row."""
        self._pending[session_id] = (at, written)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(self.flush_s)
        self._flushing = None
        try:
            await self.flush()
        except Exception:  # a task nobody awaits: say so here, the next flush still runs
            log.exception("last poll times not recorded")

    async def flush(self) -> None:
        """Write what is waiting now."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        command = RecordPolls(polled=tuple(sorted((s, at) for s, (at, _) in pending.items())))
        try:
            rows = await self.pipeline.execute(command, source="health")
        except (StoreUnavailable, StoreRefused) as exc:
            log.warning("%d session(s): last poll times not recorded: %s", len(pending), exc)
            return
        for session_id, health in rows.items():
            pending[session_id][1](health)

    async def aclose(self) -> None:
        """Write what is waiting (the daemon's stop, before the pipeline closes)."""
        if self._flushing is not None:
            self._flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flushing
            self._flushing = None
        await self.flush()


class HealthWatch:
    """Records one session's health after each cycle the poller reports (`record`)."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        label: str,
        reconciling: bool,
        silence_s: float,
        metrics: SessionMetrics | None = None,
        heartbeat_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        beats: PollBeats | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.heartbeat_s = heartbeat_s
        self.beats = beats  # where heartbeats go; None: each is an `ObserveHealth` of its own
        self.clock = clock
        self._written_at = float("-inf")
        self.label = label
        self.reconciling = reconciling  # webhooks are on: what polling stores first was missed
        self.silence_s = silence_s
        self.metrics = metrics
        self.last: SessionHealth | None = None
        self._last_poll: Gauge | None = None  # the `last_poll` gauge's child of this session

    async def record(
        self,
        session_id: int,
        stats: CycleStats,
        *,
        started: float,
        working: bool,
        status: str | None,
    ) -> SessionHealth | None:
        """Observe a cycle that ended without an error; never raises (a store that does not
        answer is the next cycle's problem: this one is logged and skipped)."""
        command = ObserveHealth(
            session_id=session_id,
            started=datetime.fromtimestamp(started, UTC),
            working=working,
            status=status,
            reconciling=self.reconciling,
            recovered=stats.recovered if self.reconciling else 0,
            silence_s=self.silence_s,
        )
        now = self.clock()
        if self._quiet(command, stats.new):
            due = now - self._written_at >= self.heartbeat_s
            beats = self.beats if self.heartbeat_s > 0 else None  # heartbeats written together
            if due and beats is not None:  # only the last poll time moves
                beats.add(session_id, datetime.fromtimestamp(now, UTC), self._beaten)
                self._written_at = now
            if not due or beats is not None:
                if self.metrics is not None:
                    if self._last_poll is None:  # one labels() lookup, not one per cycle
                        self._last_poll = self.metrics.last_poll.labels(self.label)
                    self._last_poll.set(now)
                return self.last
        try:
            health = await self.pipeline.execute(command, source="health")
        except (StoreUnavailable, StoreRefused) as exc:
            log.warning("session %s: health not recorded: %s", self.label, exc)
            return None
        if health is not None:
            self._written_at = self.clock()
            self._changed(self.last, health)
            self._show(health, command.recovered)
        self.last = health
        return health  # type: ignore[no-any-return]

    def _beaten(self, health: SessionHealth) -> None:
        """A heartbeat was written: the row as it is now (what webhooks recorded meanwhile
        shows in the gauges), unless a cycle written since is newer."""
        before = self.last.last_poll_at if self.last is not None else None
        if before and health.last_poll_at and health.last_poll_at < before:
            return
        self.last = health
        self._show(health, 0)

    def _quiet(self, command: ObserveHealth, new: int) -> bool:
        """Nothing this cycle saw can change the recorded state before the next heartbeat
        (see the module docstring)."""
        last, now = self.last, self.clock()
        if last is None or last.suspect_at is not None:
            return False
        if not command.working or new:
            return False
        if last.state == STALLED and last.reason == SILENCE:
            return True  # still silent: only a message ends it (this cycle stored none)
        if last.state != OK:
            return False
        if self.silence_s > 0:
            since = last.last_inbound_at or last.created_at
            due = since is None or now - since.timestamp() > self.silence_s - self.heartbeat_s
            return not due
        return True

    def _changed(self, before: SessionHealth | None, after: SessionHealth) -> None:
        was = before.state if before is not None else OK
        if after.state in (was, DOWN):  # DOWN: the poller logs the provider's state
            return
        level = logging.INFO if after.state == OK else logging.WARNING
        log.log(level, "session %s: %s (%s)", self.label, after.state, after.reason or "-")

    def _show(self, health: SessionHealth, recovered: int) -> None:
        m = self.metrics
        if m is None:
            return
        label = self.label
        m.stalled.labels(label).set(1 if health.stalled else 0)
        m.down.labels(label).set(1 if health.state == DOWN else 0)
        if health.last_poll_at is not None:
            m.last_poll.labels(label).set(health.last_poll_at.timestamp())
        if health.last_inbound_at is not None:
            m.last_inbound.labels(label).set(health.last_inbound_at.timestamp())
        m.recovered.labels(label).inc(recovered)
        if health.last_poll_at is not None:
            m.recovered_hour.labels(label).set(health.recovered_last_hour(health.last_poll_at))
        if health.webhook_lag_s is not None:
            m.webhook_lag.labels(label).set(health.webhook_lag_s)
