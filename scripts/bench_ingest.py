"""Benchmark `Pipeline.ingest()` against a plain SQLAlchemy Core insert of the same message rows.

Usage: .venv/bin/python scripts/bench_ingest.py [--pg-url URL] [--messages N] [--repeat R]

SQLite (a temp file) always runs; Postgres runs when `--pg-url` or `WASYNC_TEST_PG_URL` is
given. Every measurement gets a fresh database. Modes, for N new messages spread over 200 chats
(N/4 for the one-by-one modes, which are slow):

- ingest batch=1 sequential: one event per `ingest()` call, one caller;
- ingest batch=1 with 50 concurrent callers: what group commit is for (webhooks);
- ingest batch=100 new-chats: 100 events per `ingest()` call, one caller, into chats and
  leads that do not exist yet (as in the batch=1 modes): 200 chats, 200 leads and 400 admin
  notifications are created along the way;
- ingest batch=100 known-chats: the same into chats and leads that exist already;
- plain batch=1 / batch=100: `conn.execute(insert(messages), rows)` with the rows the pipeline
  would write, one transaction per chunk of the batch size, through the same transaction path
  as the pipeline (`Store.run_write`), so the ratio is the pipeline's own cost.

Each mode runs R times (default 7) as a pair (plain and ingest, taking turns to go first) on
fresh databases; the printed rates are the medians and the ratio is the median of the pairs'
ratios, so that a noisy neighbour on the machine skews one pair, not the figure. On the 2-core
VM this was built on, single pairs of unchanged code ranged from 0.43 to 0.71.

SQLite's write-ahead log is checkpointed before each timed window and as its last step, so
each side pays once for making its own writes durable (see `checkpoint`).

The target (issue): batched ingest (100) reaches at least 0.5 of the plain insert rate. It is
judged on `batch=100 known-chats`, the like-for-like mode: the plain insert writes its rows
into chats that exist, as ingest does there. `batch=100 new-chats` is printed beside it: it
also writes a chat, a lead, two notifications and four event-log rows per new number, which
the plain insert does not do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from benchjson import Figure, add_json_option, write
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.engine import make_url

from wasync.config import parse
from wasync.events import AckLevel, Message, MessageType
from wasync.phones import address
from wasync.pipeline import Pipeline
from wasync.registry import Registry, SessionRef, sync
from wasync.store import Store
from wasync.store import models as m

T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]

TENANT = "acme"
# Before timing, both sides write a few batches for this other tenant (new chats and leads
# included), so that statement compilation, a one-time cost of a fresh engine, is not timed.
WARMUP = "warmup"
WARMUP_BATCHES = 3
PHONES = 200
CONCURRENCY = 50
BATCHES = (1, 100)
TARGET_RATIO = 0.5
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
# Columns that legitimately differ between the ingest run and the plain run.
UNCOMPARED = ("id", "chat_id", "created_at")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode:
    """How the messages are handed to `ingest()`."""

    batch: int
    concurrency: int = 1
    warm: bool = False  # chats and leads exist already


MODES = (
    Mode(batch=1),
    Mode(batch=1, concurrency=CONCURRENCY),
    Mode(batch=100),
    Mode(batch=100, warm=True),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """One measured mode on one backend: medians over the repeated pairs."""

    backend: str
    batch: int
    concurrency: int
    ingest: float  # messages per second
    plain: float
    ratio: float  # median of ingest / plain over the pairs
    warm: bool = False

    @property
    def label(self) -> str:
        """`batch=100`, or `batch=1 concurrency=50`."""
        extra = f" concurrency={self.concurrency}" if self.concurrency > 1 else ""
        known = " known-chats" if self.warm else " new-chats" if self.batch > 1 else ""
        return f"batch={self.batch}{extra}{known}"


# --- databases -----------------------------------------------------------------------------


@asynccontextmanager
async def fresh_sqlite() -> AsyncIterator[str]:
    """A SQLite file in a new temp dir, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="wasync-bench-") as tmp:
        yield f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"


