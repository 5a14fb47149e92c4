"""Benchmark the attendance page: a list of 1,000 chats and a chat of 5,000 messages, in Chromium.

Usage: .venv/bin/python scripts/bench_page.py [--chats 1000] [--messages 5000] [--runs 5]
       [--pg-url URL] [--chromium /usr/bin/chromium]

Loopback only; stops by itself. The wasync side (store, hub, pipeline, uvicorn: what `wasync
run` composes for HTTP) runs in this process on a fresh SQLite file (or a fresh Postgres
database), seeded through `Pipeline.ingest` with `--chats` chats of one message each plus one
chat of `--messages` messages. Debian's Chromium, driven by Playwright, loads each page in a
new tab; medians of `--runs` (monotonic clock, in this process):

- baseline: the same HTTP stack serving an empty page (`/bench/empty`, an empty handler) until
  its one element is visible;
- list: `/atendimento#token=...` until the first chat of the list is visible;
- big chat, cold: `/atendimento?chat=<the 5,000-message chat>#token=...` until its first
  bubble is visible (login, `/ws`, list, then the newest page of messages);
- big chat, warm: a click on that chat in a loaded list until its first bubble is visible;
- live: a message ingested into the open chat until its bubble is visible.

Each figure is printed with its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchjson import Figure, add_json_option, write
from playwright.async_api import BrowserContext, async_playwright
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from starlette.responses import HTMLResponse
from starlette.routing import Route

from wasync.api.app import AppContext, create_app
from wasync.api.server import serve
from wasync.auth import issue_token
from wasync.config import Settings, parse
from wasync.events import Address, ChatKind, Message, MessageType
from wasync.hub import Hub
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.store import Store

# The browser tests' harness (Chromium's flags, throwaway Postgres databases) is reused.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.browser import CHROMIUM_ARGS
from tests.conftest import fresh_pg_database

SECRET = "bench-page-jwt-secret-0123456789abcdef"
EMPTY = (
    '<!doctype html><html><head><title>empty</title></head><body><p id="ok">ok</p></body></html>'
)
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
BIG_PHONE = "5531900000000"


def settings_for(url: str) -> Settings:
    """One tenant, one WAHA session (never polled: nothing runs a poller here)."""
    return parse(
        {
            "database": {"url": url},
            "auth": {"jwt_secret": SECRET},
            "tenants": [
                {
                    "id": "acme",
                    "admins": ["boss"],
                    "sessions": [
                        {"name": "loja", "provider": "waha", "base_url": "http://127.0.0.1:9"}
                    ],
                }
            ],
        }
    )


def message(session_id: int, pmid: str, phone: str, at: datetime, body: str) -> Message:
    """A customer's text message."""
    return Message(
        session_id=session_id,
        provider_message_id=pmid,
        chat=Address(jid=f"{phone}@s.whatsapp.net", kind=ChatKind.DIRECT, phone=phone),
        from_me=False,
        type=MessageType.TEXT,
        timestamp=at,
        body=body,
        push_name=f"Cliente {phone[-4:]}",
    )


async def seed(pipeline: Pipeline, session_id: int, chats: int, messages: int) -> None:
    """`chats` chats of one message, and one chat of `messages` messages (the newest)."""
    batch: list[Message] = []
    for i in range(chats):
        at = T0 + timedelta(minutes=i)
        batch.append(message(session_id, f"c{i}", f"55319{80000000 + i}", at, f"Olá, sou {i}"))
    for i in range(messages):
        at = T0 + timedelta(minutes=chats, seconds=i * 10)
        body = f"Mensagem {i} da conversa longa, com um pouco de texto para ocupar a linha."
        batch.append(message(session_id, f"big{i}", BIG_PHONE, at, body))
    for start in range(0, len(batch), 500):
        await pipeline.ingest(batch[start : start + 500], source="bench")


@asynccontextmanager
async def served(url: str) -> AsyncIterator[tuple[str, Pipeline, Store, int]]:
    """The HTTP stack on `url`: base URL, pipeline, store, the session id."""
    settings = settings_for(url)
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store(url))
        await store.upgrade()
        registry = await sync(store, settings)
        hub = await stack.enter_async_context(Hub(store))
        admins = {t.id: t.admins for t in settings.tenants}
        pipeline = Pipeline(store, crm=settings.crm, admins=admins, subscribers=[hub])
        await stack.enter_async_context(pipeline)

        async def empty(_request: object) -> HTMLResponse:
            return HTMLResponse(EMPTY)

        ctx = AppContext(
            settings=settings,
            store=store,
            registry=registry,
            pipeline=pipeline,
            hub=hub,
            extra_routes=[Route("/bench/empty", empty)],
        )
        base = await stack.enter_async_context(serve(create_app(ctx)))
        ref = registry.get("acme", "loja")
        assert ref is not None
        yield base, pipeline, store, ref.id


async def timed(
    context: BrowserContext, runs: int, go: Callable[..., Awaitable[None]]
) -> list[float]:
    """`go(page)` in a new tab `runs` times (after one untimed warm-up); seconds each."""
    out = []
    for i in range(runs + 1):
        page = await context.new_page()
        started = time.monotonic()
        await go(page)
        if i:
            out.append(time.monotonic() - started)
        await page.close()
    return out


