"""The only APScheduler import: every session's job (and housekeeping) on interval timers,
its runs drained on stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[Any]]


# `add_all` shares this many APScheduler timers among its jobs at most: each firing costs the
# scheduler a few hundred microseconds of CPU (its job store, executor and events), which at
# a thousand sessions polled every 5 s was a seventh of the idle daemon.
TIMERS = 50


class Scheduler:
    """Runs each job every `interval_s` (with jitter), never two runs of one job at once."""

    def __init__(
        self, *, interval_s: float, jitter_s: float = 0.0, max_running: int | None = None
    ) -> None:
        self.interval_s = interval_s
        self.jitter_s = jitter_s
        # Runs past `max_running` wait their turn here (a FIFO), not as requests queued in
        # the HTTP client's pool, whose bookkeeping is quadratic in queued requests.
        self._slots = asyncio.Semaphore(max_running) if max_running else None
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._running: set[asyncio.Future[Any]] = set()
        self._busy: set[str] = set()  # jobs with a run in flight
        self._stopping = False
        self._first_runs: dict[str, asyncio.Event] = {}  # job id -> its first run has ended

    def add(
        self,
        job_id: str,
        job: Job,
        *,
        spread: int = 0,
        total: int = 1,
        interval_s: float | None = None,
    ) -> None:
        """Schedule `job` every `interval_s` (default: the scheduler's); first runs are spread
        over one interval so sessions don't align."""
        self._timer(job_id, [(job_id, job)], spread=spread, total=total, interval_s=interval_s)

    def add_all(self, jobs: Sequence[tuple[str, Job]]) -> None:
        """Schedule many jobs, spreading their first runs over one interval. Past `TIMERS`
        jobs, they share `TIMERS` timers: each starts its jobs together (a thousand sessions
        polled every 5 s: a burst of 20 every 100 ms)."""
        timers = min(len(jobs), TIMERS)
        for k in range(timers):
            members = list(jobs[k::timers])
            timer_id = members[0][0] if len(jobs) <= TIMERS else f"timer:{k}"
            self._timer(timer_id, members, spread=k, total=timers)

    def _timer(
        self,
        timer_id: str,
        members: Sequence[tuple[str, Job]],
        *,
        spread: int,
        total: int,
        interval_s: float | None = None,
    ) -> None:
        every = self.interval_s if interval_s is None else interval_s
        first = datetime.now(UTC) + timedelta(seconds=every * spread / max(total, 1))
        for job_id, _ in members:
            self._first_runs[job_id] = asyncio.Event()

        async def fire() -> None:
            for job_id, job in members:
                self._start(job_id, job)

        self._scheduler.add_job(
            fire,
            "interval",
            seconds=every,
            jitter=self.jitter_s or None,
            id=timer_id,
            coalesce=True,
            next_run_time=first,
            misfire_grace_time=max(1, int(every)),
        )

    def _start(self, job_id: str, job: Job) -> None:
        """A run of `job` as a task of its own, unless its last run is still going (then this
        one is skipped, as APScheduler skips a job at `max_instances`) or we are stopping.
        stop() drains it: APScheduler's shutdown would cancel it (and log a failed job)."""
        if job_id in self._busy or self._stopping:
            return
        self._busy.add(job_id)
        task = asyncio.ensure_future(_guarded(job, self._slots))
        self._running.add(task)

        def ended(task: asyncio.Future[Any]) -> None:
            self._running.discard(task)
            self._busy.discard(job_id)
            self._first_runs[job_id].set()

        task.add_done_callback(ended)

    async def ran_once(self, prefix: str = "") -> None:
        """Return when every job added so far whose id starts with `prefix` has finished one
        run (failed ones too): the daemon's readiness."""
        firsts = [e for job_id, e in self._first_runs.items() if job_id.startswith(prefix)]
        for first in firsts:
            await first.wait()

    def start(self) -> None:
        """Start firing jobs."""
        self._scheduler.start()

    @property
    def running(self) -> bool:
        """Started and not stopping (a `/readyz` check)."""
        return bool(self._scheduler.running) and not self._stopping

    async def readiness(self) -> str | None:
        """The `/readyz` answer: None while jobs fire, else why not."""
        return None if self.running else ("stopping" if self._stopping else "not started")

    async def stop(self, grace_s: float = 8.0) -> None:
        """No new runs; let runs in flight finish (up to `grace_s`), then cancel the rest."""
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        running = set(self._running)
        if not running:
            return
        _done, pending = await asyncio.wait(running, timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)


async def _guarded(job: Job, slots: asyncio.Semaphore | None) -> None:
    try:
        if slots is None:
            await job()
            return
        async with slots:
            await job()
    except Exception:  # the top of a loop that must survive
        log.exception("scheduled job failed")
