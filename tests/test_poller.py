"""A `Poller` and the WAHA adapter against the WAHA simulator: what a cycle reads (store
tests on SQLite and Postgres), and how LIDs are resolved."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from wasync.config import parse
from wasync.events import Message
from wasync.pipeline import Pipeline
from wasync.poller import Poller, window_pages
from wasync.providers.evolution import EvolutionProvider
from wasync.providers.http import Http, RetryPolicy
from wasync.providers.waha import LID_RETRY_S, WahaProvider
from wasync.registry import provider_for, sync
from wasync.sim.evolution import EvolutionSim
from wasync.sim.faults import Fault
from wasync.sim.waha import WahaSim
from wasync.store import Store

KEY = "poller-test-key"
PHONE = "5531988887777"


@dataclass
class Rig:
    """A provider session in its simulator, polled into a fresh store."""

    sim: Any
    store: Store
    poller: Poller
    broken: BrokenChat | None = None

    async def ack_of(self, message_id: str) -> int | None:
        """The stored ack of a message, by its bare id."""
        bare = message_id.rsplit("_", 1)[-1]
        async with self.store.read() as conn:
            sql = text("SELECT ack FROM messages WHERE provider_message_id = :m")
            return (await conn.execute(sql, {"m": bare})).scalar()


class BrokenChat(httpx.AsyncBaseTransport):
    """Answers 500 to every read of some chats' messages (WEBJS crashing on their window);
    `failed` counts them per phone."""

    def __init__(self, inner: httpx.AsyncBaseTransport, phones: Sequence[str]) -> None:
        self.inner, self.failed = inner, Counter({phone: 0 for phone in phones})

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        for phone in self.failed:
            if f"/chats/{phone}" in path and path.endswith("/messages"):
                self.failed[phone] += 1
                return httpx.Response(500, json={"statusCode": 500, "message": "Internal error"})
        return await self.inner.handle_async_request(request)


@asynccontextmanager
async def polled(
    db_url: str, sim: Any, session: dict[str, str], broken: Sequence[str] = ()
) -> AsyncIterator[Rig]:
    """A fresh store, the one configured `session`, and a Poller reading it from `sim`
    (every read of the chats of the phones `broken` answered 500)."""
    settings = parse(
        {
            "database": {"url": db_url},
            "poll": {"log_idle_cycles": False},
            "tenants": [{"id": "acme", "sessions": [session]}],
        }
    )
    transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=sim.app)
    failing = BrokenChat(transport, broken) if broken else None
    transport = failing or transport
    async with (
        Store(db_url) as store,
        httpx.AsyncClient(transport=transport, base_url=session["base_url"]) as client,
    ):
        await store.upgrade()
        (ref,) = list(await sync(store, settings))
        async with Pipeline(store) as pipeline:
            provider = provider_for(ref, client, settings.poll)
            poller = Poller(provider, pipeline, store, settings.poll)
            yield Rig(sim=sim, store=store, poller=poller, broken=failing)


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    """A WEBJS session in the WAHA simulator, polled into a fresh store."""
    sim = WahaSim(api_key=KEY)
    sim.add_session("default", engine="WEBJS")
    session = {"name": "default", "provider": "waha", "base_url": "http://waha", "api_key": KEY}
    async with polled(db_url, sim, session) as r:
        yield r


async def test_the_session_engine_is_recorded_from_the_provider(rig: Rig) -> None:
    """A session configured without `engine` gets `sessions.engine` from WAHA's session state,
    through ingest, on the first cycle."""
    async with rig.store.read() as conn:
        before = (await conn.execute(text("SELECT engine FROM sessions"))).scalar()
    assert before is None
    await rig.poller.cycle()
    async with rig.store.read() as conn:
        after = (await conn.execute(text("SELECT engine FROM sessions"))).scalar()
    assert after == "WEBJS"


async def test_a_chat_whose_head_has_no_last_message_is_still_read(rig: Rig) -> None:
    """WEBJS lists a chat with `lastMessage: null` when WhatsApp Web has not loaded it: the
    chat's own `timestamp` says it moved, and its new message is read (it was skipped)."""
    now = int(time.time())
    rig.sim.add_incoming("default", PHONE, text="Oi", ts=now - 60)
    await rig.poller.cycle()
    rig.sim.heads_unloaded.add(f"{PHONE}@c.us")
    rig.sim.add_incoming("default", PHONE, text="Ainda está aí?", ts=now - 5)
    stats = await rig.poller.cycle()
    assert stats.error is None
    async with rig.store.read() as conn:
        sql = text("SELECT count(*) FROM messages WHERE body = 'Ainda está aí?'")
        assert (await conn.execute(sql)).scalar_one() == 1