@asynccontextmanager
async def fresh_postgres(base_url: str) -> AsyncIterator[str]:
    """A throwaway database next to the one in `base_url`, dropped on exit."""
    base = make_url(base_url)
    name = f"wasync_bench_{uuid.uuid4().hex[:12]}"

    async def admin() -> Any:
        return await asyncpg.connect(
            host=base.host or "127.0.0.1",
            port=base.port or 5432,
            user=base.username or "postgres",
            password=base.password,
            database=base.database or "postgres",
        )

    conn = await admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def prepared_store(backend: str, pg_url: str | None) -> AsyncIterator[tuple[Store, Registry]]:
    """A fresh, upgraded database with the measured tenant and a warm-up tenant, one WAHA
    session each."""
    fresh = fresh_sqlite() if backend == "sqlite" else fresh_postgres(pg_url or "")
    async with fresh as url, Store(url) as store:
        await store.upgrade()
        settings = parse(
            {
                "database": {"url": url},
                "tenants": [
                    {
                        "id": TENANT,
                        "admins": ["user-1", "user-2"],
                        "sessions": [
                            {
                                "name": "default",
                                "provider": "waha",
                                "base_url": "http://127.0.0.1:3000",
                            }
                        ],
                    },
                    {
                        "id": WARMUP,
                        "admins": ["user-1"],
                        "sessions": [
                            {
                                "name": "default",
                                "provider": "waha",
                                "base_url": "http://127.0.0.1:3001",
                            }
                        ],
                    },
                ],
            }
        )
        registry = await sync(store, settings)
        async with store.write():  # open the pooled connection before timing
            pass
        yield store, registry


# --- data ----------------------------------------------------------------------------------


def phone_numbers() -> list[str]:
    """200 Brazilian mobiles in canonical 13-digit form."""
    return [f"55319{8800_0000 + i * 37:08d}" for i in range(PHONES)]


def make_messages(session_id: int, n: int) -> list[Message]:
    """`n` new messages over 200 chats, about 40 % outgoing, with WAHA-like raw payloads.

    Chats alternate between the `@c.us` 13-digit jid and the 12-digit `@s.whatsapp.net` jid
    WhatsApp still uses for older Brazilian mobiles, as real traffic does.
    """
    rng = random.Random(20261101)
    phones = phone_numbers()
    out: list[Message] = []
    for i in range(n):
        phone = rng.choice(phones)
        jid = f"{phone[:4]}{phone[5:]}@s.whatsapp.net" if i % 2 else f"{phone}@c.us"
        chat = address(jid)
        assert chat is not None
        from_me = rng.random() < 0.4
        pmid = f"3EB0{i:016X}"
        at = T0 + timedelta(seconds=i)
        body = f"mensagem {i}: " + "olá, tudo bem? " * rng.randint(1, 6)
        raw = {
            "id": f"{str(from_me).lower()}_{jid}_{pmid}",
            "timestamp": int(at.timestamp()),
            "from": "me" if from_me else jid,
            "fromMe": from_me,
            "body": body,
            "hasMedia": False,
            "ack": 1 if from_me else 0,
        }
        out.append(
            Message(
                session_id=session_id,
                provider_message_id=pmid,
                chat=chat,
                from_me=from_me,
                type=MessageType.TEXT,
                body=body,
                timestamp=at,
                ack=AckLevel.SERVER if from_me else None,
                push_name=None if from_me else f"Cliente {phone[-4:]}",
                raw=raw,
            )
        )
    return out


def message_row(ev: Message, chat_id: int, now: datetime, tenant: str = TENANT) -> dict[str, Any]:
    """The `messages` row `Pipeline.ingest()` writes for a text message (same columns)."""
    return {
        "tenant_id": tenant,
        "chat_id": chat_id,
        "session_id": ev.session_id,
        "provider_message_id": ev.provider_message_id,
        "from_me": ev.from_me,
        "sender_jid": None,
        "sender_phone": None,
        "sent_at": ev.timestamp,
        "source": "bench",
        "raw": dict(ev.raw) if ev.raw is not None else None,
        "edited": False,
        "revoked": False,
        "media_voice": False,
        "created_at": now,
        "type": ev.type.value,
        "body": ev.body,
        "ack": int(ev.ack) if ev.ack is not None else None,
        "push_name": ev.push_name,
        "reply_to": ev.reply_to,
        "extra": dict(ev.extra) or None,
        "media_url": None,
        "media_mimetype": None,
        "media_filename": None,
        "media_size": None,
    }


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """`items` cut into consecutive slices of `size`."""
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- measurements --------------------------------------------------------------------------


async def checkpoint(store: Store) -> None:
    """SQLite: copy the write-ahead log into the database file and empty it.

    Both sides call it before timing, and again as the last timed step, so each pays once for
    making its own writes durable. Otherwise the automatic checkpoint (every 1,000 WAL pages,
    with an fsync: about 9 ms here) falls inside one side's window and not the other's, by
    how much their untimed set-ups wrote."""
    if store.is_sqlite and store.url.database:
        await asyncio.to_thread(_checkpoint, store.url.database)


def _checkpoint(path: str) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def timed(run: Callable[[], Awaitable[None]], n: int) -> float:
    """Messages per second of `run`, which stores `n` messages."""
    start = time.perf_counter()
    await run()
    return n / (time.perf_counter() - start)


