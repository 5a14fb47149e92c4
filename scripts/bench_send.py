"""Benchmark the outbox: how fast requests are queued, how fast the sender can drain them.

Usage: .venv/bin/python scripts/bench_send.py [--pg-url URL] [--messages N]

SQLite (a temp file) always runs; Postgres runs when `--pg-url` or `WASYNC_TEST_PG_URL` is
given; every run gets a fresh database. The providers are the WAHA and Evolution simulators,
in process (`httpx.ASGITransport`), so the figures are wasync's own cost:

- queue, 1 caller / 20 callers: number check (cached after the first) + the enqueue
  transaction (outbox row, message row, event);
- send: one session's sender with the rate limit lifted — claim, one POST, mark SENT with
  the id swap — i.e. the ceiling under any `[send] rate_per_minute`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
from benchjson import Figure, add_json_option, write
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from wasync.config import parse
from wasync.outbox import Outbox, Queued, parse_to, text_request
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.sender import Sender, wait_final
from wasync.sim import EvolutionSim, WahaSim
from wasync.store import Store

PHONE = "5511987650001"
CALLERS = 20


class _Hosts(httpx.AsyncBaseTransport):
    def __init__(self, apps: dict[str, object]) -> None:
        self.apps = {h: httpx.ASGITransport(a) for h, a in apps.items()}  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.apps[request.url.host].handle_async_request(request)


@asynccontextmanager
async def _outbox(url: str) -> AsyncIterator[Outbox]:
    """An outbox on a fresh database, with both simulators behind it."""
    waha, evo = WahaSim(seed=1), EvolutionSim(seed=2)
    waha.add_session("default", engine="GOWS")
    evo.add_instance("evo")
    settings = parse(
        {
            "database": {"url": url},
            "send": {"rate_per_minute": 10**9, "burst": 10**6, "poll_interval_s": 0.01},
            "tenants": [
                {
                    "id": "acme",
                    "sessions": [
                        {"name": "default", "provider": "waha", "base_url": "http://waha",
                         "api_key": "waha-sim-key"},
                        {"name": "evo", "provider": "evolution", "base_url": "http://evo",
                         "api_key": "evolution-sim-key"},
                    ],
                }
            ],
        }
    )  # fmt: skip
    async with Store(url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        transport = _Hosts({"waha": waha.app, "evo": evo.app})
        async with (
            Pipeline(store) as pipeline,
            httpx.AsyncClient(transport=transport) as client,
            Outbox(settings, store, registry, pipeline, client) as outbox,
        ):
            yield outbox


async def _queue(outbox: Outbox, n: int, callers: int) -> tuple[float, list[Queued]]:
    ref = outbox.session("acme", "default")
    target = await outbox.target_phone(ref, parse_to(PHONE))
    rows: list[Queued] = []

    async def caller(k: int) -> None:
        for i in range(k, n, callers):
            rows.append(await outbox.enqueue(target, text_request(f"bench {i}"), None))

    started = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    return n / (time.perf_counter() - started), rows


async def _send(outbox: Outbox, rows: list[Queued]) -> float:
    started = time.perf_counter()
    async with Sender(outbox, [outbox.session("acme", "default")]):
        done = await wait_final(outbox, [r.id for r in rows], timeout_s=600, poll_s=0.05)
    elapsed = time.perf_counter() - started
    if any(r.status != "SENT" for r in done.values()):
        raise SystemExit("some rows were not sent")
    return len(rows) / elapsed


async def _run(url: str, n: int) -> list[float]:
    async with _outbox(url) as outbox:
        one, first = await _queue(outbox, n, 1)
        many, second = await _queue(outbox, n, CALLERS)
        sent = await _send(outbox, first + second)
    return [one, many, sent]


@asynccontextmanager
async def _databases(pg_url: str | None) -> AsyncIterator[list[tuple[str, str]]]:
    with tempfile.TemporaryDirectory() as tmp:
        dbs = [("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")]
        name = f"wasync_bench_{uuid.uuid4().hex[:8]}"
        base = make_url(pg_url) if pg_url else None
        if base is not None:
            admin = await asyncpg.connect(
                host=base.host, port=base.port, user=base.username, database=base.database
            )
            await admin.execute(f'CREATE DATABASE "{name}"')
            dbs.append(("postgres", base.set(database=name).render_as_string(False)))
        try:
            yield dbs
        finally:
            if base is not None:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()


async def main() -> None:
    """Parse arguments, run each database, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("WASYNC_TEST_PG_URL"))
    parser.add_argument("--messages", type=int, default=500)
    add_json_option(parser)
    args = parser.parse_args()
    out: list[Figure] = []
    table = Table(title=f"outbox, {args.messages} messages to one session (per second)")
    for col in ("database", "queue, 1 caller", f"queue, {CALLERS} callers", "send (no limit)"):
        table.add_column(col, justify="right")
    async with _databases(args.pg_url) as dbs:
        for label, url in dbs:
            figures = await _run(url, args.messages)
            table.add_row(label, *(f"{f:,.0f}" for f in figures))
            names = ("queue, 1 caller", f"queue, {CALLERS} callers", "send, no rate limit")
            out += [
                Figure(name=f"outbox, {label}, {what}", value=v, unit="msg/s")
                for what, v in zip(names, figures, strict=True)
            ]
    Console().print(table)
    write(args.json, "bench_send", out, messages=args.messages)


if __name__ == "__main__":
    asyncio.run(main())
