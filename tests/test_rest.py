"""REST under `/api/` over real loopback: JWT, the scoping predicate (404 outside it), filters
and cursor pages, and the events that assignment, status and read marks log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.factories import msg
from tests.test_realtime import Node, auth, log_rows, node, phone_jid, token

ROUTES = [
    ("GET", "/api/chats"),
    ("GET", "/api/chats/1"),
    ("GET", "/api/chats/1/messages"),
    ("POST", "/api/chats/1/assign"),
    ("POST", "/api/chats/1/status"),
    ("POST", "/api/chats/1/read"),
    ("GET", "/api/notifications"),
    ("POST", "/api/notifications/1/read"),
]
# Made at import: valid for a day, however long the suite takes to reach these tests (a
# 10-minute token expired on a loaded machine).
ADMIN = auth(token("acme", "u1", ttl_s=86_400))


@pytest.fixture
async def n(db_url: str) -> AsyncIterator[Node]:
    """A served node with seven acme chats (phones 0..6, one message each, phone i at i
    minutes) and one globex chat."""
    async with node(db_url) as served:
        s = served.sid()
        for i in range(7):
            await served.pipeline.ingest([msg(s, f"A{i}", phone_jid(i), at=60 * i)], source="t")
        g = served.sid("globex")
        await served.pipeline.ingest([msg(g, "G0", phone_jid(100))], source="t")
        yield served


async def chat_id(n: Node, i: int) -> int:
    """The id of the chat of phone `i`."""
    return int(await n.scalar("SELECT id FROM chats WHERE jid = :j", j=phone_jid(i)))


async def events(n: Node, type_: str) -> list[Any]:
    """The `data` of every event-log row of `type_`, in order."""
    return [r.data for r in await log_rows(n) if r.type == type_]


async def pages(
    client: httpx.AsyncClient, url: str, key: str, headers: dict[str, str]
) -> list[list[Any]]:
    """Follow `nextCursor` from `url`; every page's items."""
    out, cursor = [], None
    while True:
        sep = "&" if "?" in url else "?"
        resp = await client.get(url + (f"{sep}cursor={cursor}" if cursor else ""), headers=headers)
        assert resp.status_code == 200, resp.text
        out.append(resp.json()[key])
        cursor = resp.json()["nextCursor"]
        if cursor is None:
            return out


async def test_every_route_wants_a_valid_token(n: Node):
    """No token, a forged or an expired one: 401 with a one-line JSON error on every route."""
    forged = {"Authorization": "Bearer " + token("acme", "u1")[:-4] + "AAAA"}
    for headers in ({}, forged, auth(token("acme", "u1", ttl_s=-5))):
        for method, path in ROUTES:
            resp = await n.http.request(method, path, headers=headers, json={})
            assert resp.status_code == 401, (method, path)
            assert "\n" not in resp.text and set(resp.json()) == {"error"}


async def test_chat_list_pages_by_last_activity_within_the_tenant(n: Node):
    """Pages of three, newest activity first, cover the tenant's seven chats once each."""
    got = await pages(n.http, "/api/chats?limit=3", "chats", ADMIN)
    assert [len(p) for p in got] == [3, 3, 1]
    ids = [c["id"] for p in got for c in p]
    assert ids == [await chat_id(n, i) for i in reversed(range(7))]
    assert {c["tenantId"] for p in got for c in p} == {"acme"}
    first = got[0][0]
    assert first["lastMessageAt"] == "2026-11-01T12:06:00+00:00"
    assert (first["status"], first["assignedUserId"], first["unreadCount"]) == ("OPEN", None, 1)


