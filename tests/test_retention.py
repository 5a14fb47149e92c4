"""Event-log retention: `prune_events`, its `[events]` settings and the daemon's prune job,
on both backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from wasync import daemon
from wasync.config import EventsConfig, parse
from wasync.errors import ConfigError
from wasync.eventlog import T_EVENTS, prune_events, prune_job
from wasync.store import Store

NOW = datetime.now(UTC)


async def log_events(store: Store, ages_days: list[float]) -> list[int]:
    """One event-log row per age (oldest first, as ids grow with time); their ids."""
    ids = []
    for age in ages_days:
        row = {"tenant_id": "acme", "type": "chat:updated", "created_at": NOW - timedelta(age)}
        async with store.write() as conn:
            result = await conn.execute(insert(T_EVENTS).returning(T_EVENTS.c.id), row)
            ids.append(int(result.scalar_one()))
    return ids


async def log_ids(store: Store) -> list[int]:
    """The ids the log holds, in order."""
    async with store.read() as conn:
        return [r[0] for r in await conn.execute(select(T_EVENTS.c.id).order_by(T_EVENTS.c.id))]


async def test_prune_deletes_only_rows_older_than_the_cutoff(store: Store) -> None:
    """Twelve old rows go in batches of five; the five recent rows stay; a rerun deletes
    nothing."""
    ids = await log_events(store, [40] * 12 + [1] * 5)
    cutoff = NOW - timedelta(days=30)
    assert await prune_events(store, before=cutoff, batch=5) == 12
    assert await log_ids(store) == ids[12:]
    assert await prune_events(store, before=cutoff, batch=5) == 0
    assert await log_ids(store) == ids[12:]


async def test_ids_are_not_reused_after_the_whole_log_is_pruned(store: Store) -> None:
    """A client's `since` stays meaningful: new rows get ids above every pruned one."""
    ids = await log_events(store, [40, 35, 31])
    assert await prune_events(store, before=NOW, batch=100) == 3
    assert await log_ids(store) == []
    (new,) = await log_events(store, [0])
    assert new > ids[-1]


async def test_prune_job_keeps_retain_days(store: Store) -> None:
    """The scheduled job deletes what `retain_days` no longer keeps."""
    ids = await log_events(store, [10, 9, 3, 0])
    await prune_job(store, EventsConfig(retain_days=7, prune_batch=1))
    assert await log_ids(store) == ids[2:]


@pytest.mark.parametrize(
    ("events", "key"),
    [
        ({"retain_days": -1}, "events.retain_days"),
        ({"prune_interval_s": 0}, "events.prune_interval_s"),
        ({"prune_batch": 0}, "events.prune_batch"),
    ],
)
def test_bad_events_settings_name_the_key(events: dict[str, float], key: str) -> None:
    """A bad `[events]` value is one clear error naming its key."""
    with pytest.raises(ConfigError) as info:
        parse({"events": events})
    assert info.value.key == key


async def test_the_daemon_prunes_on_schedule(db_url: str) -> None:
    """`wasync run` prunes the log every `prune_interval_s`, keeping `retain_days`."""
    settings = parse(
        {
            "database": {"url": db_url},
            "http": {"port": 0},
            "auth": {"jwt_secret": "test-secret-for-retention"},
            "events": {"retain_days": 7, "prune_interval_s": 0.2},
        }
    )
    async with Store(db_url) as store:
        await store.upgrade()
        ids = await log_events(store, [20, 8, 1])
        ready: asyncio.Future[daemon.Daemon] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(settings, stop=stop, on_ready=ready.set_result))
        try:
            await asyncio.wait_for(ready, 120)
            for _ in range(100):  # the first run is at start; allow a few intervals
                if await log_ids(store) == ids[2:]:
                    break
                await asyncio.sleep(0.1)
            assert await log_ids(store) == ids[2:]
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        async with store.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(T_EVENTS))).scalar() == 1
