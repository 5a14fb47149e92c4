"""Polling alone loses nothing in the cases a review found, SQLite and Postgres:

- GOWS fills a page's `limit` before it drops reactions and protocol rows: a message behind a
  run of such rows, in a session that then stays quiet, is still read (the late walk);
- a row dated in the future (a broken phone clock) does not carry the stream's cursor above
  every real row (GOWS) nor hide the chats behind it (Evolution);
- a row that surfaces late, dated before the newest one we hold but within the overlap
  window, is read while the session stays quiet (GOWS);
- the walk behind the cursor, when it fails once, is owed and run by the next cycle;
- the chat-list strategy's second read of a young chat holds when our clock runs ahead of
  the provider's by more than the overlap window (WEBJS, Evolution).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.polled import polled
from tests.test_same_second import stored
from wasync.config import parse
from wasync.poller import Poller
from wasync.sim import EvolutionSim, WahaSim
from wasync.store import Store

KEY = "stream-gaps-key"
HOUR = 720  # cycles of 5 s


class FailOnce(httpx.AsyncBaseTransport):
    """Answers 503 to the first request whose query has `marker` (a name, or `name=value`),
    once armed."""

    def __init__(self, inner: httpx.AsyncBaseTransport, marker: str) -> None:
        self.inner, self.marker, self.armed, self.failed = inner, marker, False, 0

    def _marked(self, request: httpx.Request) -> bool:
        name, _, value = self.marker.partition("=")
        given = request.url.params.get(name)
        return given is not None and (not value or given == value)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.armed and self._marked(request):
            self.armed, self.failed = False, self.failed + 1
            return httpx.Response(503, json={"statusCode": 503, "message": "Unavailable"})
        return await self.inner.handle_async_request(request)


@asynccontextmanager
async def rig(
    db_url: str,
    provider: str,
    sim_now: list[float],
    *,
    skew_s: float = 0,
    marker: str = "filter.timestamp.lte",
    version: str = "2026.7.1",
    page_size: int = 50,
) -> AsyncIterator[tuple[Any, str, Store, Poller, FailOnce]]:
    """One session (`waha-GOWS`, `waha-WEBJS`, `evolution`) polled every 5 s into a fresh
    store, the simulator on `sim_now`, our clock `skew_s` ahead of it; the transport fails
    the request `marker` names once armed."""
    sim_clock: Callable[[], float] = lambda: sim_now[0]  # noqa: E731
    if provider.startswith("waha"):
        sim: Any = WahaSim(api_key=KEY, clock=sim_clock, head_ties="first", version=version)
        sim.add_session("default", engine=provider.partition("-")[2])
        session = "default"
    else:
        sim = EvolutionSim(api_key=KEY, clock=sim_clock)
        sim.add_instance("vendas")
        session = "vendas"
    cfg = {"name": session, "provider": provider.partition("-")[0], "base_url": "http://sim",
           "api_key": KEY}  # fmt: skip
    # One try per request: a 503 is the cycle's error, not retried inside it.
    poll = {"interval_s": 5, "log_idle_cycles": False, "status_interval_s": 3600, "max_attempts": 1,
            "page_size": page_size}  # fmt: skip
    settings = parse(
        {"database": {"url": db_url}, "poll": poll, "tenants": [{"id": "t", "sessions": [cfg]}]}
    )
    transport = FailOnce(httpx.ASGITransport(app=sim.app), marker)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://sim") as client,
        polled(settings, client, clock=lambda: sim_now[0] + skew_s) as (store, poller),
    ):
        yield sim, session, store, poller, transport


async def cycles(poller: Poller, now: list[float], n: int, step_s: float = 5) -> list[str]:
    """`n` cycles `step_s` apart; the errors they reported."""
    errors = []
    for _ in range(n):
        now[0] += step_s
        stats = await poller.cycle()
        if stats.error:
            errors.append(stats.error)
    return errors


async def test_a_message_behind_rows_gows_drops_is_read(db_url: str) -> None:
    """49 reactions (listed by GOWS's database, dropped from the page after `limit`) right
    after the newest message we hold, then one more message, then quiet: it is stored within
    the hour (the late walk passes over the emptied pages; the probe alone cannot see it)."""
    now = [float(int(time.time()))]
    async with rig(db_url, "waha-GOWS", now) as (sim, s, store, poller, _):
        t0 = int(now[0])
        sim.add_incoming(s, "5531988880001", text="antes", ts=t0)
        assert await cycles(poller, now, 27) == []  # past the first late walk
        for i in range(49):
            sim.add_dropped(s, "5531988880001", ts=t0 + 1 + i // 10)
        sim.add_incoming(s, "5531988880002", text="depois", ts=int(now[0]))
        assert await cycles(poller, now, HOUR) == []
        assert await stored(store, "antes") and await stored(store, "depois")


@pytest.mark.parametrize("provider", ["waha-GOWS", "evolution"])
async def test_a_future_dated_row_hides_no_real_message(db_url: str, provider: str) -> None:
    """A row dated 30 days ahead, then real messages in a known chat and a new one: both are
    stored within two cycles, and so is the future row."""
    now = [float(int(time.time()))]
    async with rig(db_url, provider, now) as (sim, s, store, poller, _):
        t0 = int(now[0])
        sim.add_incoming(s, "5531988880001", text="A", ts=t0)
        assert await cycles(poller, now, 2) == []
        sim.add_incoming(s, "5531988880009", text="futuro", ts=t0 + 30 * 86_400)
        assert await cycles(poller, now, 2) == []
        sim.add_incoming(s, "5531988880001", text="real-1", ts=int(now[0]))
        sim.add_incoming(s, "5531988880002", text="real-2", ts=int(now[0]))
        assert await cycles(poller, now, 2) == []
        for body in ("futuro", "real-1", "real-2"):
            assert await stored(store, body), body


async def test_a_late_row_within_the_overlap_is_read_while_the_session_is_quiet(
    db_url: str,
) -> None:
    """A GOWS row that surfaces dated 60 s before the newest one we hold, and nothing after it:
    stored within the hour (before, only the session's next message brought it in)."""
    now = [float(int(time.time()))]
    async with rig(db_url, "waha-GOWS", now) as (sim, s, store, poller, _):
        t0 = int(now[0])
        sim.add_incoming(s, "5531988880001", text="A", ts=t0)
        assert await cycles(poller, now, 40) == []
        sim.add_incoming(s, "5531988880002", text="atrasada", ts=t0 - 60)
        assert await cycles(poller, now, HOUR) == []
        assert await stored(store, "atrasada")


async def test_the_walk_behind_the_cursor_is_owed_when_it_fails(db_url: str) -> None:
    """A late row, then a new message whose probe moves the cursor, and the walk behind it
    answered 503 once: the next cycle runs that walk from the old cursor, so the late row is
    stored before any late walk could have read it (it is older than the overlap behind the
    new cursor would reach)."""
    now = [float(int(time.time()))]
    async with rig(db_url, "waha-GOWS", now) as (sim, s, store, poller, transport):
        t0 = int(now[0])
        sim.add_incoming(s, "5531988880001", text="A", ts=t0)
        assert await cycles(poller, now, 2) == []
        sim.add_incoming(s, "5531988880002", text="atrasada", ts=t0 - 100)
        now[0] += 90  # the next message comes 100 s later: the late row is 190 s behind it
        sim.add_incoming(s, "5531988880003", text="nova", ts=int(now[0]))
        transport.armed = True
        errors = await cycles(poller, now, 2, step_s=1)
        assert transport.failed == 1 and len(errors) == 1  # the walk failed once...
        assert await stored(store, "nova") and await stored(store, "atrasada")  # ...and ran


@pytest.mark.parametrize(("engine", "version"), [("NOWEB", "2025.10.4"), ("GOWS", "2025.9.1"),
                                                 ("NOWEB", "2025.10.5")])  # fmt: skip
async def test_a_backlog_walk_cut_short_loses_nothing_whatever_the_order(
    db_url: str, engine: str, version: str
) -> None:
    """WAHA before 2025.10.5 drops `sortOrder` and lists newest first: 120 messages over six
    minutes (and a row the engine drops among the newest), the walk's second page answered
    503 once; every message is stored (before, the first page had moved the cursor to the
    newest, so the older rows fell behind the overlap window, for good)."""
    now = [float(int(time.time()))]
    rigged = rig(db_url, f"waha-{engine}", now, marker="offset=50", version=version)
    async with rigged as (sim, s, store, poller, transport):
        t0 = int(now[0])
        sim.add_incoming(s, "5531988880001", text="A", ts=t0)
        assert await cycles(poller, now, 2) == []
        for i in range(1, 121):
            sim.add_incoming(s, f"55319888{i:05d}", text=f"atraso {i}", ts=t0 + 3 * i)
        # A row the engine drops from its page among the newest: the first page comes back
        # short, and all known on the next cycle; that is no end of a newest-first walk.
        sim.add_dropped(s, "5531988800001", ts=t0 + 3 * 119)
        now[0] += 400
        transport.armed = True
        errors = await cycles(poller, now, HOUR)
        assert transport.failed == 1 and len(errors) == 1
        async with store.read() as conn:
            sql = text("SELECT count(*) FROM messages WHERE body LIKE 'atraso %'")
            assert (await conn.execute(sql)).scalar_one() == 120


async def test_a_newest_first_walk_at_its_page_cap_owes_the_rest(db_url: str) -> None:
    """A newest-first backlog longer than a walk's page cap (1,000 pages, here of one row):
    the walk moves the cursor and owes what lies below its oldest row; the next cycle reads
    it, and every message is stored."""
    now = [float(int(time.time()))]
    rigged = rig(db_url, "waha-NOWEB", now, version="2025.10.4", page_size=1)
    async with rigged as (sim, s, store, poller, _):
        t0 = int(now[0])
        sim.add_incoming(s, "5531988880001", text="A", ts=t0)
        assert await cycles(poller, now, 2) == []
        for i in range(1, 1101):
            sim.add_incoming(s, "5531988880002", text=f"fila {i}", ts=t0 + 10 + i)
        now[0] += 1200
        assert await cycles(poller, now, 3) == []
        async with store.read() as conn:
            sql = text("SELECT count(*) FROM messages WHERE body LIKE 'fila %'")
            assert (await conn.execute(sql)).scalar_one() == 1100


@pytest.mark.parametrize("provider", ["waha-WEBJS", "evolution"])
async def test_a_same_second_message_is_read_with_our_clock_ahead(
    db_url: str, provider: str
) -> None:
    """tests/test_same_second.py's phone case with our clock 130 s ahead of the provider's
    (more than the overlap window): every same-second message is stored (was 0 of 20)."""
    now = [float(int(time.time()))]
    async with rig(db_url, provider, now, skew_s=130) as (sim, s, store, poller, _):
        missed = []
        for trial in range(10):
            phone = f"55319{88000000 + trial}"
            second = int(now[0])
            sim.add_incoming(s, phone, text=f"primeira {trial}", ts=second)
            assert await cycles(poller, now, 1, step_s=0.4) == []
            sim.add_outgoing(s, phone, text=f"segunda {trial}", ts=second)
            assert await cycles(poller, now, 3) == []
            if not await stored(store, f"segunda {trial}"):
                missed.append(trial)
        assert missed == []