async def test_chat_filters(n: Node):
    """status, assigned (a user, me, none) and unread narrow the list; bad values are 422."""
    one, two = await chat_id(n, 1), await chat_id(n, 2)
    for chat in (one, two):
        resp = await n.http.post(f"/api/chats/{chat}/assign", json={"userId": "a1"}, headers=ADMIN)
        assert resp.status_code == 200
    await n.http.post(f"/api/chats/{two}/status", json={"status": "CLOSED"}, headers=ADMIN)
    await n.pipeline.ingest([msg(n.sid(), "OUT", phone_jid(9), from_me=True)], source="t")

    async def ids(query: str, headers: dict[str, str] = ADMIN) -> set[int]:
        resp = await n.http.get(f"/api/chats?{query}", headers=headers)
        assert resp.status_code == 200, resp.text
        return {c["id"] for c in resp.json()["chats"]}

    assert await ids("assigned=a1") == {one, two}
    assert await ids("assigned=me", auth(token("acme", "a1", "USER"))) == {one, two}
    assert len(await ids("assigned=none")) == 6
    assert await ids("status=CLOSED") == {two}
    assert await ids("unread=false") == {await chat_id(n, 9)}
    assert len(await ids("unread=true&status=OPEN")) == 6
    for bad in ("status=DONE", "unread=maybe", "limit=0", "limit=500", "cursor=%%%", "cursor=WzFd"):
        resp = await n.http.get(f"/api/chats?{bad}", headers=ADMIN)
        assert resp.status_code == 422, bad
        assert "\n" not in resp.text and "error" in resp.json()


async def test_a_user_sees_only_its_chats_and_the_rest_is_404(n: Node):
    """A USER lists only chats assigned to it; other chats (and other tenants' chats for an
    ADMIN) are 404 on every route, never 403; a USER may not assign (403 on its own chat)."""
    mine, other = await chat_id(n, 1), await chat_id(n, 2)
    await n.http.post(f"/api/chats/{mine}/assign", json={"userId": "a1"}, headers=ADMIN)
    user = auth(token("acme", "a1", "USER"))
    resp = await n.http.get("/api/chats", headers=user)
    assert [c["id"] for c in resp.json()["chats"]] == [mine]
    assert (await n.http.get(f"/api/chats/{mine}", headers=user)).status_code == 200
    foreign = auth(token("globex", "u3"))
    for headers, chat in ((user, other), (foreign, mine)):
        assert (await n.http.get(f"/api/chats/{chat}", headers=headers)).status_code == 404
        resp = await n.http.get(f"/api/chats/{chat}/messages", headers=headers)
        assert resp.status_code == 404
        body = {"status": "CLOSED"}
        resp = await n.http.post(f"/api/chats/{chat}/status", json=body, headers=headers)
        assert resp.status_code == 404
        resp = await n.http.post(f"/api/chats/{chat}/assign", json={"userId": "x"}, headers=headers)
        assert resp.status_code == 404
    resp = await n.http.post(f"/api/chats/{mine}/assign", json={"userId": "a2"}, headers=user)
    assert resp.status_code == 403
    resp = await n.http.post(f"/api/chats/{mine}/status", json={"status": "CLOSED"}, headers=user)
    assert resp.status_code == 200 and resp.json()["status"] == "CLOSED"
    assert (await n.http.get("/api/chats/abc", headers=ADMIN)).status_code == 422


async def test_messages_newest_first_with_cursor(n: Node):
    """A chat's messages come newest first by provider time, also when stored out of order."""
    s, chat = n.sid(), await chat_id(n, 3)
    for pmid, at in (("M1", 1000), ("M3", 3000), ("M2", 2000), ("M0", 10)):
        await n.pipeline.ingest([msg(s, pmid, phone_jid(3), at=at, body=pmid)], source="t")
    got = await pages(n.http, f"/api/chats/{chat}/messages?limit=2", "messages", ADMIN)
    assert [len(p) for p in got] == [2, 2, 1]
    ids = [m["providerMessageId"] for p in got for m in p]
    assert ids == ["M3", "M2", "M1", "A3", "M0"]
    first = got[0][0]
    assert (first["providerMessageId"], first["chatId"], first["fromMe"]) == ("M3", chat, False)
    assert first["sentAt"] == "2026-11-01T12:50:00+00:00"


