"""One `Poller` against the WAHA simulator: what a cycle reads, on SQLite and Postgres."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import text

from wasync.config import parse
from wasync.pipeline import Pipeline
from wasync.poller import Poller
from wasync.providers import make_provider
from wasync.registry import sync
from wasync.sim.waha import WahaSim
from wasync.store import Store

KEY = "poller-test-key"
PHONE = "5531988887777"


@dataclass
class Rig:
    """A WEBJS session in the simulator, polled into a fresh store."""

    sim: WahaSim
    store: Store
    poller: Poller

    async def ack_of(self, message_id: str) -> int | None:
        """The stored ack of a message, by its bare id."""
        bare = message_id.rsplit("_", 1)[-1]
        async with self.store.read() as conn:
            sql = text("SELECT ack FROM messages WHERE provider_message_id = :m")
            return (await conn.execute(sql, {"m": bare})).scalar()


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    """The simulator with one chat of two messages, the last one ours at SERVER."""
    sim = WahaSim(api_key=KEY)
    sim.add_session("default", engine="WEBJS")
    settings = parse(
        {
            "database": {"url": db_url},
            "poll": {"log_idle_cycles": False},
            "tenants": [
                {
                    "id": "acme",
                    "sessions": [
                        {
                            "name": "default",
                            "provider": "waha",
                            "base_url": "http://waha",
                            "api_key": KEY,
                        }
                    ],
                }
            ],
        }
    )
    transport = httpx.ASGITransport(app=sim.app)
    async with (
        Store(db_url) as store,
        httpx.AsyncClient(transport=transport, base_url="http://waha") as client,
    ):
        await store.upgrade()
        (ref,) = list(await sync(store, settings))
        async with Pipeline(store) as pipeline:
            poller = Poller(
                make_provider(ref, client, settings.poll), pipeline, store, settings.poll
            )
            yield Rig(sim=sim, store=store, poller=poller)


async def test_an_ack_on_the_last_message_needs_no_message_read(rig: Rig) -> None:
    """When only the last message's ack moved, the chat list carries it: the cycle applies it
    without reading the chat's messages again (WAHA's overview gives the serialized id)."""
    now = int(time.time())
    rig.sim.add_incoming("default", PHONE, text="Oi", ts=now - 60)
    last = rig.sim.add_outgoing("default", PHONE, text="Olá! Como posso ajudar?", ts=now - 30)
    await rig.poller.cycle()
    await rig.poller.cycle()
    assert await rig.ack_of(last) == 1
    reads = rig.sim.requests["chats.messages"]

    rig.sim.set_ack("default", last, 3)
    stats = await rig.poller.cycle()

    assert stats.error is None
    assert await rig.ack_of(last) == 3
    assert rig.sim.requests["chats.messages"] == reads
