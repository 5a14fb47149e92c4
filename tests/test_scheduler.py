"""The scheduler's stop: a run in flight finishes (APScheduler's shutdown does not cancel it and
nothing is logged as a failed job); a run past the grace is cancelled quietly; a failing job is
logged and keeps its schedule."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from wasync.scheduler import TIMERS, Scheduler


async def test_a_run_in_flight_finishes_on_stop_without_a_logged_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def job() -> None:
        started.set()
        await release.wait()
        finished.append(True)

    scheduler = Scheduler(interval_s=0.05)
    scheduler.add("slow", job)
    scheduler.start()
    await asyncio.wait_for(started.wait(), 30)
    stopping = asyncio.ensure_future(scheduler.stop(grace_s=30))
    await asyncio.sleep(0.2)  # APScheduler's shutdown has cancelled its futures by now
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 30)
    assert finished == [True]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text


async def test_a_run_past_the_grace_is_cancelled_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def job() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    scheduler = Scheduler(interval_s=0.05)
    scheduler.add("stuck", job)
    scheduler.start()
    await asyncio.wait_for(started.wait(), 30)
    await asyncio.wait_for(scheduler.stop(grace_s=0.1), 30)
    assert cancelled == [True]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_failing_job_is_logged_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    twice = asyncio.Event()

    async def job() -> None:
        runs.append(1)
        if len(runs) >= 2:
            twice.set()
        raise RuntimeError("boom")

    scheduler = Scheduler(interval_s=0.05)
    scheduler.add("failing", job)
    scheduler.start()
    try:
        await asyncio.wait_for(twice.wait(), 30)
    finally:
        await scheduler.stop()
    failures = [r for r in caplog.records if r.getMessage() == "scheduled job failed"]
    assert len(failures) >= 2
    assert failures[0].exc_info is not None and "boom" in str(failures[0].exc_info[1])


async def test_runs_past_max_running_wait_their_turn() -> None:
    """With `max_running=2`, five due jobs never run more than two at once, and all run."""
    running, peak, done = 0, 0, set()
    release = asyncio.Event()

    def make(name: str):  # type: ignore[no-untyped-def]
        async def job() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1
            done.add(name)

        return job

    scheduler = Scheduler(interval_s=3600, max_running=2)
    for i in range(5):
        scheduler.add(f"j{i}", make(f"j{i}"))
    scheduler.start()
    for _ in range(500):
        if running == 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert running == 2
    release.set()
    for _ in range(3000):
        if len(done) == 5:
            break
        await asyncio.sleep(0.01)
    await scheduler.stop(grace_s=5)
    assert done == {f"j{i}" for i in range(5)} and peak == 2


async def test_many_jobs_share_timers_and_never_run_twice_at_once() -> None:
    """Past `TIMERS` jobs, `add_all` shares timers among them: every job keeps running, a job
    whose run is still going is skipped (never two runs of it at once) while the others go
    on, and `ran_once` waits for every job's first run."""
    n = TIMERS * 2 + 7
    runs: Counter[int] = Counter()
    active: Counter[int] = Counter()
    peak = 0
    release = asyncio.Event()

    def make(i: int):  # type: ignore[no-untyped-def]
        async def job() -> None:
            nonlocal peak
            runs[i] += 1
            active[i] += 1
            peak = max(peak, active[i])
            if i == 0:
                await release.wait()
            active[i] -= 1

        return job

    scheduler = Scheduler(interval_s=0.1)
    scheduler.add_all([(f"poll:{i}", make(i)) for i in range(n)])
    scheduler.start()
    try:
        first_runs = asyncio.ensure_future(scheduler.ran_once("poll:"))
        for _ in range(3000):
            if all(runs[i] >= 3 for i in range(1, n)):
                break
            await asyncio.sleep(0.01)
        assert all(runs[i] >= 3 for i in range(1, n)), runs
        assert runs[0] == 1 and not first_runs.done()  # job 0 is still in its first run
        release.set()
        await asyncio.wait_for(first_runs, 30)
        for _ in range(3000):
            if runs[0] >= 2:
                break
            await asyncio.sleep(0.01)
        assert runs[0] >= 2
    finally:
        await scheduler.stop(grace_s=5)
    assert peak == 1
