"""`wasync run` end to end over loopback, polling only (no webhook): a message sent through
REST on WAHA WEBJS, NOWEB, GOWS and Evolution; the simulators move its ack to DELIVERED, then
READ; the stored ack follows, and `/ws` carries one `chat:message-ack` frame per step. Waits
are on conditions with generous timeouts (the bound itself, `ack_interval_s` and one cycle,
is shown with a clock we move in `tests/test_recheck.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect

from wasync import daemon
from wasync.auth import issue_token
from wasync.config import parse
from wasync.sim import EvolutionSim, WahaSim, serve

WAHA_KEY, EVO_KEY = "waha-sim-key", "evolution-sim-key"
SECRET = "e2e-acks-jwt-secret-0123456789abcdef"
PHONE = "5531988887777"
SESSIONS = {"webjs": "WEBJS", "noweb": "NOWEB", "gows": "GOWS"}


@dataclass
class World:
    """The simulators on loopback, the daemon, its base URL and every frame `/ws` sent."""

    waha: WahaSim
    evo: EvolutionSim
    base_url: str
    d: daemon.Daemon
    frames: list[dict[str, Any]] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        """An ADMIN's bearer token."""
        tok = issue_token(SECRET, tenant_id="acme", user_id="admin", role="ADMIN", ttl_s=600)
        return {"Authorization": f"Bearer {tok}"}

    async def scalar(self, sql: str, **params: Any) -> Any:
        """One value from the daemon's database."""
        async with self.d.store.read() as conn:
            return (await conn.execute(text(sql), params)).scalar()


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 60) -> Any:
    """Wait for `check()` to return something truthy (and return it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    """Three WAHA sessions (one per engine) and an Evolution instance, each with a customer
    chat, polled by a running daemon (ack check every second) with `/ws` frames recorded."""
    waha, evo = WahaSim(api_key=WAHA_KEY), EvolutionSim(api_key=EVO_KEY)
    now = int(time.time())
    for name, engine in SESSIONS.items():
        waha.add_session(name, engine=engine)
        waha.add_contact(name, PHONE, push_name="Ana")
        waha.add_incoming(name, PHONE, text="Oi, tem horário amanhã?", ts=now - 120)
    evo.add_instance("evo")
    evo.add_contact("evo", PHONE, push_name="Ana")
    evo.add_incoming("evo", PHONE, text="Oi, tem horário amanhã?", ts=now - 120)
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        sessions = [
            {"name": n, "provider": "waha", "base_url": waha_url, "api_key": WAHA_KEY}
            for n in SESSIONS
        ] + [{"name": "evo", "provider": "evolution", "base_url": evo_url, "api_key": EVO_KEY}]
        settings = parse(
            {
                "database": {"url": db_url},
                "http": {"port": 0},
                "auth": {"jwt_secret": SECRET},
                "poll": {
                    "interval_s": 0.2,
                    "jitter_s": 0,
                    "ack_interval_s": 1,
                    "log_idle_cycles": False,
                },
                "send": {"rate_per_minute": 600, "burst": 10, "poll_interval_s": 0.1},
                "tenants": [{"id": "acme", "admins": ["admin"], "sessions": sessions}],
            }
        )
        ready: asyncio.Future[daemon.Daemon] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(settings, stop=stop, on_ready=ready.set_result))
        d = await asyncio.wait_for(ready, 30)
        w = World(waha, evo, d.base_url, d)
        listener = asyncio.create_task(_listen(w))
        try:
            yield w
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            stop.set()
            await asyncio.wait_for(task, 15)


async def _listen(w: World) -> None:
    """Record every `/ws` frame (a tenant ADMIN sees the whole tenant)."""
    url = w.base_url.replace("http://", "ws://") + "/ws"
    async with connect(url, additional_headers=w.headers, open_timeout=5) as ws:
        async for raw in ws:
            w.frames.append(json.loads(raw))


async def send(w: World, session: str, body: str) -> tuple[int, str]:
    """POST /api/messages and wait until it is SENT: (message row id, provider id)."""
    async with httpx.AsyncClient(base_url=w.base_url, headers=w.headers) as client:
        queued = await client.post(
            "/api/messages", json={"to": PHONE, "session": session, "text": body}
        )
        assert queued.status_code == 201, queued.text
        row = queued.json()["id"]

        async def sent() -> Any:
            got = (await client.get(f"/api/outbox/{row}")).json()
            return got if got["status"] == "SENT" and got["providerMessageId"] else None

        done = await until(sent, f"{session} send")
    return int(done["messageId"]), str(done["providerMessageId"]).split("_")[-1]


def set_ack(w: World, session: str, pmid: str, ack: int) -> None:
    """The phone reports a delivery step."""
    if session == "evo":
        w.evo.set_status("evo", pmid, ack)
        return
    (full,) = [m["id"] for m in w.waha.all_messages(session) if pmid in m["id"]]
    w.waha.set_ack(session, full, ack)


async def test_sent_messages_reach_read_by_polling_alone(world: World) -> None:
    """Sent on every engine; DELIVERED then READ at the phone: the stored ack is READ, and
    `/ws` carried exactly one chat:message-ack per step for each message."""
    sent = {s: await send(world, s, f"Temos sim, às 10h ({s})") for s in (*SESSIONS, "evo")}
    for session in sent:  # the customer answers: our message is no longer the chat's head
        later = int(time.time())
        if session == "evo":
            world.evo.add_incoming("evo", PHONE, text="Perfeito", ts=later)
        else:
            world.waha.add_incoming(session, PHONE, text="Perfeito", ts=later)
    for ack in (2, 3):
        for session, (_row, pmid) in sent.items():
            set_ack(world, session, pmid, ack)
        for session, (row, _pmid) in sent.items():

            async def reached(row: int = row, ack: int = ack) -> bool:
                return await world.scalar("SELECT ack FROM messages WHERE id = :i", i=row) == ack

            await until(reached, f"{session} ack {ack}")
    runs = [p.recheck.runs for p in world.d.pollers]

    async def checked_twice_more() -> bool:  # ... and find nothing new to announce
        return all(p.recheck.runs >= r + 2 for p, r in zip(world.d.pollers, runs, strict=True))

    await until(checked_twice_more, "two more ack checks")
    for session, (row, _pmid) in sent.items():
        names = [
            f["data"]["ackName"]
            for f in world.frames
            if f["type"] == "chat:message-ack" and f["messageId"] == row
        ]
        assert names.count("DEVICE") == 1 and names.count("READ") == 1, (session, names)
        assert len(names) == len(set(names)), (session, names)


async def test_edits_revokes_and_reactions_on_the_phone_by_polling_alone(world: World) -> None:
    """Made on the phone with no webhook: edits (WEBJS in place, NOWEB and Evolution by
    rewriting the row), a WEBJS revoke (type `revoked`), reactions (NOWEB on the target row,
    Evolution as a row of its own) reach the store and `/ws` once each. (NOWEB revokes, which
    need a message listed for a minute before it can be missed, are shown with a clock we
    move in tests/test_recheck.py; GOWS lists none of these, waha#1635.)"""
    cases = {"webjs": ("edit", "revoke"), "noweb": ("edit", "react"), "evo": ("edit", "react")}
    sent = {s: await send(world, s, f"Chegamos às 15h ({s})") for s in cases}
    for session, actions in cases.items():
        _row, pmid = sent[session]
        if session == "evo":
            world.evo.edit_message("evo", pmid, text="Chegamos às 16h")
            world.evo.react("evo", pmid, "👍")
            continue
        (full,) = [m["id"] for m in world.waha.all_messages(session) if pmid in m["id"]]
        world.waha.edit_message(session, full, text="Chegamos às 16h")
        if "revoke" in actions:
            world.waha.revoke_message(session, full)
        else:
            world.waha.react(session, full, "👍")
    for session, (row, _pmid) in sent.items():
        revoke = "revoke" in cases[session]

        async def repaired(row: int = row, revoke: bool = revoke) -> bool:
            async with world.d.store.read() as conn:
                sql = text("SELECT body, revoked FROM messages WHERE id = :i")
                body, revoked = (await conn.execute(sql, {"i": row})).one()
            return bool(revoked) if revoke else body == "Chegamos às 16h"

        await until(repaired, f"{session} repaired")

    async def reacted() -> bool:
        return await world.scalar("SELECT count(*) FROM messages WHERE type = 'reaction'") == 2

    await until(reacted, "two reactions")
    runs = [p.recheck.runs for p in world.d.pollers]

    async def checked_twice_more() -> bool:
        return all(p.recheck.runs >= r + 2 for p, r in zip(world.d.pollers, runs, strict=True))

    await until(checked_twice_more, "two more ack checks")
    for session, (row, _pmid) in sent.items():
        types = [f["type"] for f in world.frames if f.get("messageId") == row]
        if "revoke" in cases[session]:
            assert types.count("chat:message-revoked") == 1, (session, types)
        else:
            assert types.count("chat:message-edited") == 1, (session, types)
    reactions = [
        f
        for f in world.frames
        if f["type"] == "chat:new-message" and f["message"]["type"] == "reaction"
    ]
    assert len(reactions) == 2
