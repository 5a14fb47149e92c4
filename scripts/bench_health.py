"""What session health costs: its share of an ingest batch, and a poll cycle's observation.

Usage: .venv/bin/python scripts/bench_health.py [--pg-url URL] [--batches N]

SQLite (a temp file) always runs; Postgres when `--pg-url` or `WASYNC_TEST_PG_URL` is given.
Measured in the same run, on the same database, taking turns:

- the flow upsert (`wasync.ingest.health.record_flow`: one statement per batch) alone in a
  write transaction, less a transaction writing one other row (so both pay the commit's
  flush, which ingest pays anyway: what is left is what the upsert itself adds), against
  a batch of 100 new inbound webhook messages through `Pipeline.ingest()` (which runs that
  upsert inside): the share health adds to ingest;
- `ObserveHealth` through `Pipeline.execute()` (a poll cycle's observation: one read, one
  upsert), against the smallest command there is (`ReadNotification` of no notification:
  one UPDATE that matches nothing): what a recorded cycle costs beside any command.

Bounded (N batches, default 40), local files or 127.0.0.1 only; prints medians and ratios.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from wasync.config import parse
from wasync.events import Message, MessageType, ReadNotification
from wasync.health import ObserveHealth
from wasync.ingest.base import Item, Job, Memory, TxState
from wasync.ingest.health import record_flow
from wasync.phones import address
from wasync.pipeline import Pipeline
from wasync.principal import Principal
from wasync.registry import sync
from wasync.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.daemon import drop_pg, fresh_pg

TOUCH = "UPDATE sessions SET base_url = base_url WHERE id = :sid"  # one row written


def message(session_id: int, n: int) -> Message:
    """An inbound text from one of 200 numbers."""
    chat = address(f"55319{n % 200:08d}@c.us")
    assert chat is not None
    return Message(
        session_id=session_id,
        provider_message_id=f"BENCH{n:08d}",
        chat=chat,
        from_me=False,
        type=MessageType.TEXT,
        body="oi",
        timestamp=datetime.now(UTC) - timedelta(seconds=1),
    )


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    """Seconds one call of `work` took."""
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def bench(url: str, batches: int) -> tuple[float, float, float, float, float]:
    """Medians: (ingest batch, flow upsert transaction, one-row write transaction, smallest
    command, observation), in seconds."""
    settings = parse(
        {
            "database": {"url": url},
            "tenants": [
                {
                    "id": "acme",
                    "admins": ["u1"],
                    "sessions": [{"name": "s", "provider": "waha", "base_url": "http://x"}],
                }
            ],
        }
    )
    async with Store(url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        sid = next(iter(registry)).id
        pg = not store.is_sqlite
        async with Pipeline(store, admins={"acme": ["u1"]}) as pipeline:
            counter = iter(range(10**9))
            warm = [message(sid, next(counter)) for _ in range(200)]
            await pipeline.ingest(warm, source="webhook")  # the 200 chats exist from here
            ingest, flow, empty, smallest, observe = [], [], [], [], []
            actor = Principal(tenant_id="acme", user_id="u1", role="ADMIN")
            for i in range(batches):
                events = [message(sid, next(counter)) for _ in range(100)]
                items = [
                    Item(job=Job(source="webhook"), event=e, tenant_id="acme", chat=e.chat)
                    for e in events
                ]

                def touch(conn: Any) -> None:
                    conn.execute(text(TOUCH), {"sid": sid})

                def upsert(conn: object, items: list[Item] = items) -> None:
                    tx = TxState(Memory(), [], crm=settings.crm, admins={}, pg=pg)
                    tx.conn = conn  # type: ignore[assignment]
                    record_flow(tx, items, [])

                turns = [
                    (ingest, lambda ev=events: pipeline.ingest(ev, source="webhook")),
                    (flow, lambda u=upsert: store.run_write(u)),
                    (empty, lambda: store.run_write(touch)),
                ]
                for out, work in turns if i % 2 else reversed(turns):
                    out.append(await timed(work))
                obs = ObserveHealth(
                    session_id=sid,
                    started=datetime.now(UTC),
                    working=True,
                    status="WORKING",
                    reconciling=True,
                )
                nothing = ReadNotification(actor=actor, notification_id=-1)
                smallest.append(await timed(lambda n=nothing: pipeline.execute(n)))
                observe.append(await timed(lambda o=obs: pipeline.execute(o)))
    med = statistics.median
    return med(ingest), med(flow), med(empty), med(smallest), med(observe)


async def main() -> int:
    """Run each backend, print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("WASYNC_TEST_PG_URL"))
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db")]
        name = None
        if args.pg_url:
            pg_url, name = await fresh_pg(args.pg_url, "wasync_bench_health")
            runs.append(("postgres", pg_url))
        try:
            for backend, url in runs:
                ingest, flow, empty, smallest, observe = await bench(url, args.batches)
                upsert = max(flow - empty, 0.0)
                print(
                    f"{backend}: ingest batch of 100 {ingest * 1000:.2f} ms; health's flow"
                    f" upsert {upsert * 1000:.2f} ms ({flow * 1000:.2f} ms in a transaction of"
                    f" its own, one writing another row {empty * 1000:.2f} ms):"
                    f" ratio {upsert / ingest:.3f};"
                    f" ObserveHealth {observe * 1000:.2f} ms vs smallest command"
                    f" {smallest * 1000:.2f} ms (ratio {observe / smallest:.2f})"
                )
        finally:
            if name is not None:
                await drop_pg(args.pg_url, name)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
