"""Polling alone repairs what is not new, per engine, over loopback: a sent message's ack moves
to DELIVERED then READ, and an edit, a revoke and a reaction made on a phone reach the
store, each announced once (SQLite and Postgres).

The poller runs against the simulators served on loopback ports, with the time of both a
parameter: each change is followed by `ack_interval_s` + one `interval_s` of cycles, the
bound the ack check promises, so nothing here depends on the machine's speed. What an engine
does not list cannot be repaired by polling (WAHA GOWS keeps edits, revokes and reactions as
rows it drops from every page, and the original unchanged, waha#1635; WhatsApp Web keeps
reactions off listed messages): those cells are absent, and say why.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import Recorder
from tests.polled import polled
from wasync.config import PollConfig, parse
from wasync.events import AckLevel
from wasync.poller import CycleStats, Poller
from wasync.providers.http import Http
from wasync.providers.sending import Outgoing
from wasync.providers.waha import WahaProvider
from wasync.recheck import Recheck
from wasync.seen import Seen
from wasync.sim import EvolutionSim, WahaSim, serve
from wasync.sim import text as text_of
from wasync.store import Store
from wasync.stream import LATE_EMPTY_PAGES

KEY = "recheck-test-key"
PHONE = "5531988887777"
POLL = {
    "interval_s": 5,
    "ack_interval_s": 60,
    "overlap_s": 120,
    "status_interval_s": 3600,
    "log_idle_cycles": False,
}


@dataclass
class Rig:
    """One engine's simulator on loopback, polled into a fresh store with a clock we move."""

    engine: str
    sim: Any
    session: str
    store: Store
    poller: Poller
    recorder: Recorder
    poll: PollConfig
    now: list[float]

    @property
    def evolution(self) -> bool:
        """The session is an Evolution instance."""
        return self.engine.startswith("EVOLUTION")

    async def run_for(self, seconds: float) -> None:
        """Poll cycles, one every `interval_s`, for `seconds` of the rig's clock."""
        end = self.now[0] + seconds
        while self.now[0] < end:
            self.now[0] += self.poll.interval_s
            stats = await self.poller.cycle()
            assert stats.error is None, stats.error

    async def answer(self) -> None:
        """A cycle, then the customer writes after our message and another cycle: the chat's
        head is not ours (WEBJS would carry the head's own ack, edit or revoke for free)."""
        await self.run_for(self.poll.interval_s)
        self.now[0] += 1
        self.sim.add_incoming(self.session, PHONE, text="Obrigado", ts=int(self.now[0]))
        await self.run_for(self.poll.interval_s)

    async def within_bound(self) -> None:
        """The ack check's promise: `ack_interval_s` and one more cycle."""
        await self.run_for(self.poll.ack_interval_s + self.poll.interval_s)

    async def row(self, pmid: str) -> Any:
        """ack, body, edited, revoked of a stored message."""
        sql = text("SELECT ack, body, edited, revoked FROM messages WHERE provider_message_id = :p")
        async with self.store.read() as conn:
            return (await conn.execute(sql, {"p": pmid})).one_or_none()

    def events(self, type_: str, **data: Any) -> int:
        """Published event-log rows of a type whose data has these items."""
        return sum(
            1
            for e in self.recorder.events
            if e.type == type_ and data.items() <= dict(e.data).items()
        )

    async def send(self, body: str) -> str:
        """Send a text through the adapter, as the sender does; the bare provider id."""
        provider = self.poller.provider
        jid = f"{PHONE}@s.whatsapp.net" if self.evolution else f"{PHONE}@c.us"
        receipt = await provider.send(Outgoing(to_jid=jid, kind="text", text=body))
        rid = receipt.provider_message_id
        return rid.split("_")[2] if rid.startswith(("true_", "false_")) else rid

    def sim_id(self, bare: str) -> str:
        """The simulator's id of a message (WAHA's serialized form)."""
        if self.evolution:
            return bare
        found = [m["id"] for m in self.sim.all_messages(self.session) if bare in m["id"]]
        return str(found[0])

    def set_ack(self, bare: str, ack: AckLevel) -> None:
        """The phone reports a delivery step."""
        if self.evolution:
            self.sim.set_status(self.session, bare, int(ack))
        else:
            self.sim.set_ack(self.session, self.sim_id(bare), int(ack))


