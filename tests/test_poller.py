"""A `Poller` and the WAHA adapter against the WAHA simulator: what a cycle reads (store
tests on SQLite and Postgres), and how LIDs are resolved."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import text

from wasync.config import parse
from wasync.events import Message
from wasync.pipeline import Pipeline
from wasync.poller import Poller
from wasync.providers import make_provider
from wasync.providers.http import Http, RetryPolicy
from wasync.providers.waha import LID_RETRY_S, WahaProvider
from wasync.registry import sync
from wasync.sim.faults import Fault
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


async def test_a_lid_without_a_known_phone_is_asked_again_later() -> None:
    """WAHA may learn a LID's phone later (or answered `pn: null` by a bug, waha#1712): a miss
    is asked again after LID_RETRY_S, and a transient error is not remembered at all."""
    sim = WahaSim(api_key=KEY)
    sim.add_session("default", engine="NOWEB")
    lid = "123456789012345@lid"
    sim.add_contact("default", PHONE, lid=lid, lid_known=False)
    sim.add_incoming("default", lid, text="Oi", ts=int(time.time()) - 10)
    now = [1000.0]
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport) as client:
        http = Http(
            client, "http://waha", headers={"X-Api-Key": KEY}, retry=RetryPolicy(attempts=1)
        )
        provider = WahaProvider(
            http, session="default", session_id=1, engine="NOWEB", clock=lambda: now[0]
        )

        async def chat_phone() -> str | None:
            page = await provider.messages(lid, since=0, until=None, limit=50, page=1)
            (message,) = page.events
            assert isinstance(message, Message)
            return message.chat.phone

        sim.faults.push(Fault("503", route="lids.get"))
        assert await chat_phone() is None  # the lids API failed: nothing remembered
        assert await chat_phone() is None  # asked again: pn null, a miss
        sim.session("default").lids[lid] = f"{PHONE}@c.us"  # WAHA learns it
        asked = sim.requests["lids.get"]
        assert await chat_phone() is None and sim.requests["lids.get"] == asked
        now[0] += LID_RETRY_S + 1
        assert await chat_phone() == PHONE
        assert await chat_phone() == PHONE and sim.requests["lids.get"] == asked + 1