async def measure(args: argparse.Namespace, url: str) -> dict[str, list[float]]:
    """Every figure's samples."""
    async with served(url) as (base, pipeline, store, sid):
        started = time.monotonic()
        await seed(pipeline, sid, args.chats, args.messages)
        seeded_s = time.monotonic() - started
        async with store.read() as conn:
            big = (
                await conn.execute(text("SELECT id FROM chats WHERE phone = :p"), {"p": BIG_PHONE})
            ).scalar_one()
        token = issue_token(SECRET, tenant_id="acme", user_id="boss", role="ADMIN", ttl_s=3600)
        login = f"{base}/atendimento#token={token}"
        figures: dict[str, list[float]] = {"seed (s, once)": [seeded_s]}
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="bench-page-"),
                executable_path=args.chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                locale="pt-BR",
                viewport={"width": 1440, "height": 900},
            )

            async def empty(page):  # type: ignore[no-untyped-def]
                await page.goto(f"{base}/bench/empty")
                await page.locator("#ok").wait_for()

            async def first_chat(page):  # type: ignore[no-untyped-def]
                await page.goto(login)
                await page.locator("nav li").first.wait_for()

            async def big_cold(page):  # type: ignore[no-untyped-def]
                await page.goto(f"{base}/atendimento?chat={big}#token={token}")
                await page.locator(".bubble").first.wait_for()

            figures["baseline: empty page"] = await timed(context, args.runs, empty)
            figures["list of chats: first chat"] = await timed(context, args.runs, first_chat)
            figures["big chat, cold: first bubble"] = await timed(context, args.runs, big_cold)
            figures["big chat, warm (click): first bubble"] = await warm(context, args, login, big)
            figures["live: ingest → bubble"] = await live(context, args, login, big, pipeline, sid)
            await context.close()
        return figures


async def warm(
    context: BrowserContext, args: argparse.Namespace, login: str, big: int
) -> list[float]:
    """A loaded page clicks the big chat (another chat open in between)."""
    page = await context.new_page()
    await page.goto(login)
    item = page.locator(f'nav li[data-chat-id="{big}"] button')
    other = page.locator("nav li").nth(1).locator("button")
    out = []
    for i in range(args.runs + 1):
        await other.click()
        await page.locator(".bubble", has_text="Olá, sou").wait_for()
        started = time.monotonic()
        await item.click()
        await page.locator(".bubble", has_text=f"Mensagem {args.messages - 1} ").wait_for()
        if i:
            out.append(time.monotonic() - started)
    await page.close()
    return out


async def live(
    context: BrowserContext,
    args: argparse.Namespace,
    login: str,
    big: int,
    pipeline: Pipeline,
    sid: int,
) -> list[float]:
    """A message ingested into the open big chat, until its bubble shows."""
    page = await context.new_page()
    await page.goto(login.replace("#", f"?chat={big}#"))
    await page.locator(".bubble").first.wait_for()
    out = []
    for i in range(args.runs + 1):
        body = f"ao vivo {i}"
        at = datetime.now(UTC)
        started = time.monotonic()
        await pipeline.ingest([message(sid, f"live{i}", BIG_PHONE, at, body)], source="bench")
        await page.locator(".bubble", has_text=body).wait_for()
        if i:
            out.append(time.monotonic() - started)
    await page.close()
    return out


def report(figures: dict[str, list[float]], args: argparse.Namespace) -> None:
    """The table: median (min-max) and the ratio to the empty page."""
    console = Console()
    base = statistics.median(figures["baseline: empty page"])
    table = Table(
        title=f"{args.chats:,} chats, one of {args.messages:,} messages; {args.runs} runs"
    )
    for name in ("figure", "median", "min-max", "x empty page"):
        table.add_column(name)
    for name, samples in figures.items():
        mid = statistics.median(samples)
        spread = f"{min(samples) * 1000:.0f}-{max(samples) * 1000:.0f} ms"
        ratio = "" if name.startswith("seed") else f"{mid / base:.1f}x"
        unit = f"{mid:.1f} s" if name.startswith("seed") else f"{mid * 1000:.0f} ms"
        table.add_row(name, unit, spread if not name.startswith("seed") else "", ratio)
    console.print(table)


def main() -> None:
    """Parse, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    add_json_option(parser)
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        raise SystemExit(f"bench_page: no Chromium at {args.chromium} (apt-get install chromium)")
    if args.pg_url:

        async def on_pg() -> dict[str, list[float]]:
            async with fresh_pg_database(args.pg_url) as url:
                return await measure(args, url)

        figures = asyncio.run(on_pg())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = asyncio.run(measure(args, f"sqlite+aiosqlite:///{tmp}/bench.db"))
    report(figures, args)
    base = statistics.median(figures["baseline: empty page"])
    out = [
        Figure(
            name=f"page: {name}",
            value=statistics.median(samples) * (1 if name.startswith("seed") else 1000),
            unit="s" if name.startswith("seed") else "ms",
            baseline=None if name.startswith("seed") else base * 1000,
            baseline_name="" if name.startswith("seed") else "empty page, same HTTP stack",
            ratio=None if name.startswith("seed") else statistics.median(samples) / base,
        )
        for name, samples in figures.items()
        if not name.startswith("baseline")
    ]
    write(args.json, "bench_page", out, chats=args.chats, messages=args.messages)


if __name__ == "__main__":
    main()
