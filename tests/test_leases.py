"""Session leases on Postgres (fair shares, drain, expiry, clean stop), one node per SQLite file,
and the send slots every process shares (SQLite and Postgres)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import settings_for
from tests.daemon import start_daemon
from wasync.config import ClusterConfig, Settings
from wasync.leases import Leases, NodeIdInUse, holders
from wasync.nodelock import node_lock
from wasync.ratelimit import SendSlots
from wasync.registry import sync
from wasync.session_status import read_sessions, render
from wasync.store import Store


def _settings(url: str, n: int) -> Settings:
    sessions = [
        {"name": f"s{i}", "provider": "waha", "base_url": "http://127.0.0.1:9"} for i in range(n)
    ]
    return settings_for(url, tenants=[{"id": "acme", "sessions": sessions}])


async def _sessions(store: Store, url: str, n: int) -> list[int]:
    """`n` configured sessions mirrored into the database; their ids."""
    registry = await sync(store, _settings(url, n))
    return [r.id for r in registry]


def _leases(store: Store, ids: list[int], node: str, ttl_s: float = 60) -> Leases:
    return Leases(store, ClusterConfig(node_id=node, lease_ttl_s=ttl_s), ids)


async def test_nodes_split_the_sessions_into_fair_disjoint_shares(pg_url: str):
    """One node takes every session; a second and a third joining get ceil(n / nodes) at most,
    and every session is held by exactly one node."""
    async with Store(pg_url) as store:
        await store.upgrade()
        ids = await _sessions(store, pg_url, 7)
        a, b, c = (_leases(store, ids, n) for n in ("a", "b", "c"))
        await a.round()
        assert a.held == frozenset(ids)
        for _ in range(3):  # join, drain, claim
            for node in (b, a, b):
                await node.round()
        assert len(a.held) == 4 and len(b.held) == 3 and not a.held & b.held
        for _ in range(3):
            for node in (c, a, b, c):
                await node.round()
        shares = [a.held, b.held, c.held]
        assert all(len(s) <= 3 for s in shares) and sum(map(len, shares)) == 7
        assert frozenset().union(*shares) == frozenset(ids)
        rows = await holders(store)
        assert {sid: h.node_id for sid, h in rows.items()} == {
            sid: n for n, held in zip("abc", shares, strict=True) for sid in held
        }


async def test_a_drained_lease_waits_for_the_work_in_flight(pg_url: str):
    """A node over its share stops starting work on the extra session at once, but gives its
    lease back only after the work in flight has ended."""
    async with Store(pg_url) as store:
        await store.upgrade()
        ids = await _sessions(store, pg_url, 2)
        a, b = _leases(store, ids, "a"), _leases(store, ids, "b")
        await a.round()
        busy = max(ids)  # the one `a` drains when `b` joins
        async with a.hold(busy) as ok:
            assert ok
            await b.round()
            await a.round()
            assert not a.holds(busy)  # no new work...
            async with a.hold(busy) as again:
                assert not again
            await b.round()
            assert busy not in b.held  # ...and still a's lease while the work runs
            assert (await holders(store))[busy].node_id == "a"
        await a.round()  # the work ended: given back
        await b.round()
        assert b.held == {busy} and a.held == {min(ids)}


async def test_work_run_under_a_lease_keeps_it_until_the_work_ends(pg_url: str):
    """`Leases.run` (each poll cycle's path) is `hold()` without a context manager: the work
    runs only where the lease is held, and a drained lease waits for it."""
    async with Store(pg_url) as store:
        await store.upgrade()
        ids = await _sessions(store, pg_url, 2)
        a, b = _leases(store, ids, "a"), _leases(store, ids, "b")
        await a.round()
        busy = max(ids)
        started, release, runs = asyncio.Event(), asyncio.Event(), []

        async def work() -> None:
            runs.append(1)
            started.set()
            await release.wait()

        cycle = asyncio.ensure_future(a.run(busy, work))
        await asyncio.wait_for(started.wait(), 30)
        await b.round()
        await a.round()
        assert not await a.run(busy, work)  # drained: no new work...
        await b.round()
        assert busy not in b.held  # ...and still a's lease while the work runs
        release.set()
        assert await asyncio.wait_for(cycle, 30) is True
        await a.round()
        await b.round()
        assert b.held == {busy} and runs == [1]
        assert not await a.run(busy, work) and runs == [1]  # b's now


async def test_a_dead_nodes_leases_are_taken_over_after_the_ttl(pg_url: str):
    """A node that stops renewing (killed) keeps its sessions until its leases expire; then the
    others take them, and the dead node's own view says it holds nothing."""
    async with Store(pg_url) as store:
        await store.upgrade()
        ids = await _sessions(store, pg_url, 3)
        dead, alive = _leases(store, ids, "dead", ttl_s=1.5), _leases(store, ids, "alive", 1.5)
        await dead.round()
        await alive.round()
        assert dead.held == frozenset(ids) and not alive.held
        died = time.monotonic()
        async with asyncio.timeout(30):
            while alive.held != frozenset(ids):
                await asyncio.sleep(0.1)
                await alive.round()
        assert time.monotonic() - died >= 1.0  # not before the TTL (0.9 of it, locally)
        assert not dead.held  # its view expired too: it would start no work


async def test_a_clean_stop_gives_the_leases_back_at_once(pg_url: str):
    """Leaving the context gives every lease back and deletes the node row: the next round of
    another node takes everything, long before the TTL."""
    async with Store(pg_url) as store:
        await store.upgrade()
        ids = await _sessions(store, pg_url, 3)
        other = _leases(store, ids, "other", ttl_s=600)
        async with _leases(store, ids, "first", ttl_s=600) as first:
            assert first.held == frozenset(ids)
            await other.round()
            assert not other.held
        await other.round()
        assert other.held == frozenset(ids)


async def test_sqlite_holds_every_session_and_shows_its_node(tmp_path: Path):
    """SQLite: one node holds every session (no lease rows); `holders` names it while it runs."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    async with Store(url) as store:
        await store.upgrade()
        ids = await _sessions(store, url, 2)
        runs: list[int] = []
        async with _leases(store, ids, "solo") as leases:
            assert leases.held == frozenset(ids) and leases.holds(ids[0])
            assert await leases.run(ids[0], lambda: asyncio.sleep(0, runs.append(ids[0])))
            leases.leave()  # stopping: no new work
            assert not await leases.run(ids[1], lambda: asyncio.sleep(0, runs.append(ids[1])))
        assert runs == [ids[0]]
        assert await holders(store) == {}


async def test_a_second_wasync_run_on_one_sqlite_file_exits_1(tmp_path: Path):
    """Two `wasync run` on one SQLite file: the second says which node holds it and exits 1."""
    config = tmp_path / "w.toml"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "w.db"}"\n'
        '[http]\nport = 0\n[cluster]\nnode_id = "first-node"\n'
    )
    first, _url = await start_daemon(config, tmp_path / "first.log")
    try:
        second = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wasync",
            "run",
            "--config",
            str(config),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(second.communicate(), 60)
        lines = err.decode().strip().splitlines()
        assert second.returncode == 1
        assert len(lines) == 1 and "another wasync run (node first-node)" in lines[0]
        assert first.returncode is None  # the first one runs on
    finally:
        first.terminate()
        await asyncio.wait_for(first.wait(), 30)


async def test_send_slots_are_shared_by_two_processes(db_url: str):
    """Two stores (two processes' connections) reserving one session's slots: the first
    `burst` go at once, then one per interval, whoever asks."""
    async with Store(db_url) as one, Store(db_url) as two:
        await one.upgrade()
        (sid,) = await _sessions(one, db_url, 1)
        rate, burst = 20.0, 3  # 50 ms apart after 3
        slots = [SendSlots(s, rate, burst) for s in (one, two)]
        started = time.monotonic()
        waits = await asyncio.gather(*(slots[i % 2].reserve(sid) for i in range(30)))
        elapsed = time.monotonic() - started
        assert sorted(waits)[:burst] == [0.0] * burst
        # 30 slots, 3 at once then 27 more 1/20 s apart: the last at 1.35 s from the start.
        assert max(waits) >= 27 / rate - elapsed - 0.01
        later = await slots[1].reserve(sid)
        assert later >= 28 / rate - (time.monotonic() - started) - 0.01


async def test_send_slots_refill_while_idle(db_url: str):
    """After a pause as long as the burst takes to refill, the burst goes at once again."""
    async with Store(db_url) as store:
        await store.upgrade()
        (sid,) = await _sessions(store, db_url, 1)
        slots = SendSlots(store, 20.0, 2)
        assert [await slots.reserve(sid) for _ in range(2)] == [0.0, 0.0]
        assert await slots.reserve(sid) > 0
        await asyncio.sleep(0.2)  # 4 intervals: full again
        assert [await slots.reserve(sid) for _ in range(2)] == [0.0, 0.0]


async def test_wasync_sessions_names_the_node_holding_each(db_url: str):
    """`wasync sessions` has a NODE column: the lease holder on Postgres, the running daemon's
    node on SQLite, `-` when nobody holds the session."""
    async with Store(db_url) as store:
        await store.upgrade()
        ids = await _sessions(store, db_url, 2)
        settings = _settings(db_url, 2)
        idle = render(await read_sessions(settings))
        with node_lock(store, "node-a"):
            if not store.is_sqlite:
                await _leases(store, ids, "node-a").round()
            held = render(await read_sessions(settings))
    col = idle[0].split().index("NODE")  # after the health column (existing columns first)
    assert [line.split()[col] for line in idle[1:]] == ["-", "-"]
    assert [line.split()[col] for line in held[1:]] == ["node-a", "node-a"]


async def test_a_node_restarted_under_its_old_id_serves_or_frees_every_session(pg_url: str):
    """`kill -9` and a restart with the same node id within the TTL: the new process waits for
    the old `nodes` row to expire, then drops the old lease rows instead of renewing them, so
    every session ends up held by a live process (none renewed and never served)."""
    async with Store(pg_url) as store:
        await store.upgrade()
        ids = await _sessions(store, pg_url, 4)
        killed = _leases(store, ids, "a", ttl_s=1.5)
        await killed.round()
        assert killed.held == frozenset(ids)
        restarted, other = _leases(store, ids, "a", ttl_s=1.5), _leases(store, ids, "b", 1.5)
        async with asyncio.timeout(30):
            while True:
                for node in (restarted, other):
                    with contextlib.suppress(NodeIdInUse):
                        await node.round()
                served = restarted.held | other.held
                if served == frozenset(ids) and not restarted.held & other.held:
                    break
                await asyncio.sleep(0.1)
        rows = await holders(store)
        assert {sid: h.node_id for sid, h in rows.items()} == {
            **dict.fromkeys(restarted.held, "a"),
            **dict.fromkeys(other.held, "b"),
        }


async def test_a_second_process_with_the_same_node_id_holds_nothing_and_frees_nothing(
    pg_url: str,
):
    """A copied config: the second process with the first's node id holds no session while
    the first lives, and its stop does not give back the first one's leases."""
    async with Store(pg_url) as store:
        await store.upgrade()
        ids = await _sessions(store, pg_url, 2)
        first, other = _leases(store, ids, "same"), _leases(store, ids, "other")
        await first.round()
        async with _leases(store, ids, "same") as copy:
            with pytest.raises(NodeIdInUse):
                await copy.round()
            assert not copy.held
        rows = await holders(store)  # the copy's stop gave nothing of the first's back
        assert {sid: h.node_id for sid, h in rows.items()} == dict.fromkeys(ids, "same")
        await other.round()
        assert first.held == frozenset(ids) and not other.held  # nothing free to take


async def test_leave_gives_idle_sessions_back_at_once_and_busy_ones_when_done(pg_url: str):
    """A stopping node (`leave()`) starts no work, claims nothing, gives an idle session back
    at its next round and a busy one once the work in flight ends; another node takes them."""
    async with Store(pg_url) as store:
        await store.upgrade()
        ids = await _sessions(store, pg_url, 2)
        leaving, other = _leases(store, ids, "leaving"), _leases(store, ids, "other")
        await leaving.round()
        busy, idle = ids
        async with leaving.hold(busy) as ok:
            assert ok
            leaving.leave()
            assert not leaving.holds(idle) and not leaving.holds(busy)
            await leaving.round()
            await other.round()
            assert other.held == {idle}  # the idle one moved at once
        await leaving.round()  # the work ended: given back
        await other.round()
        assert other.held == frozenset(ids) and not leaving.held
