"""Benchmark the session leases and the shared send slots on Postgres (and the slots on SQLite).

Usage: .venv/bin/python scripts/bench_leases.py [--pg-url URL] [--sessions 1000] [--nodes 3]

A fresh database each run (Postgres from `--pg-url` or `WASYNC_TEST_PG_URL`; SQLite a temp
file). Prints, each beside a baseline measured in the same run (an empty write transaction,
`SELECT 1`, on the same store):

- a steady lease round (heartbeat, renew, nothing to claim) of one of `--nodes` nodes that
  share `--sessions` sessions, median of 30: what the heartbeat costs every `renew_interval_s`;
- the round in which the first node claims every session;
- the rounds until every node holds its fair share after the others join;
- one send-slot reservation (`SendSlots.reserve`), median of 200, on Postgres and SQLite.

Bounded (a few hundred statements), 127.0.0.1 only; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon import drop_pg, fresh_pg
from wasync.config import ClusterConfig, parse
from wasync.leases import Leases
from wasync.ratelimit import SendSlots
from wasync.registry import sync
from wasync.store import Store


async def _median_ms(work: Callable[[], Awaitable[object]], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def _empty_write(store: Store) -> None:
    async with store.write() as conn:
        await conn.execute(text("SELECT 1"))


async def _session_ids(store: Store, url: str, n: int) -> list[int]:
    sessions = [
        {"name": f"s{i}", "provider": "waha", "base_url": "http://127.0.0.1:9"} for i in range(n)
    ]
    settings = parse({"database": {"url": url}, "tenants": [{"id": "t", "sessions": sessions}]})
    return [r.id for r in await sync(store, settings)]


async def bench_leases(url: str, sessions: int, nodes: int) -> None:
    """The lease rounds on Postgres."""
    async with Store(url) as store:
        await store.upgrade()
        ids = await _session_ids(store, url, sessions)
        cfg = [ClusterConfig(node_id=f"n{i}", lease_ttl_s=600) for i in range(nodes)]
        fleet = [Leases(store, c, ids) for c in cfg]
        base = await _median_ms(lambda: _empty_write(store), 30)
        started = time.perf_counter()
        await fleet[0].round()
        first = (time.perf_counter() - started) * 1000
        rounds = 0
        fair = -(-sessions // nodes)
        while rounds < 50 and not (
            all(len(n.held) <= fair for n in fleet) and sum(len(n.held) for n in fleet) == sessions
        ):
            for node in fleet:
                await node.round()
            rounds += 1
        held = sorted(len(n.held) for n in fleet)
        steady = await _median_ms(fleet[0].round, 30)
    print(f"postgres, {sessions} sessions, {nodes} nodes (baseline: empty write {base:.2f} ms)")
    print(f"  first node claims all {sessions}: {first:.1f} ms ({first / base:.1f}x)")
    print(f"  fair shares {held} after {rounds} round(s) of every node")
    print(f"  steady round (heartbeat + renew {held[-1]}): {steady:.2f} ms ({steady / base:.1f}x)")


async def bench_slots(url: str, label: str) -> None:
    """One reservation of a send slot."""
    async with Store(url) as store:
        await store.upgrade()
        (sid,) = await _session_ids(store, url, 1)
        slots = SendSlots(store, 1e6, 1)  # no waiting: the statement's own cost
        base = await _median_ms(lambda: _empty_write(store), 200)
        each = await _median_ms(lambda: slots.reserve(sid), 200)
    print(f"{label}: send slot reservation {each:.2f} ms vs empty write {base:.2f} ms")
    print(f"  ({each / base:.2f}x)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("WASYNC_TEST_PG_URL"))
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await bench_slots(f"sqlite+aiosqlite:///{Path(tmp) / 'b.db'}", "sqlite")
    if not args.pg_url:
        print("postgres: skipped (no --pg-url or WASYNC_TEST_PG_URL)")
        return
    for run in (bench_slots_pg, bench_leases):
        url, name = await fresh_pg(args.pg_url, "wasync_bench_leases")
        try:
            await run(url, args.sessions, args.nodes)
        finally:
            await drop_pg(args.pg_url, name)


async def bench_slots_pg(url: str, _sessions: int, _nodes: int) -> None:
    """`bench_slots` on Postgres."""
    await bench_slots(url, "postgres")


if __name__ == "__main__":
    asyncio.run(main())