ENGINES = ["WEBJS", "NOWEB", "GOWS", "EVOLUTION"]


@asynccontextmanager
async def rig_for(db_url: str, engine: str) -> AsyncIterator[Rig]:
    """The engine's simulator with one customer chat, served on loopback, polled once."""
    now = [time.time()]
    clock = lambda: now[0]  # noqa: E731
    if engine.startswith("EVOLUTION"):  # `EVOLUTION@2.3.6`: that server version
        version = engine.partition("@")[2] or "2.3.7"
        sim: Any = EvolutionSim(api_key=KEY, clock=clock, version=version)
        sim.add_instance("vendas")
        session, provider = "vendas", "evolution"
    else:
        sim = WahaSim(api_key=KEY, clock=clock)
        sim.add_session("default", engine=engine)
        session, provider = "default", "waha"
    sim.add_incoming(session, PHONE, text="Oi, vocês entregam hoje?", ts=int(now[0]) - 300)
    async with serve(sim.app) as url:
        cfg = {"name": session, "provider": provider, "base_url": url, "api_key": KEY}
        settings = parse(
            {
                "database": {"url": db_url},
                "poll": POLL,
                "tenants": [{"id": "acme", "sessions": [cfg]}],
            }
        )
        recorder = Recorder()
        async with (
            httpx.AsyncClient() as client,
            polled(settings, client, clock=clock, subscribers=[recorder]) as (store, poller),
        ):
            rig = Rig(engine, sim, session, store, poller, recorder, settings.poll, now)
            await rig.run_for(rig.poll.interval_s)
            yield rig


@pytest.mark.parametrize("engine", ENGINES)
async def test_acks_move_by_polling_alone(db_url: str, engine: str) -> None:
    """We send; the phone reports DELIVERED, then READ: each is stored within ack_interval_s
    and one cycle, announced by one chat:message-ack; more cycles announce nothing more."""
    async with rig_for(db_url, engine) as rig:
        sent = await rig.send("Sim! Até as 18h.")
        await rig.answer()
        assert await rig.row(sent) is not None
        for step in (AckLevel.DEVICE, AckLevel.READ):
            rig.set_ack(sent, step)
            await rig.within_bound()
            assert (await rig.row(sent)).ack == int(step), step.name
            assert rig.events("chat:message-ack", ackName=step.name) == 1
        await rig.within_bound()
        assert rig.events("chat:message-ack", ackName="DEVICE") == 1
        assert rig.events("chat:message-ack", ackName="READ") == 1
        assert rig.poller.recheck.runs >= 2


@pytest.mark.parametrize("engine", ["WEBJS", "NOWEB", "EVOLUTION"])
async def test_an_edit_on_the_phone_is_found_by_polling(db_url: str, engine: str) -> None:
    """Our message edited on the phone: WEBJS rewrites its text in place, NOWEB rewrites the
    row with the edit's time, Evolution its row too; the edit is stored and announced once.
    (GOWS lists no edit and keeps the original, waha#1635.)"""
    async with rig_for(db_url, engine) as rig:
        sent = await rig.send("Chegamos às 15h")
        await rig.answer()
        rig.now[0] += 30
        if rig.evolution:
            rig.sim.edit_message(rig.session, sent, text="Chegamos às 16h")
        else:
            rig.sim.edit_message(rig.session, rig.sim_id(sent), text="Chegamos às 16h")
        await rig.within_bound()
        row = await rig.row(sent)
        assert (row.body, bool(row.edited)) == ("Chegamos às 16h", True)
        await rig.within_bound()
        assert rig.events("chat:message-edited") == 1