async def test_a_chat_the_provider_cannot_read_holds_back_no_other(db_url: str) -> None:
    """WEBJS answering 500 to two chats' windows, every time, a readable chat between them
    and the second far below the first (more than the overlap window): the readable chats
    are read all the same, the cycle reports the first one's error, and the next cycle
    asks for both again (the session cursor stays where it was: a failed chat with no cursor
    of its own is read from it)."""
    sim = WahaSim(api_key=KEY)
    sim.add_session("default", engine="WEBJS")
    now = int(time.time())
    other = "5531977776666"
    sim.add_incoming("default", PHONE, text="quebrada", ts=now - 60)
    sim.add_incoming("default", "5531900000001", text="legível", ts=now - 90)
    sim.add_incoming("default", other, text="quebrada também", ts=now - 400)
    sim.add_incoming("default", "5531900000002", text="antiga", ts=now - 500)
    session = {"name": "default", "provider": "waha", "base_url": "http://waha", "api_key": KEY,
               "engine": "WEBJS"}  # fmt: skip
    async with polled(db_url, sim, session, broken=[PHONE, other]) as r:
        stats = await r.poller.cycle()
        assert stats.error is not None and PHONE in stats.error
        async with r.store.read() as conn:
            bodies = {b for (b,) in await conn.execute(text("SELECT body FROM messages"))}
        assert {"legível", "antiga"} <= bodies and not {"quebrada", "quebrada também"} & bodies
        assert r.broken is not None
        before = dict(r.broken.failed)
        await r.poller.cycle()
        assert all(r.broken.failed[p] > before[p] for p in (PHONE, other))  # asked again


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


def http_for(client: httpx.AsyncClient, header: str, key: str) -> Http:
    """A provider's Http over the simulator, no retries."""
    return Http(client, "http://sim", headers={header: key}, retry=RetryPolicy(attempts=1))


async def read_all(provider: Any, chat: str, page_size: int, **options: Any) -> list[str]:
    """Every message id `window_pages` yields for `chat`, in order of arrival."""
    ids: list[str] = []
    async for page in window_pages(
        provider, chat, since=0, until=None, page_size=page_size, **options
    ):
        ids += page.ids
    return ids


async def test_a_short_webjs_page_is_not_the_end() -> None:
    """WEBJS takes `limit` rows from its store, then drops notification rows: a page comes
    back short while older messages remain ("increase offset always by limit, even if you
    get less messages", waha.md 3). Paging goes on to an empty page; other engines stop at a
    short one."""
    sim = WahaSim(api_key=KEY)
    now = int(time.time())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as client:
        for engine in ("WEBJS", "GOWS"):
            sim.add_session(engine, engine=engine)
            wanted = {
                sim.add_incoming(engine, PHONE, text=f"m{i}", ts=now - 100 + i).rsplit("_", 1)[-1]
                for i in range(25)
            }
            sim.add_notification(engine, PHONE, ts=now - 80)  # on the oldest page's edge
            sim.add_notification(engine, PHONE, ts=now - 78)  # in the second page (newest first)
            provider = WahaProvider(
                http_for(client, "X-Api-Key", KEY), session=engine, session_id=1, engine=engine
            )
            ids = await read_all(provider, f"{PHONE}@c.us", page_size=10)
            assert set(ids) == wanted, engine


