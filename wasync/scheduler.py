"""The only APScheduler import: one interval job per session (and housekeeping), drained on
stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[Any]]


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
        every = self.interval_s if interval_s is None else interval_s
        first = datetime.now(UTC) + timedelta(seconds=every * spread / max(total, 1))
        self._first_runs[job_id] = asyncio.Event()
        self._scheduler.add_job(
            self._tracked(job_id, job),
            "interval",
            seconds=every,
            jitter=self.jitter_s or None,
            id=job_id,
            max_instances=1,
            coalesce=True,
            next_run_time=first,
            misfire_grace_time=max(1, int(every)),
        )

    def add_all(self, jobs: Sequence[tuple[str, Job]]) -> None:
        """Schedule many jobs, spreading their first runs."""
        for i, (job_id, job) in enumerate(jobs):
            self.add(job_id, job, spread=i, total=len(jobs))

    async def ran_once(self, prefix: str = "") -> None:
        """Return when every job added so far whose id starts with `prefix` has finished one
        run (failed ones too): the daemon's readiness."""
        firsts = [e for job_id, e in self._first_runs.items() if job_id.startswith(prefix)]
        for first in firsts:
            await first.wait()

    def _tracked(self, job_id: str, job: Job) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            # Each run is a task of its own: APScheduler cancels its futures on shutdown (and
            # logs the CancelledError as a failed job); stop() drains the run instead.
            task = asyncio.ensure_future(_guarded(job, self._slots))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
            finally:
                self._first_runs[job_id].set()

        return run

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
