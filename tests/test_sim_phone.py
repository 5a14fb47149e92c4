"""The simulators keep what happens on a phone the way each engine keeps it (sources in
`wasync/sim/waha/phone.py` and `wasync/sim/evolution/simulator.py`), and page the way each
engine pages: what the polling tests rely on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from wasync.sim import EvolutionSim, WahaSim

KEY = "phone-key"
NOW = 1_763_326_182
PHONE = "5531988887777"


@pytest.fixture
async def waha() -> AsyncIterator[tuple[WahaSim, httpx.AsyncClient]]:
    """One session per engine."""
    sim = WahaSim(api_key=KEY, clock=lambda: float(NOW))
    for engine in ("WEBJS", "NOWEB", "GOWS"):
        sim.add_session(engine.lower(), engine=engine)
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://waha", headers={"X-Api-Key": KEY}
    ) as client:
        yield sim, client


async def listed(client: httpx.AsyncClient, session: str, **params: Any) -> list[Any]:
    """The chat's messages as WAHA lists them, oldest first (WEBJS: newest first)."""
    query = {"limit": 100, "sortOrder": "asc", "downloadMedia": "false", **params}
    resp = await client.get(f"/api/{session}/chats/{PHONE}@c.us/messages", params=query)
    assert resp.status_code == 200, resp.text
    return list(resp.json())


async def test_an_edit_per_engine(waha: tuple[WahaSim, httpx.AsyncClient]) -> None:
    """WEBJS rewrites the text and marks the edit, time kept; NOWEB rewrites the row as
    `editedMessage` with the edit's time; GOWS lists the original unchanged."""
    sim, client = waha
    for session in ("webjs", "noweb", "gows"):
        mid = sim.add_outgoing(session, PHONE, text="às 15h", ts=NOW - 60)
        payload = sim.edit_message(session, mid, text="às 16h", ts=NOW)
        assert payload["editedMessageId"] == mid.split("_")[2] and payload["body"] == "às 16h"
        (row,) = await listed(client, session)
        if session == "webjs":
            assert (row["body"], row["timestamp"]) == ("às 16h", NOW - 60)
            assert row["_data"]["latestEditSenderTimestampMs"] == NOW * 1000
        elif session == "noweb":
            assert (row["body"], row["timestamp"]) == ("às 16h", NOW)
            assert row["_data"]["message"] == {
                "editedMessage": {"message": {"conversation": "às 16h"}}
            }
        else:
            assert (row["body"], row["timestamp"]) == ("às 15h", NOW - 60)


async def test_a_revoke_per_engine(waha: tuple[WahaSim, httpx.AsyncClient]) -> None:
    """WEBJS keeps the message as type `revoked`; NOWEB deletes it (404 by id too); GOWS lists
    it unchanged."""
    sim, client = waha
    for session in ("webjs", "noweb", "gows"):
        mid = sim.add_incoming(session, PHONE, text="errado", ts=NOW - 60)
        payload = sim.revoke_message(session, mid, ts=NOW)
        assert payload["revokedMessageId"] == mid.split("_")[2]
        rows = await listed(client, session)
        single = await client.get(f"/api/{session}/chats/all/messages/{mid.split('_')[2]}")
        if session == "webjs":
            assert [(r["id"], r["_data"]["type"], r["body"]) for r in rows] == [
                (mid, "revoked", "")
            ]
        elif session == "noweb":
            assert rows == [] and single.status_code == 404
        else:
            assert [r["body"] for r in rows] == ["errado"]


async def test_a_reaction_per_engine(waha: tuple[WahaSim, httpx.AsyncClient]) -> None:
    """NOWEB keeps one reaction per author on the target's `_data.reactions` (a new one from
    the same author replaces it); GOWS and WEBJS list nothing for it."""
    sim, client = waha
    for session in ("webjs", "noweb", "gows"):
        mid = sim.add_outgoing(session, PHONE, text="pedido confirmado", ts=NOW - 60)
        sim.react(session, mid, "👍", ts=NOW - 30)
        sim.react(session, mid, "❤️", ts=NOW)
        rows = await listed(client, session)
        assert len(rows) == 1
        reactions = rows[0]["_data"].get("reactions")
        if session == "noweb":
            assert [r["text"] for r in reactions] == ["❤️"]
            assert reactions[0]["key"]["fromMe"] is False
        else:
            assert reactions is None


async def test_dropped_rows_take_places_in_pages(waha: tuple[WahaSim, httpx.AsyncClient]) -> None:
    """Rows an engine drops after `limit` make a page short before the end, on every engine
    and on `chats/all`."""
    sim, client = waha
    for i in range(10):
        sim.add_incoming("gows", PHONE, text=f"m{i}", ts=NOW - 100 + 2 * i)
        sim.add_dropped("gows", PHONE, ts=NOW - 99 + 2 * i)
    first = await listed(client, "gows", limit=10)
    second = await listed(client, "gows", limit=10, offset=10)
    assert [r["body"] for r in first] == [f"m{i}" for i in range(5)]
    assert [r["body"] for r in second] == [f"m{i}" for i in range(5, 10)]
    every = await client.get(
        "/api/gows/chats/all/messages", params={"limit": 10, "sortOrder": "asc"}
    )
    assert len(every.json()) == 5


async def test_overview_head_ties() -> None:
    """`head_ties="first"`: among the messages of a chat's newest second the overview shows
    the first stored; by default the newest stored."""
    for ties, shown in (("newest", "segunda"), ("first", "primeira")):
        sim = WahaSim(api_key=KEY, clock=lambda: float(NOW), head_ties=ties)
        sim.add_session("s", engine="WEBJS")
        sim.add_incoming("s", PHONE, text="primeira", ts=NOW)
        sim.add_incoming("s", PHONE, text="segunda", ts=NOW)
        transport = httpx.ASGITransport(app=sim.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            resp = await client.get("/api/s/chats/overview", headers={"X-Api-Key": KEY})
        (chat,) = resp.json()
        assert chat["lastMessage"]["body"] == shown and chat["_chat"]["unreadCount"] == 2


async def test_evolution_status_column_moves_only_for_incoming() -> None:
    """Evolution records every status as a MessageUpdate row, but its row's `status` (what
    findChats shows) only for a message that is not ours; findChats shows the first row of a
    chat's newest second; a reaction is a row of its own."""
    sim = EvolutionSim(api_key=KEY, clock=lambda: float(NOW))
    sim.add_instance("i")
    ours = sim.add_outgoing("i", PHONE, text="nosso", ts=NOW)
    theirs = sim.add_incoming("i", PHONE, text="deles", ts=NOW)
    sim.set_status("i", ours, "READ")
    sim.set_status("i", theirs, "READ")
    assert sim.get_message("i", ours)["MessageUpdate"] == [{"status": "READ"}]
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://e", headers={"apikey": KEY}
    ) as client:
        (chat,) = (await client.post("/chat/findChats/i", json={})).json()
        assert chat["lastMessage"]["key"]["id"] == ours
        assert chat["lastMessage"]["status"] == "SERVER_ACK"
        reaction = sim.react("i", theirs, "🙏", from_me=True)
        found = (
            await client.post(
                "/chat/findMessages/i",
                json={"where": {"key": {"remoteJid": f"{PHONE}@s.whatsapp.net", "id": reaction}}},
            )
        ).json()
    (row,) = found["messages"]["records"]
    assert row["message"]["reactionMessage"]["key"]["id"] == theirs
    assert sim.instance("i").row(theirs)["status"] == "READ"
