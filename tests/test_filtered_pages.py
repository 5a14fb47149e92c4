"""GOWS and NOWEB apply `limit` in their database and then drop rows from the page (GOWS:
reactions, poll votes, protocol messages; NOWEB: call logs; `processIncomingMessage` in WAHA
2026.2.1): a short page is not the end. With 30 % of every page dropped that way, a catch-up
after two hours down and a backfill each store every message once (SQLite and Postgres)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.polled import polled
from wasync.backfill import Options, run_backfill
from wasync.config import Settings, parse
from wasync.sim import WahaSim, serve
from wasync.store import Store

KEY = "filtered-pages-key"
CHATS = ("5531988880001", "5531988880002", "5511977770003")
DOWN_S = 2 * 3600


def fill(sim: WahaSim, start: int, end: int, rows: int) -> set[str]:
    """`rows` rows spread over `[start, end]` and three chats, 3 of every 10 of them rows the
    engine drops after `limit`; the bare ids of the listed ones."""
    listed: set[str] = set()
    step = (end - start) / rows
    for i in range(rows):
        ts, chat = start + int(i * step), CHATS[i % len(CHATS)]
        if i % 10 in (2, 5, 8):
            sim.add_dropped("s", chat, ts=ts)
        else:
            listed.add(sim.add_incoming("s", chat, text=f"m{i}", ts=ts).split("_")[2])
    return listed


def settings_for(db_url: str, url: str) -> Settings:
    """One tenant with the session `s`; pages of 50."""
    session = {"name": "s", "provider": "waha", "base_url": url, "api_key": KEY}
    return parse(
        {
            "database": {"url": db_url},
            "poll": {"page_size": 50, "log_idle_cycles": False, "backoff_s": 0},
            "tenants": [{"id": "acme", "sessions": [session]}],
        }
    )


async def stored(store: Store) -> list[str]:
    """Every stored provider id (a list: a double would show)."""
    async with store.read() as conn:
        rows = await conn.execute(text("SELECT provider_message_id FROM messages"))
        return [r[0] for r in rows]


@asynccontextmanager
async def session(engine: str, now: list[float]) -> AsyncIterator[tuple[WahaSim, str]]:
    """A GOWS or NOWEB session `s` served on loopback, on our clock."""
    sim = WahaSim(api_key=KEY, clock=lambda: now[0])
    sim.add_session("s", engine=engine)
    async with serve(sim.app) as url:
        yield sim, url


@pytest.mark.parametrize("engine", ["GOWS", "NOWEB"])
async def test_a_catch_up_after_two_hours_down_stores_everything_once(
    db_url: str, engine: str
) -> None:
    """Polled until T0, down for two hours while 600 rows arrive (180 of them dropped from
    their pages), back at T0 + 2 h: the first cycle stores all 420 listed messages, once."""
    t0 = int(time.time()) - DOWN_S
    now = [float(t0)]
    async with session(engine, now) as (sim, url):
        before = fill(sim, t0 - 600, t0 - 60, 40)
        settings = settings_for(db_url, url)
        async with (
            httpx.AsyncClient() as client,
            polled(settings, client, clock=lambda: now[0]) as (store, poller),
        ):
            assert (await poller.cycle()).error is None
            assert sorted(await stored(store)) == sorted(before)
            after = fill(sim, t0 + 1, t0 + DOWN_S, 600)
            now[0] = t0 + DOWN_S + 5
            stats = await poller.cycle()
            assert stats.error is None and stats.new == len(after) == 420
            ids = await stored(store)
            assert len(ids) == len(set(ids)) and set(ids) == before | after


@pytest.mark.parametrize("engine", ["GOWS", "NOWEB"])
async def test_a_backfill_stores_everything_once(db_url: str, engine: str) -> None:
    """A backfill of two hours of history with 30 % of every page dropped after the limit
    stores every listed message once (its windows end only at an empty page)."""
    now = [time.time()]
    async with session(engine, now) as (sim, url):
        end = int(now[0]) - 60
        listed = fill(sim, end - DOWN_S, end, 600)
        settings = settings_for(db_url, url)
        report: Any = await run_backfill(settings, Options(since=end - DOWN_S - 60, until=end + 1))
        assert report.ok
        async with Store(db_url) as store:
            ids = await stored(store)
        assert len(ids) == len(set(ids)) and set(ids) == listed
