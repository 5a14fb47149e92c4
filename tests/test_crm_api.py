"""REST for the attendance page over real loopback: leads (read, edit through the one writer,
`lead:updated` live), agents, quick replies, lead statuses, `/api/me`, and chat lists with
their session, lead and last message, searchable by name or phone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from tests.factories import T0, msg
from tests.test_realtime import Node, auth, log_rows, node, open_ws, phone_jid, read_until, token
from wasync.events import Reaction
from wasync.phones import address

ADMIN = auth(token("acme", "u1"))
ANA = auth(token("acme", "ana", "USER"))


@pytest.fixture
async def n(db_url: str) -> AsyncIterator[Node]:
    """A served node with two acme chats (phones 0 and 1; chat of phone 0 assigned to ana)."""
    async with node(db_url) as served:
        s = served.sid()
        for i in range(2):
            await served.pipeline.ingest([msg(s, f"A{i}", phone_jid(i), at=i)], source="t")
        resp = await served.http.post(
            f"/api/chats/{await chat_of(served, 0)}/assign", json={"userId": "ana"}, headers=ADMIN
        )
        assert resp.status_code == 200
        yield served


async def chat_of(n: Node, i: int) -> int:
    """The id of phone `i`'s chat."""
    return int(await n.scalar("SELECT id FROM chats WHERE jid = :j", j=phone_jid(i)))


async def lead_of(n: Node, i: int) -> int:
    """The lead id of phone `i`'s chat."""
    return int(await n.scalar("SELECT lead_id FROM chats WHERE jid = :j", j=phone_jid(i)))


async def test_a_lead_is_read_and_edited_within_the_predicate(n: Node) -> None:
    """ADMIN and the assignee read and edit the lead; anyone else gets 404; an edit logs
    `lead:updated` on its chat with new and previous values, and only a real change does."""
    lead, other = await lead_of(n, 0), await lead_of(n, 1)
    got = await n.http.get(f"/api/leads/{lead}", headers=ANA)
    assert got.status_code == 200
    assert (got.json()["firstName"], got.json()["status"], got.json()["score"]) == (
        "Lead",
        "NEW",
        50,
    )
    assert (await n.http.get(f"/api/leads/{other}", headers=ANA)).status_code == 404
    bia = auth(token("acme", "bia", "USER"))
    assert (
        await n.http.patch(f"/api/leads/{lead}", json={"status": "LOST"}, headers=bia)
    ).status_code == 404
    foreign = auth(token("globex", "u3"))
    assert (await n.http.get(f"/api/leads/{lead}", headers=foreign)).status_code == 404

    body = {"firstName": " Maria ", "lastName": "Souza", "status": "QUALIFIED"}
    changed = await n.http.patch(f"/api/leads/{lead}", json=body, headers=ANA)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["firstName"], changed.json()["status"]) == ("Maria", "QUALIFIED")
    again = await n.http.patch(f"/api/leads/{lead}", json=body, headers=ADMIN)
    assert again.status_code == 200
    rows = [r for r in await log_rows(n) if r.type == "lead:updated"]
    assert len(rows) == 1
    assert rows[0].chat_id == await chat_of(n, 0)
    assert rows[0].data == {
        "leadId": lead,
        "firstName": "Maria",
        "previousFirstName": "Lead",
        "lastName": "Souza",
        "previousLastName": phone_jid(0).split("@")[0][-4:],
        "status": "QUALIFIED",
        "previousStatus": "NEW",
    }
    stored = await n.scalar("SELECT status FROM leads WHERE id = :i", i=lead)
    assert stored == "QUALIFIED"


async def test_lead_edits_are_checked(n: Node) -> None:
    """Unknown fields, empty bodies, non-strings, empty names and statuses outside
    `[crm] lead_statuses` are 422 with one line; nothing changes."""
    lead = await lead_of(n, 0)
    for body in (
        {},
        {"email": "x@y"},
        {"status": "WON"},
        {"firstName": ""},
        {"firstName": 5},
        {"lastName": "x" * 101},
    ):
        resp = await n.http.patch(f"/api/leads/{lead}", json=body, headers=ADMIN)
        assert resp.status_code == 422, body
        assert set(resp.json()) == {"error"}
    assert (
        await n.http.patch(f"/api/leads/{lead}", content=b"[1]", headers=ADMIN)
    ).status_code == 400
    assert [r for r in await log_rows(n) if r.type == "lead:updated"] == []