async def test_assign_and_status_log_their_events(n: Node):
    """A real change logs chat:updated with the new and previous values; a no-op logs nothing;
    bad values are 422; a body that is not a JSON object is 400, as on every route."""
    chat = await chat_id(n, 4)
    url = f"/api/chats/{chat}/assign"
    for user in ("a1", "a1", "a2", None):
        resp = await n.http.post(url, json={"userId": user}, headers=ADMIN)
        assert resp.status_code == 200 and resp.json()["assignedUserId"] == user
    resp = await n.http.post(f"/api/chats/{chat}/status", json={"status": "CLOSED"}, headers=ADMIN)
    assert resp.status_code == 200
    changes = [d for d in await events(n, "chat:updated") if "created" not in d]
    assert changes == [
        {"assignedUserId": "a1", "previousUserId": None},
        {"assignedUserId": "a2", "previousUserId": "a1"},
        {"assignedUserId": None, "previousUserId": "a2"},
        {"status": "CLOSED", "previousStatus": "OPEN"},
    ]
    for body in ({}, {"userId": 5}, {"userId": ""}):
        assert (await n.http.post(url, json=body, headers=ADMIN)).status_code == 422
    assert (await n.http.post(url, json=[1], headers=ADMIN)).status_code == 400
    resp = await n.http.post(url, content=b"{not json", headers=ADMIN)
    assert resp.status_code == 400
    resp = await n.http.post(f"/api/chats/{chat}/status", json={"status": "x"}, headers=ADMIN)
    assert resp.status_code == 422


async def test_notifications_are_the_callers_and_read_once(n: Node):
    """Each admin lists its own new-lead notifications in pages; marking one read logs
    notification:read once; another user's notification is 404."""
    got = await pages(n.http, "/api/notifications?limit=3", "notifications", ADMIN)
    notes = [x for p in got for x in p]
    assert len(notes) == 7 and {x["userId"] for x in notes} == {"u1"}
    assert [x["id"] for x in notes] == sorted((x["id"] for x in notes), reverse=True)
    assert notes[0]["title"].startswith("Nova mensagem de ") and notes[0]["read"] is False
    target = notes[0]["id"]
    for _ in range(2):
        resp = await n.http.post(f"/api/notifications/{target}/read", headers=ADMIN)
        assert resp.json() == {"id": target, "read": True}
    assert await events(n, "notification:read") == [{"notificationId": target, "userId": "u1"}]
    resp = await n.http.get("/api/notifications?unread=true", headers=ADMIN)
    assert target not in {x["id"] for x in resp.json()["notifications"]}
    other = auth(token("acme", "u2"))
    assert (
        await n.http.post(f"/api/notifications/{target}/read", headers=other)
    ).status_code == 404
    resp = await n.http.get("/api/notifications", headers=auth(token("acme", "a1", "USER")))
    assert resp.json() == {"notifications": [], "nextCursor": None}


async def test_marking_a_chat_read_resets_its_unread_count_once(n: Node):
    """`POST /api/chats/{id}/read` sets unreadCount to 0 and logs one `chat:updated` with the
    previous count; again, it changes and logs nothing; a USER may mark only its own chats."""
    chat = await chat_id(n, 2)
    await n.pipeline.ingest([msg(n.sid(), "A2b", phone_jid(2), at=200)], source="t")
    assert await n.scalar("SELECT unread_count FROM chats WHERE id = :c", c=chat) == 2
    for _ in range(2):
        resp = await n.http.post(f"/api/chats/{chat}/read", headers=ADMIN)
        assert resp.status_code == 200, resp.text
        assert resp.json()["unreadCount"] == 0
    assert await n.scalar("SELECT unread_count FROM chats WHERE id = :c", c=chat) == 0
    marks = [e for e in await events(n, "chat:updated") if e and "unreadCount" in e]
    assert marks == [{"unreadCount": 0, "previousUnreadCount": 2}]
    other = await chat_id(n, 3)
    resp = await n.http.post(f"/api/chats/{other}/read", headers=auth(token("acme", "a9", "USER")))
    assert resp.status_code == 404
    assert await n.scalar("SELECT unread_count FROM chats WHERE id = :c", c=other) == 1