@pytest.mark.parametrize("engine", ["WEBJS", "NOWEB", "EVOLUTION@2.2.3", "EVOLUTION@2.3.6"])
async def test_a_revoke_on_the_phone_is_found_by_polling(db_url: str, engine: str) -> None:
    """Our message deleted for everyone on the phone: WEBJS lists it as type `revoked`, NOWEB's
    store deletes it (gone from a complete walk, and 404 by id), Evolution 2.2.x and
    2.3.5-2.3.6 add a `DELETED` update row; it is marked revoked and announced once. (GOWS
    lists no revoke; Evolution 2.3.0-2.3.4 leave what an edit leaves, 2.3.7 what a delivery
    leaves: `wasync doctor` warns of those.)"""
    async with rig_for(db_url, engine) as rig:
        sent = await rig.send("Enviei para o número errado")
        await rig.answer()
        rig.now[0] += 90  # past the time a message must have been listed to be missed
        rig.sim.revoke_message(rig.session, rig.sim_id(sent))
        await rig.within_bound()
        assert bool((await rig.row(sent)).revoked)
        await rig.within_bound()
        assert rig.events("chat:message-revoked") == 1


@pytest.mark.parametrize(("version", "revoked"), [("2.3.4", False), ("2.3.6", True)])
async def test_an_edit_then_a_delete_on_evolution_is_read_by_the_servers_version(
    db_url: str, version: str, revoked: bool
) -> None:
    """Our message edited, then (on 2.3.6) deleted for everyone: its rows say EDITED and
    DELETED, a delete there (an edit leaves no DELETED row). On 2.3.4 an edit alone leaves
    both rows: it is only an edit (no message the customer kept is hidden)."""
    async with rig_for(db_url, f"EVOLUTION@{version}") as rig:
        sent = await rig.send("Chegamos às 15h")
        await rig.answer()
        rig.now[0] += 30
        rig.sim.edit_message(rig.session, sent, text="Chegamos às 16h")
        await rig.within_bound()
        if version == "2.3.6":
            rig.sim.revoke_message(rig.session, sent)
        await rig.within_bound()
        row = await rig.row(sent)
        assert (row.body, bool(row.edited), bool(row.revoked)) == ("Chegamos às 16h", True, revoked)
        assert rig.events("chat:message-revoked") == int(revoked)


@pytest.mark.parametrize("engine", ["NOWEB", "EVOLUTION"])
async def test_a_reaction_on_the_phone_is_found_by_polling(db_url: str, engine: str) -> None:
    """The customer reacts to our message: NOWEB adds it to our message's `reactions`,
    Evolution stores a reaction row; it is stored once, announced once. (GOWS drops
    reactions from every page; WhatsApp Web keeps them off listed messages.)"""
    async with rig_for(db_url, engine) as rig:
        sent = await rig.send("Pedido confirmado!")
        await rig.run_for(rig.poll.interval_s)
        rig.now[0] += 10
        target = sent if rig.evolution else rig.sim_id(sent)
        rig.sim.react(rig.session, target, "👍")
        await rig.within_bound()
        sql = text("SELECT body, reply_to FROM messages WHERE type = 'reaction'")
        async with rig.store.read() as conn:
            reactions = [tuple(r) for r in await conn.execute(sql)]
        assert reactions == [("👍", sent)]
        await rig.within_bound()
        assert rig.events("chat:new-message") == 3  # the customer's, ours, the reaction