async def test_lead_updates_reach_websocket_clients_of_the_chat(n: Node) -> None:
    """The assignee's `/ws` receives the `lead:updated` frame of its chat."""
    lead = await lead_of(n, 0)
    async with await open_ws(n, token("acme", "ana", "USER")) as ws:
        resp = await n.http.patch(f"/api/leads/{lead}", json={"status": "CONTACTED"}, headers=ADMIN)
        assert resp.status_code == 200
        frames = await read_until(ws, lambda f: f["type"] == "lead:updated")
    assert frames[-1]["chatId"] == await chat_of(n, 0)
    assert frames[-1]["data"]["status"] == "CONTACTED"


async def test_agents_quick_replies_statuses_and_me(n: Node) -> None:
    """Agents: configured admins, then current assignees (ADMIN only); quick replies and lead
    statuses from `[crm]`, Portuguese by default; `/api/me` echoes the token."""
    agents = await n.http.get("/api/agents", headers=ADMIN)
    assert agents.json()["agents"] == [
        {"id": "u1", "admin": True},
        {"id": "u2", "admin": True},
        {"id": "ana", "admin": False},
    ]
    assert (await n.http.get("/api/agents", headers=ANA)).status_code == 403
    replies = (await n.http.get("/api/quick-replies", headers=ANA)).json()["quickReplies"]
    assert replies and replies[0].startswith("Olá!")
    statuses = (await n.http.get("/api/lead-statuses", headers=ANA)).json()["leadStatuses"]
    assert statuses[0] == "NEW"
    me = (await n.http.get("/api/me", headers=ANA)).json()
    assert me == {"tenantId": "acme", "userId": "ana", "role": "USER"}
    for path in (
        "/api/me",
        "/api/agents",
        "/api/quick-replies",
        "/api/lead-statuses",
        "/api/leads/1",
    ):
        assert (await n.http.get(path)).status_code == 401


async def test_chat_lists_carry_session_lead_and_last_message(n: Node) -> None:
    """Each chat comes with its session, its lead and its last message (a reaction is not a
    preview), in the list and alone."""
    sid, chat = n.sid(), address(phone_jid(1))
    assert chat is not None
    later = T0 + timedelta(seconds=30)
    await n.pipeline.ingest([msg(sid, "B1", phone_jid(1), body="segunda", at=20)], source="t")
    reaction = Reaction(
        session_id=sid, provider_message_id="R1", target_message_id="B1", emoji="👍",
        chat=chat, from_me=True, timestamp=later,
    )  # fmt: skip
    await n.pipeline.ingest([reaction], source="t")
    listed = (await n.http.get("/api/chats", headers=ADMIN)).json()["chats"]
    one = await chat_of(n, 1)
    first = next(c for c in listed if c["id"] == one)
    assert first["session"] == {"id": sid, "name": "default", "provider": "waha"}
    assert first["lead"]["firstName"] == "Lead" and first["lead"]["status"] == "NEW"
    assert (first["lastMessage"]["body"], first["lastMessage"]["type"]) == ("segunda", "text")
    alone = (await n.http.get(f"/api/chats/{first['id']}", headers=ADMIN)).json()
    assert alone == first


async def test_chats_are_searched_by_name_lead_name_and_phone(n: Node) -> None:
    """`?q=` finds a chat by its WhatsApp name, its lead's name (case-insensitive) or digits
    of its phone, within the predicate; `%` is a character, not a wildcard."""
    lead = await lead_of(n, 1)
    await n.http.patch(f"/api/leads/{lead}", json={"firstName": "Joana"}, headers=ADMIN)
    phone = phone_jid(1).split("@")[0]

    async def found(q: str, headers: dict[str, str] = ADMIN) -> set[int]:
        resp = await n.http.get("/api/chats", params={"q": q}, headers=headers)
        assert resp.status_code == 200, resp.text
        return {c["id"] for c in resp.json()["chats"]}

    one = await chat_of(n, 1)
    assert await found("joana") == {one}
    assert await found(phone[-6:]) == {one}
    assert await found("cliente") == {await chat_of(n, 0), one}  # both push names
    assert await found("%") == set()
    assert await found("joana", ANA) == set()  # not hers
