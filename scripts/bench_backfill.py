"""Backfill throughput: messages/s stored, beside the rate of fetching the same pages unstored.

Starts `scripts/sim_serve.py` (both simulators, seeded, in their own process, loopback only),
then in this process runs the same walk three times: fetch-only (providers read, pages parsed,
nothing stored), a real backfill into a fresh database, and fetch-only again. Prints both rates
and their ratio; the target is backfill >= 0.5 x fetch-only (storing costs under half the time).

    .venv/bin/python scripts/bench_backfill.py                      # SQLite file, 20,000 messages
    .venv/bin/python scripts/bench_backfill.py --pg-url postgresql+asyncpg://postgres@127.0.0.1/x

With `--pg-url`, a throwaway database is created on that server and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from benchjson import Figure, add_json_option, write
from sqlalchemy.engine import make_url

from wasync.backfill import BackfillReport, Options, run_backfill
from wasync.config import Settings, parse

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_790_000_000.0
SPAN_DAYS = 14


def parse_args() -> argparse.Namespace:
    """World size (capped), database, concurrency."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chats", type=int, default=100, help="chats per simulator (max 500)")
    ap.add_argument("--messages-per-chat", type=int, default=100, help="(max 500)")
    ap.add_argument("--pg-url", help="a Postgres server to use instead of a SQLite file")
    ap.add_argument("--chats-in-flight", type=int, default=4)
    ap.add_argument("--engine", default="WEBJS")
    add_json_option(ap)
    args = ap.parse_args()
    args.chats = min(args.chats, 500)
    args.messages_per_chat = min(args.messages_per_chat, 500)
    return args


def start_sims(args: argparse.Namespace) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The simulator process and what it printed (URLs, names, keys)."""
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "sim_serve.py"),
        f"--chats={args.chats}",
        f"--messages-per-chat={args.messages_per_chat}",
        f"--now={NOW}",
        f"--span-days={SPAN_DAYS}",
        f"--engine={args.engine}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("sim_serve.py did not start")
    return proc, json.loads(line)


def settings_for(url: str, sims: dict[str, Any]) -> Settings:
    """One tenant with the WAHA session and the Evolution instance of the simulators."""
    sessions = [
        {
            "name": sims["waha_session"],
            "provider": "waha",
            "base_url": sims["waha"],
            "api_key": sims["waha_key"],
        },
        {
            "name": sims["evo_instance"],
            "provider": "evolution",
            "base_url": sims["evolution"],
            "api_key": sims["evo_key"],
        },
    ]
    return parse(
        {
            "database": {"url": url},
            "poll": {"backoff_s": 0.05},
            "tenants": [{"id": "bench", "admins": ["admin"], "sessions": sessions}],
        }
    )


async def timed(settings: Settings, options: Options) -> tuple[float, float, BackfillReport]:
    """Wall seconds, CPU seconds of this process, and report of one backfill run."""
    started, cpu = time.perf_counter(), _cpu_s()
    report = await run_backfill(settings, options)
    return time.perf_counter() - started, _cpu_s() - cpu, report


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def line(name: str, seconds: float, cpu_s: float, report: BackfillReport) -> float:
    """Print one run; return its rate (messages seen per second)."""
    seen = sum(s.seen for s in report.sessions)
    new = sum(s.new for s in report.sessions)
    requests = sum(s.requests for s in report.sessions)
    rate = seen / seconds if seconds else 0.0
    print(
        f"{name:<12} {seen:>7} seen {new:>7} new {requests:>6} requests "
        f"{seconds:6.2f} s {rate:7.0f} msg/s  (wasync CPU {cpu_s:5.2f} s)"
    )
    return rate


async def bench(args: argparse.Namespace, sims: dict[str, Any], url: str) -> None:
    """Fetch-only, backfill, fetch-only; print the ratio."""
    settings = settings_for(url, sims)
    base = Options(
        since=NOW - (SPAN_DAYS + 1) * 86_400,
        until=NOW + 60,
        chats_in_flight=args.chats_in_flight,
    )
    fetch = Options(**{**_fields(base), "fetch_only": True})
    rates = []
    rates.append(line("fetch-only", *await timed(settings, fetch)))
    stored = line("backfill", *await timed(settings, base))
    rates.append(line("fetch-only", *await timed(settings, fetch)))
    fetch_rate = sum(rates) / len(rates)
    ratio = stored / fetch_rate if fetch_rate else 0.0
    verdict = "ok" if ratio >= 0.5 else "BELOW TARGET"
    print(f"ratio backfill / fetch-only = {ratio:.2f} (target >= 0.50: {verdict})")
    backend = "SQLite" if url.startswith("sqlite") else "Postgres"
    figure = Figure(
        name=f"backfill, {backend}",
        value=stored,
        unit="msg/s",
        baseline=fetch_rate,
        baseline_name="fetching the same pages without storing them",
        ratio=ratio,
        target=">= 0.5",
    )
    write(args.json, "bench_backfill", [figure], chats=args.chats)


@asynccontextmanager
async def database(pg_url: str | None, tmp: str) -> AsyncIterator[str]:
    """A fresh database URL: a SQLite file, or a throwaway Postgres database."""
    if not pg_url:
        yield f"sqlite+aiosqlite:///{tmp}/bench.db"
        return
    base = make_url(pg_url)
    name = f"wasync_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(
        host=base.host,
        port=base.port,
        user=base.username,
        password=base.password,
        database=base.database or "postgres",
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def run(args: argparse.Namespace, sims: dict[str, Any], tmp: str) -> None:
    """The benchmark on a fresh database."""
    async with database(args.pg_url, tmp) as url:
        print(
            f"{sum(sims['messages'].values())} messages in {2 * args.chats} chats; "
            f"database {url.split(':', 1)[0]}; {args.chats_in_flight} chats in flight"
        )
        await bench(args, sims, url)


def _fields(options: Options) -> dict[str, Any]:
    return {name: getattr(options, name) for name in Options.__dataclass_fields__}


def main() -> None:
    """Run the benchmark against simulators in a child process; always stop it."""
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    proc, sims = start_sims(args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(args, sims, tmp))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