async def stored_sample(store: Store, session_id: int, n: int, skip: int = 0) -> dict[str, Any]:
    """Check that all `n` messages were stored in the measured session (besides `skip`
    earlier ones); return one row to compare across modes."""
    mine = T_MESSAGES.c.session_id == session_id
    bench = mine & T_MESSAGES.c.provider_message_id.like("3EB0%")
    async with store.read() as conn:
        total = (
            await conn.execute(select(func.count()).select_from(T_MESSAGES).where(mine))
        ).scalar_one()
        row = (
            await conn.execute(
                select(T_MESSAGES).where(bench).order_by(T_MESSAGES.c.provider_message_id)
            )
        ).first()
    assert total == n + skip, f"stored {total} of {n + skip} messages"
    assert row is not None
    return {k: v for k, v in row._mapping.items() if k not in UNCOMPARED}


async def measure_ingest(
    backend: str, pg_url: str | None, n: int, batch: int, concurrency: int, warm: bool = False
) -> tuple[float, dict[str, Any]]:
    """Rate of `Pipeline.ingest()` with `batch` events per call and `concurrency` callers.

    `warm`: the chats and leads exist already (created untimed, as the plain insert's chats
    are), which is how a running daemon mostly ingests.
    """
    async with prepared_store(backend, pg_url) as (store, registry):
        session, warmup = sessions(registry)
        events = make_messages(session.id, n)
        calls = chunks(events, batch)
        lanes = [calls[i::concurrency] for i in range(concurrency)]
        admins = {TENANT: ["user-1", "user-2"], WARMUP: ["user-1"]}
        async with Pipeline(store, admins=admins) as pipeline:
            for call in chunks(make_messages(warmup.id, batch * WARMUP_BATCHES), batch):
                await pipeline.ingest(call, source="bench")
            if warm:
                await pipeline.ingest(greetings(session.id), source="bench")

            async def lane(mine: Sequence[Sequence[Message]]) -> None:
                for call in mine:
                    result = await pipeline.ingest(call, source="bench")
                    assert result.new == len(call), result

            async def run() -> None:
                await asyncio.gather(*(lane(mine) for mine in lanes))
                await checkpoint(store)

            await checkpoint(store)
            rate = await timed(run, n)
        return rate, await stored_sample(store, session.id, n, skip=PHONES if warm else 0)


def greetings(session_id: int) -> list[Message]:
    """One earlier message per phone, so that every chat and lead exists."""
    first = make_messages(session_id, 1)[0]
    return [
        replace(
            first,
            provider_message_id=f"WARM{i:04d}",
            chat=address(f"{phone}@c.us") or first.chat,
            timestamp=T0 - timedelta(days=1),
        )
        for i, phone in enumerate(phone_numbers())
    ]


async def measure_plain(
    backend: str, pg_url: str | None, n: int, batch: int
) -> tuple[float, dict[str, Any]]:
    """Rate of a Core `insert(messages)` of the same rows, one transaction per chunk."""
    async with prepared_store(backend, pg_url) as (store, registry):
        session, warmup = sessions(registry)
        now = datetime.now(UTC)
        warm_events = make_messages(warmup.id, batch * WARMUP_BATCHES)
        warm_chats = await create_chats(store, warmup.id, WARMUP, warm_events)
        warm_rows = [message_row(ev, warm_chats[ev.chat.jid], now, WARMUP) for ev in warm_events]
        for chunk in chunks(warm_rows, batch):
            await store.run_write(partial(insert_rows, list(chunk)))
        events = make_messages(session.id, n)
        chat_ids = await create_chats(store, session.id, TENANT, events)
        rows = [message_row(ev, chat_ids[ev.chat.jid], now) for ev in events]

        async def run() -> None:
            for chunk in chunks(rows, batch):
                await store.run_write(partial(insert_rows, list(chunk)))
            await checkpoint(store)

        await checkpoint(store)
        rate = await timed(run, n)
        return rate, await stored_sample(store, session.id, n)


def insert_rows(rows: list[dict[str, Any]], conn: Connection) -> None:
    """The plain insert: one Core `insert(messages)` executemany."""
    conn.execute(insert(T_MESSAGES), rows)


def sessions(registry: Registry) -> tuple[SessionRef, SessionRef]:
    """The measured session and the warm-up one."""
    session, warmup = registry.get(TENANT, "default"), registry.get(WARMUP, "default")
    assert session is not None and warmup is not None
    return session, warmup


