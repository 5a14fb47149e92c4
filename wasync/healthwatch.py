"""After each poll cycle of a session: its health observed (`wasync.health.ObserveHealth`,
run by the pipeline like every change) and the answer shown as its Prometheus gauges."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from wasync.cycle import CycleStats
from wasync.errors import StoreRefused, StoreUnavailable
from wasync.health import DOWN, OK, ObserveHealth, SessionHealth
from wasync.metrics import SessionMetrics
from wasync.pipeline import Pipeline

log = logging.getLogger(__name__)


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
    ) -> None:
        self.pipeline = pipeline
        self.label = label
        self.reconciling = reconciling  # webhooks are on: what polling stores first was missed
        self.silence_s = silence_s
        self.metrics = metrics
        self.last: SessionHealth | None = None

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
            recovered=stats.new if self.reconciling else 0,
            silence_s=self.silence_s,
        )
        try:
            health = await self.pipeline.execute(command, source="health")
        except (StoreUnavailable, StoreRefused) as exc:
            log.warning("session %s: health not recorded: %s", self.label, exc)
            return None
        if health is not None:
            self._changed(self.last, health)
            self._show(health, command.recovered)
        self.last = health
        return health  # type: ignore[no-any-return]

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