@pytest.mark.parametrize("engine", ENGINES)
async def test_idle_cycles_stay_one_request_and_the_check_is_counted_apart(
    db_url: str, engine: str
) -> None:
    """With a message of ours waiting for READ (and one in the overlap window), every idle
    cycle is one request; the ack check's requests come once per ack_interval_s, counted
    apart; once nothing waits, the check asks nothing, and a stream engine (GOWS, NOWEB) only
    its late walk: once per ack_interval_s, a few requests (`wasync.stream`)."""
    async with rig_for(db_url, engine) as rig:
        await rig.send("Aguardo sua confirmação")
        await rig.run_for(2 * rig.poll.ack_interval_s)  # first reads, confirmation, sweeps
        cycles = []
        for _ in range(int(rig.poll.ack_interval_s / rig.poll.interval_s)):
            rig.now[0] += rig.poll.interval_s
            cycles.append(await rig.poller.cycle())
        assert [c.requests for c in cycles] == [1] * len(cycles)
        checks = [c.check_requests for c in cycles if c.check_requests]
        assert len(checks) == 1 and checks[0] >= 1
        rig.set_ack(await _only_sent(rig), AckLevel.READ)
        await rig.within_bound()
        await rig.within_bound()
        cycles = []
        for _ in range(int(rig.poll.ack_interval_s / rig.poll.interval_s)):
            rig.now[0] += rig.poll.interval_s
            cycles.append(await rig.poller.cycle())
        assert [c.requests for c in cycles] == [1] * len(cycles)
        checks = [c.check_requests for c in cycles if c.check_requests]
        if engine in ("GOWS", "NOWEB"):  # the late walk: the window, then the empty pages
            assert len(checks) <= 1 and all(n <= 2 + LATE_EMPTY_PAGES for n in checks), checks
        else:
            assert checks == []


async def _only_sent(rig: Rig) -> str:
    """The bare id of the one message we sent."""
    async with rig.store.read() as conn:
        sql = text("SELECT provider_message_id FROM messages WHERE from_me")
        (pmid,) = (await conn.execute(sql)).scalars().all()
    return str(pmid)


async def test_an_old_unread_chat_is_asked_less_often(db_url: str) -> None:
    """A chat whose newest waiting message is 3 h old is asked again only after a tenth of
    that age (18 min); a chat with a fresh one, every ack_interval_s (chat-list providers)."""
    async with rig_for(db_url, "WEBJS") as rig:
        old, fresh = "5511977770001", "5511977770002"
        rig.sim.add_message(
            rig.session, old, text_of("Bom dia"), from_me=True, ts=int(rig.now[0]) - 3 * 3600, ack=2
        )
        rig.sim.add_message(
            rig.session, fresh, text_of("Boa tarde"), from_me=True, ts=int(rig.now[0]) - 30, ack=2
        )
        await rig.poller.fetch_window(f"{old}@c.us", 0, CycleStats())  # older than any cursor
        await rig.run_for(rig.poll.interval_s)
        assert len(await rig.poller.recheck.waiting()) == 2
        before = rig.sim.requests["chats.messages"]
        for _ in range(8):  # 16 minutes of checks
            rig.now[0] += rig.poll.ack_interval_s
            await rig.poller.recheck.run()
        # fresh: every check; old: the first only (next after a tenth of its age, 18 min)
        assert rig.sim.requests["chats.messages"] - before == 8 + 1


async def test_the_ack_checks_of_sessions_started_together_are_spread(tmp_path: Any):
    """Sessions whose pollers start together (every one, at start-up) have their first ack
    check somewhere within one `ack_interval_s`, spread evenly: not a thousand checks (each a
    read of the messages table) in the same cycle, then again every interval for ever."""
    poll = parse({"poll": POLL}).poll
    now = 1_000_000.0
    async with (
        Store(f"sqlite+aiosqlite:///{tmp_path / 'spread.db'}") as store,
        httpx.AsyncClient() as client,
    ):
        http = Http(client, "http://127.0.0.1:9", headers={})
        firsts = [
            Recheck(
                WahaProvider(http, session=f"s{sid}", session_id=sid),
                store,
                poll,
                ingest=_no_ingest,
                seen=Seen(),
                chat_ids=list,
                session_cursor=lambda: now,
                clock=lambda: now,
            ).next_at
            - now
            for sid in range(1, 1001)
        ]
    assert all(0 < first <= poll.ack_interval_s for first in firsts)
    cycles = Counter(int(first // poll.interval_s) for first in firsts)
    per_cycle = 1000 * poll.interval_s / poll.ack_interval_s  # 83 when evenly spread
    assert len(cycles) == poll.ack_interval_s / poll.interval_s
    assert max(cycles.values()) <= 1.2 * per_cycle, cycles


async def _no_ingest(_events: Any) -> None:
    raise AssertionError("nothing is ingested here")
