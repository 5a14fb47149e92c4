"""A message in the same second as the chat's previous one, in a chat that then stays quiet,
is stored within two cycles by the chat-list strategy (WAHA WEBJS overview, Evolution
findChats) and by the one-stream strategy (WAHA GOWS and NOWEB, `chats/all/messages`),
SQLite and Postgres.

Both simulators show, among the rows of a chat's newest second, the first one stored
(Evolution: `DISTINCT ON` without a tie-breaker, evolution.md 5.3; the WAHA simulator with
`head_ties="first"`), so the head does not change when the second row lands: a poller that
took the head as proof of "nothing new" never reads it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.polled import polled
from wasync.config import parse
from wasync.poller import Poller
from wasync.sim import EvolutionSim, WahaSim
from wasync.store import Store

KEY = "same-second-key"
TRIALS = 50


@asynccontextmanager
async def chat_list_poller(
    db_url: str, provider: str, now: list[float]
) -> AsyncIterator[tuple[Any, str, Poller]]:
    """A WEBJS session or an Evolution instance polled into a fresh store, on our clock."""
    clock = lambda: now[0]  # noqa: E731
    if provider.startswith("waha"):
        engine = provider.partition("-")[2] or "WEBJS"
        sim: Any = WahaSim(api_key=KEY, clock=clock, head_ties="first")
        sim.add_session("default", engine=engine)
        session = "default"
    else:
        sim = EvolutionSim(api_key=KEY, clock=clock)
        sim.add_instance("vendas")
        session = "vendas"
    kind = provider.partition("-")[0]
    cfg = {"name": session, "provider": kind, "base_url": "http://sim", "api_key": KEY}
    poll = {"interval_s": 5, "log_idle_cycles": False, "status_interval_s": 3600}
    settings = parse(
        {"database": {"url": db_url}, "poll": poll, "tenants": [{"id": "t", "sessions": [cfg]}]}
    )
    transport = httpx.ASGITransport(app=sim.app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://sim") as client,
        polled(settings, client, clock=clock) as (_store, poller),
    ):
        yield sim, session, poller


async def stored(store: Store, body: str) -> bool:
    """A message with this body is in `messages`."""
    async with store.read() as conn:
        sql = text("SELECT count(*) FROM messages WHERE body = :b")
        return int((await conn.execute(sql, {"b": body})).scalar_one()) == 1


@pytest.mark.parametrize("provider", ["waha", "evolution", "waha-GOWS", "waha-NOWEB"])
@pytest.mark.parametrize("author", ["customer", "phone"])
async def test_a_same_second_message_is_stored_within_two_cycles(
    db_url: str, provider: str, author: str
) -> None:
    """50 trials, each in a new chat: a message, one cycle, a second message in the same
    second (from the customer, or typed on our phone, which leaves the unread count as it
    is), then two cycles: it is stored, every time."""
    now = [float(int(time.time()))]
    async with chat_list_poller(db_url, provider, now) as (sim, session, poller):
        missed = []
        for trial in range(TRIALS):
            phone = f"55319{88000000 + trial}"
            second = int(now[0])
            sim.add_incoming(session, phone, text=f"primeira {trial}", ts=second)
            now[0] += 0.4
            assert (await poller.cycle()).error is None
            if author == "customer":
                sim.add_incoming(session, phone, text=f"segunda {trial}", ts=second)
            else:
                sim.add_outgoing(session, phone, text=f"segunda {trial}", ts=second)
            for _ in range(2):
                now[0] += 5
                assert (await poller.cycle()).error is None
            if not await stored(poller.store, f"segunda {trial}"):
                missed.append(trial)
        assert missed == []