@pytest.mark.parametrize("seed", range(6))
async def test_rows_of_one_second_across_a_page_boundary_are_all_read(seed: int) -> None:
    """Evolution orders findMessages by second only: rows of the second a page ends on can
    swap into the next page and one of them is never returned (evolution.md 5.2). Fewer rows
    than `total` after the walk: the boundary seconds are read again on their own."""
    now = 1_763_000_000
    sim = EvolutionSim(api_key="evo-key", seed=seed, clock=lambda: float(now))
    sim.add_instance("main")
    chat = "5511987650001"
    wanted = {
        sim.add_incoming("main", chat, text=f"m{i}", ts=now - 600 + i // 3) for i in range(82)
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as client:
        provider = EvolutionProvider(
            http_for(client, "apikey", "evo-key"), session="main", session_id=1
        )
        jid = f"{chat}@s.whatsapp.net"
        ids = await read_all(provider, jid, page_size=50, reread_ties=True)
    assert set(ids) == wanted


async def test_a_group_sender_known_by_lid_gets_its_phone() -> None:
    """A WEBJS group message whose author is given only as `@lid` (NOWEB and GOWS add the
    phone as participantAlt/SenderAlt) carries the author's phone once the lids API knows it,
    as a LID-only direct chat does (waha.md 8)."""
    sim = WahaSim(api_key=KEY)
    sim.add_session("default", engine="WEBJS")
    lid = "123456789012345@lid"
    sim.add_contact("default", PHONE, lid=lid)
    group = "120363025555555555@g.us"
    sim.add_group("default", group, subject="Vendas", participants=[lid])
    sim.add_incoming("default", group, text="Bom dia", sender=lid, ts=int(time.time()) - 5)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as client:
        provider = WahaProvider(
            http_for(client, "X-Api-Key", KEY), session="default", session_id=1, engine="WEBJS"
        )
        page = await provider.messages(group, since=0, until=None, limit=50, page=1)
    (message,) = page.events
    assert isinstance(message, Message) and message.sender is not None
    assert (message.sender.lid, message.sender.phone) == (lid, PHONE)
    assert message.chat.jid == group


@pytest.fixture
async def evo_rig(db_url: str) -> AsyncIterator[Rig]:
    """An Evolution instance in its simulator, polled into a fresh store."""
    sim = EvolutionSim(api_key="evo-key")
    sim.add_instance("vendas")
    session = {
        "name": "vendas",
        "provider": "evolution",
        "base_url": "http://evo",
        "api_key": "evo-key",
    }
    async with polled(db_url, sim, session) as r:
        yield r


@pytest.mark.parametrize(("version", "chats"), [("2.2.3", 60), ("2.3.0", 30), ("2.3.7", 60)])
async def test_older_evolution_chat_lists_lose_nothing_and_loop_nowhere(
    db_url: str, version: str, chats: int
) -> None:
    """2.2.x lists every chat whatever `take`/`skip` say: a cycle asks for the list twice,
    not once a page up to `MAX_PAGES`; 2.3.0's items name no `remoteJid` (its quoted alias
    read back lower-cased): the chat is its last message's. Every chat's message is stored."""
    sim = EvolutionSim(api_key="evo-key", version=version)
    sim.add_instance("vendas")
    now = int(time.time())
    for i in range(chats):
        sim.add_incoming("vendas", f"55319888{i:05d}", text=f"oi {i}", ts=now - 100 + i)
    session = {"name": "vendas", "provider": "evolution", "base_url": "http://evo",
               "api_key": "evo-key"}  # fmt: skip
    async with polled(db_url, sim, session) as r:
        stats = await r.poller.cycle()
        assert stats.error is None
        assert sim.requests["chat.findChats"] <= 2
        async with r.store.read() as conn:
            sql = text("SELECT count(*) FROM messages WHERE body LIKE 'oi %'")
            assert (await conn.execute(sql)).scalar_one() == chats


async def stored_row(store: Store, pmid: str) -> Any:
    """body, edited and revoked of one stored message."""
    async with store.read() as conn:
        sql = text("SELECT body, edited, revoked FROM messages WHERE provider_message_id = :m")
        return (await conn.execute(sql, {"m": pmid})).one()


async def count_events(store: Store, type_: str) -> int:
    """Event-log rows of one type."""
    async with store.read() as conn:
        sql = text("SELECT count(*) FROM events WHERE type = :t")
        return int((await conn.execute(sql, {"t": type_})).scalar_one())


async def test_an_edit_whose_webhook_was_lost_is_found_by_polling(evo_rig: Rig) -> None:
    """Evolution keeps an edit by rewriting the stored row (its text, its time, an EDITED
    update): the poll that sees the row again applies the edit, once."""
    sim = evo_rig.sim
    now = int(time.time())
    first = sim.add_incoming("vendas", PHONE, text="Quero 2 pizzas", ts=now - 60)
    sim.add_incoming("vendas", PHONE, text="Pode ser?", ts=now - 50)
    await evo_rig.poller.cycle()
    sim.edit_message("vendas", first, text="Quero 3 pizzas", ts=now - 5)
    await evo_rig.poller.cycle()
    await evo_rig.poller.cycle()
    row = await stored_row(evo_rig.store, first)
    assert (row.body, bool(row.edited)) == ("Quero 3 pizzas", True)
    assert await count_events(evo_rig.store, "chat:message-edited") == 1


async def test_a_kept_api_delete_is_found_by_polling(db_url: str) -> None:
    """An API delete that Evolution keeps (`key.deleted`) reads as the message and its
    revoke; reading it again announces nothing more."""
    sim = EvolutionSim(api_key="evo-key")
    sim.add_instance("vendas")
    now = int(time.time())
    gone = sim.add_incoming("vendas", PHONE, text="Número errado", ts=now - 30)
    sim.delete_message("vendas", gone)
    async with (
        Store(db_url) as store,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as client,
    ):
        await store.upgrade()
        session = {"name": "vendas", "provider": "evolution", "base_url": "http://sim"}
        tenants = [{"id": "acme", "sessions": [session]}]
        (ref,) = list(await sync(store, parse({"database": {"url": db_url}, "tenants": tenants})))
        provider = EvolutionProvider(
            http_for(client, "apikey", "evo-key"), session="vendas", session_id=ref.id
        )
        page = await provider.messages(
            f"{PHONE}@s.whatsapp.net", since=0, until=None, limit=50, page=1
        )
        assert [type(e).__name__ for e in page.events] == ["Message", "Revoke"]
        async with Pipeline(store) as pipeline:
            await pipeline.ingest(page.events, source="poll")
            await pipeline.ingest(page.events, source="poll")
        row = await stored_row(store, gone)
        assert bool(row.revoked) and row.body == "Número errado"
        assert await count_events(store, "chat:message-revoked") == 1


async def test_a_failed_cycle_is_a_warning_an_idle_one_info(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A cycle the provider fails on every attempt is one WARNING (`event` poll.failed); the
    next, answered, cycle is INFO (`event` poll.cycle), even when idle lines are off."""
    caplog.set_level(logging.INFO, logger="wasync.poller")
    rig.sim.faults.push(*["500"] * 10)
    failed = await rig.poller.cycle()
    rig.sim.faults.queue.clear()
    rig.sim.add_incoming("default", PHONE, text="oi")
    ok = await rig.poller.cycle()
    assert failed.error and not ok.error
    lines = [r for r in caplog.records if r.name == "wasync.poller" and r.msg.startswith("poll ")]
    assert [(r.levelno, getattr(r, "event", None)) for r in lines] == [
        (logging.WARNING, "poll.failed"),
        (logging.INFO, "poll.cycle"),
    ]