async def create_chats(
    store: Store, session_id: int, tenant: str, events: Sequence[Message]
) -> dict[str, int]:
    """The chats the messages belong to (untimed), by jid."""
    now = datetime.now(UTC)
    jids = sorted({ev.chat.jid: ev.chat.phone for ev in events}.items())
    rows = [
        {
            "tenant_id": tenant,
            "session_id": session_id,
            "kind": "direct",
            "jid": jid,
            "phone": phone,
            "status": "OPEN",
            "unread_count": 0,
            "created_at": now,
            "updated_at": now,
        }
        for jid, phone in jids
    ]
    async with store.write() as conn:
        await conn.execute(insert(T_CHATS), rows)
        found = await conn.execute(
            select(T_CHATS.c.jid, T_CHATS.c.id).where(T_CHATS.c.tenant_id == tenant)
        )
        return {r.jid: r.id for r in found}


async def bench_backend(
    backend: str, pg_url: str | None, n: int, repeat: int, console: Console
) -> list[Result]:
    """Every mode on one backend, each pair on fresh databases."""
    results = []
    for mode in MODES:
        count = n if mode.batch > 1 or mode.concurrency > 1 else max(n // 4, 100)
        pairs: list[tuple[float, float]] = []
        for i in range(repeat):
            console.print(f"[dim]{backend}: {mode} pair {i + 1}/{repeat}[/dim]")
            plain_run = measure_plain(backend, pg_url, count, mode.batch)
            ingest_run = measure_ingest(
                backend, pg_url, count, mode.batch, mode.concurrency, mode.warm
            )
            if i % 2:  # alternate which side goes first, so that drift cancels out
                rate, sample = await ingest_run
                plain, expected = await plain_run
            else:
                plain, expected = await plain_run
                rate, sample = await ingest_run
            if sample != expected:
                diff = sorted(k for k in sample if sample[k] != expected.get(k))
                console.print(f"[red]{backend}: plain rows differ from ingest rows in {diff}[/red]")
            pairs.append((rate, plain))
        results.append(
            Result(
                backend=backend,
                batch=mode.batch,
                concurrency=mode.concurrency,
                ingest=statistics.median(r for r, _ in pairs),
                plain=statistics.median(p for _, p in pairs),
                ratio=statistics.median(r / p for r, p in pairs),
                warm=mode.warm,
            )
        )
    return results


# --- output --------------------------------------------------------------------------------


def report(results: Sequence[Result], n: int, repeat: int, console: Console) -> None:
    """A table, then one plain line per result."""
    table = Table(
        title=f"Pipeline.ingest vs plain insert, {n} new messages over {PHONES} chats "
        f"(median of {repeat})"
    )
    for col in ("backend", "mode", "ingest msg/s", "plain msg/s", "ratio"):
        table.add_column(col, justify="right" if "msg" in col or col == "ratio" else "left")
    for r in results:
        style = "red" if judged(r) and r.ratio < TARGET_RATIO else ""
        table.add_row(
            r.backend,
            r.label,
            f"{r.ingest:,.0f}",
            f"{r.plain:,.0f}",
            f"{r.ratio:.2f}",
            style=style,
        )
    console.print(table)
    for r in results:
        print(
            f"{r.backend} {r.label} ingest={r.ingest:.0f} msg/s plain={r.plain:.0f} msg/s "
            f"ratio={r.ratio:.2f}"
        )
    for r in results:
        if judged(r):
            verdict = "meets" if r.ratio >= TARGET_RATIO else "misses"
            print(f"{r.backend}: {r.label} {verdict} the target ratio {TARGET_RATIO}")


def judged(r: Result) -> bool:
    """The mode the target is judged on: batched, into known chats (like for like)."""
    return r.batch == 100 and r.concurrency == 1 and r.warm


async def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run every backend, print the figures; exit 1 if the target is missed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("WASYNC_TEST_PG_URL"))
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7, help="pairs per mode (median)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.messages < 100 or args.repeat < 1:
        parser.error("--messages must be at least 100 and --repeat at least 1")
    console = Console(stderr=True)
    backends = ["sqlite"] + (["postgres"] if args.pg_url else [])
    results: list[Result] = []
    for backend in backends:
        results += await bench_backend(backend, args.pg_url, args.messages, args.repeat, console)
    report(results, args.messages, args.repeat, Console())
    figures = [
        Figure(
            name=f"ingest, {r.backend}, {r.label}",
            value=r.ingest,
            unit="msg/s",
            baseline=r.plain,
            baseline_name="plain insert of the same rows",
            ratio=r.ratio,
            target=f">= {TARGET_RATIO}" if judged(r) else "",
        )
        for r in results
    ]
    write(args.json, "bench_ingest", figures, messages=args.messages, repeat=args.repeat)
    missed = [r for r in results if judged(r) and r.ratio < TARGET_RATIO]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
