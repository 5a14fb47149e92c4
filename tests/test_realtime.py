"""`/ws` over real loopback: JWT before the upgrade, scoping, resume, slow and dead clients,
two nodes on one Postgres, and the `wasync token` / `wasync tail` commands."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import free_port, settings_for
from tests.factories import ack, msg
from wasync.api.app import AppContext, create_app
from wasync.api.server import serve
from wasync.auth import Principal, Role, issue_token, verify_token
from wasync.cli import app as cli_app
from wasync.config import Settings
from wasync.events import AckLevel, SessionStatus
from wasync.hub import CLOSE_LAGGING, Hub
from wasync.pipeline import Pipeline
from wasync.registry import Registry, sync
from wasync.store import Store
from wasync.store import models as m
from wasync.store.listener import LISTEN_APP_NAME

SECRET = "realtime-tests-jwt-secret-0123456789"
T_EVENTS = m.EventRow.__table__  # type: ignore[attr-defined]
Frame = dict[str, Any]


# --- harness (also used by tests/test_rest.py) ---------------------------------------------


@dataclass
class Node:
    """One wasync stack (store, hub, pipeline, HTTP app) served on a loopback port."""

    settings: Settings
    store: Store
    registry: Registry
    hub: Hub
    pipeline: Pipeline
    base_url: str
    http: httpx.AsyncClient = field(init=False)

    def sid(self, tenant: str = "acme", name: str = "default") -> int:
        """The id of a configured session."""
        ref = self.registry.get(tenant, name)
        assert ref is not None
        return ref.id

    def ws_url(self, since: int | None = None) -> str:
        """`ws://…/ws`, with `since` when given."""
        query = f"?since={since}" if since is not None else ""
        return self.base_url.replace("http://", "ws://") + "/ws" + query

    async def scalar(self, sql: str, **params: Any) -> Any:
        """One value from raw SQL."""
        async with self.store.read() as conn:
            return (await conn.execute(text(sql), params)).scalar()


@asynccontextmanager
async def node(
    db_url: str, *, queue_frames: int = 1000, ping_s: float = 20, port: int = 0, **hub: Any
) -> AsyncIterator[Node]:
    """A running node on `db_url` with the two-tenant settings and the test JWT secret;
    `hub`: more options of its `Hub`."""
    settings = settings_for(db_url, auth={"jwt_secret": SECRET})
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store(db_url))
        await store.upgrade()
        registry = await sync(store, settings)
        hub = Hub(store, queue_frames=queue_frames, retry_s=0.05, max_retry_s=0.2, **hub)
        await stack.enter_async_context(hub)
        admins = {t.id: t.admins for t in settings.tenants}
        pipeline = Pipeline(store, crm=settings.crm, admins=admins, subscribers=[hub])
        await stack.enter_async_context(pipeline)
        ctx = AppContext(
            settings=settings, store=store, registry=registry, pipeline=pipeline, hub=hub
        )
        base = await stack.enter_async_context(
            serve(create_app(ctx), port=port, ws_ping_interval=ping_s, ws_ping_timeout=ping_s)
        )
        n = Node(settings, store, registry, hub, pipeline, base)
        n.http = await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=10))
        yield n


def token(tenant: str, user: str, role: Role = "ADMIN", ttl_s: float = 6 * 3600) -> str:
    """A JWT signed with the test secret; long-lived by default, because modules make theirs
    at import time and the whole suite (browser tests included) runs longer than 10 minutes."""
    return issue_token(SECRET, tenant_id=tenant, user_id=user, role=role, ttl_s=ttl_s)


def auth(tok: str) -> dict[str, str]:
    """The bearer header for `tok`."""
    return {"Authorization": f"Bearer {tok}"}


async def open_ws(n: Node, tok: str, since: int | None = None, **kw: Any) -> ClientConnection:
    """A websockets client connection to `/ws`, authenticated by header."""
    return await connect(n.ws_url(since), additional_headers=auth(tok), open_timeout=5, **kw)


async def read_until(
    conn: ClientConnection, done: Callable[[Frame], bool], timeout_s: float = 30
) -> list[Frame]:
    """Frames up to and including the first for which `done` is true."""
    out: list[Frame] = []
    async with asyncio.timeout(timeout_s):
        while True:
            out.append(json.loads(await conn.recv()))
            if done(out[-1]):
                return out


def is_status(status: str) -> Callable[[Frame], bool]:
    """Matches the session:status frame announcing `status`."""
    return lambda f: f["type"] == "session:status" and f["data"].get("status") == status


async def sentinel(n: Node, tenant: str) -> str:
    """Log a session:status row for `tenant` (every client of it receives it); its status."""
    status = f"MARK-{uuid.uuid4().hex[:8]}"
    await n.pipeline.ingest([SessionStatus(session_id=n.sid(tenant), status=status)], source="t")
    return status


async def log_rows(n: Node) -> list[Any]:
    """The whole event log, in id order."""
    async with n.store.read() as conn:
        return list(await conn.execute(select(T_EVENTS).order_by(T_EVENTS.c.id)))


def expected_ids(rows: list[Any], p: Principal) -> list[int]:
    """The spec, written out plainly: what `p` may receive from the log, in order.

    Own tenant only; notifications to the notified user; chat-less rows to the whole tenant;
    chat rows to ADMINs and to the chat's assignee (an assignment: old and new assignee).
    """
    assigned: dict[int, str | None] = {}
    out = []
    for r in rows:
        data = r.data or {}
        before = assigned.get(r.chat_id)
        if r.type == "chat:updated" and "assignedUserId" in data:
            assigned[r.chat_id] = data["assignedUserId"]
        if r.tenant_id != p.tenant_id:
            continue
        if r.type.startswith("notification:"):
            ok = data.get("userId") == p.user_id
        elif r.chat_id is None:
            ok = True
        else:
            ok = p.is_admin or p.user_id in (before, assigned.get(r.chat_id))
        if ok:
            out.append(r.id)
    return out


async def eventually(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    """Wait until `condition()` holds; fail after `timeout_s`."""
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def phone_jid(i: int) -> str:
    """A Brazilian mobile jid, distinct per `i`."""
    return f"55319888{i:05d}@s.whatsapp.net"


# --- handshake -------------------------------------------------------------------------------


async def test_bad_tokens_are_refused_before_the_upgrade(
    db_url: str, caplog: pytest.LogCaptureFixture
):
    """No token, a bad signature, an expired token or a bad role: HTTP 401, no WebSocket,
    and no ERROR in the log (uvicorn logs one per denial unless wasync filters it)."""
    caplog.set_level(logging.INFO)
    async with node(db_url) as n:
        forged = issue_token(
            "another-secret-0123456789abcdef0123",
            tenant_id="acme",
            user_id="u1",
            role="ADMIN",
            ttl_s=60,
        )
        expired = token("acme", "u1", ttl_s=-10)
        no_role = jwt.encode({"tenant_id": "acme", "sub": "u1", "exp": 2**40}, SECRET, "HS256")
        for headers in ({}, auth(forged), auth(expired), auth(no_role), auth("not.a.jwt")):
            with pytest.raises(InvalidStatus) as info:
                await connect(n.ws_url(), additional_headers=headers, open_timeout=5)
            assert info.value.response.status_code == 401
        assert n.hub.client_count == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


async def test_query_token_and_bad_since(db_url: str):
    """`?token=` authenticates like the header; a malformed `since` is a 422 before upgrade."""
    async with node(db_url) as n:
        url = n.ws_url() + "?token=" + token("acme", "u1")
        async with connect(url, open_timeout=5) as conn:
            status = await sentinel(n, "acme")
            await read_until(conn, is_status(status))
        with pytest.raises(InvalidStatus) as info:
            await connect(n.ws_url() + "?since=-3", additional_headers=auth(token("acme", "u1")))
        assert info.value.response.status_code == 422


# --- frames ----------------------------------------------------------------------------------


async def test_new_message_frame_carries_the_stored_message(db_url: str):
    """A first message yields chat:updated, lead:created, notification:new and chat:new-message
    frames with the stored message in camelCase; acks follow as chat:message-ack."""
    async with node(db_url) as n, await open_ws(n, token("acme", "u1")) as conn:
        s = n.sid()
        await n.pipeline.ingest([msg(s, "M1", phone_jid(1), body="olá")], source="webhook")
        await n.pipeline.ingest([ack(s, "M1", AckLevel.READ)], source="webhook")
        frames = await read_until(conn, lambda f: f["type"] == "chat:message-ack")
        assert [f["type"] for f in frames] == [
            "chat:updated",
            "lead:created",
            "notification:new",
            "chat:new-message",
            "chat:message-ack",
        ]
        assert [f["id"] for f in frames] == sorted(f["id"] for f in frames)
        chat_id = await n.scalar("SELECT id FROM chats")
        assert {f["tenantId"] for f in frames} == {"acme"}
        assert {f["chatId"] for f in frames} == {chat_id}
        message = frames[3]["message"]
        assert message["providerMessageId"] == "M1" and message["body"] == "olá"
        assert (message["chatId"], message["fromMe"], message["type"]) == (chat_id, False, "text")
        assert message["sentAt"] == "2026-11-01T12:00:00+00:00"
        assert {"mediaUrl", "mediaMimetype", "ack", "sessionId", "pushName"} <= message.keys()
        assert frames[3]["messageId"] == message["id"]
        assert frames[4]["data"]["ack"] == int(AckLevel.READ)


# --- scoping ---------------------------------------------------------------------------------

PRINCIPALS: list[tuple[str, str, Role]] = [
    ("acme", "u1", "ADMIN"),  # a configured admin: gets new-lead notifications
    ("acme", "boss", "ADMIN"),  # an admin nobody notifies
    ("acme", "a1", "USER"),
    ("acme", "a2", "USER"),
    ("acme", "u2", "USER"),  # notified (configured admin id) but scoped as a USER
    ("globex", "u3", "ADMIN"),
    ("globex", "g1", "USER"),
]
ASSIGNEES = ["a1", "a2", "u2", "g1", None]


async def _random_actions(n: Node, rng: random.Random, steps: int) -> None:
    """Ingest messages, acks and session changes; assign, close and read through REST."""
    for _ in range(steps):
        tenant = rng.choice(["acme", "acme", "globex"])
        s = n.sid(tenant, rng.choice(["default", "evo"]))
        roll = rng.random()
        if roll < 0.45:
            pmid = f"R{rng.randrange(10**9)}"
            phone = phone_jid(rng.randrange(6) + (100 if tenant == "globex" else 0))
            await n.pipeline.ingest([msg(s, pmid, phone, from_me=rng.random() < 0.3)], source="t")
            if rng.random() < 0.5:
                await n.pipeline.ingest([ack(s, pmid, AckLevel.DEVICE)], source="t")
        elif roll < 0.75:
            await _rest_change(n, rng, tenant)
        elif roll < 0.85:
            await _read_some_notification(n, rng)
        else:
            status = rng.choice(["WORKING", "STOPPED", "SCAN_QR_CODE"])
            await n.pipeline.ingest([SessionStatus(session_id=s, status=status)], source="t")


async def _rest_change(n: Node, rng: random.Random, tenant: str) -> None:
    chats = (await n.scalar("SELECT count(*) FROM chats WHERE tenant_id = :t", t=tenant)) or 0
    if not chats:
        return
    chat_id = await n.scalar(
        "SELECT id FROM chats WHERE tenant_id = :t ORDER BY id LIMIT 1 OFFSET :o",
        t=tenant,
        o=rng.randrange(chats),
    )
    admin = token(tenant, "u1" if tenant == "acme" else "u3")
    if rng.random() < 0.8:
        body: dict[str, Any] = {"userId": rng.choice(ASSIGNEES)}
        resp = await n.http.post(f"/api/chats/{chat_id}/assign", json=body, headers=auth(admin))
    else:
        body = {"status": rng.choice(["OPEN", "CLOSED"])}
        resp = await n.http.post(f"/api/chats/{chat_id}/status", json=body, headers=auth(admin))
    assert resp.status_code == 200, resp.text


async def _read_some_notification(n: Node, rng: random.Random) -> None:
    user = rng.choice(["u1", "u2"])
    note = await n.scalar(
        "SELECT id FROM notifications WHERE user_id = :u AND NOT read ORDER BY id LIMIT 1", u=user
    )
    if note is not None:
        resp = await n.http.post(
            f"/api/notifications/{note}/read", headers=auth(token("acme", user))
        )
        assert resp.status_code == 200, resp.text


async def _assigned_message(n: Node, user: str) -> None:
    await n.pipeline.ingest([msg(n.sid(), "FIXED-1", phone_jid(0))], source="t")
    chat = await n.scalar("SELECT id FROM chats WHERE jid = :j", j=phone_jid(0))
    body = {"userId": user}
    await n.http.post(f"/api/chats/{chat}/assign", json=body, headers=auth(token("acme", "u1")))
    await n.pipeline.ingest([msg(n.sid(), "FIXED-2", phone_jid(0))], source="t")


async def test_randomized_clients_get_exactly_their_scope(db_url: str):
    """Several tenants, users and roles, random ingest and REST changes from three concurrent
    workers: each live client, and each late client replaying with since=0, receives exactly the
    rows the predicate allows, in id order, each once (WASYNC_TEST_SEED replays a failure)."""
    seed = int(os.environ.get("WASYNC_TEST_SEED") or random.randrange(10**6))
    rng = random.Random(seed)
    async with node(db_url) as n:
        conns = [await open_ws(n, token(t, u, r)) for t, u, r in PRINCIPALS]
        await asyncio.gather(*(_random_actions(n, random.Random(rng.random()), 30) for _ in "abc"))
        await _assigned_message(n, "a1")  # so that USER clients surely have chat rows too
        marks = {t: await sentinel(n, t) for t in ("acme", "globex")}
        live = [
            await read_until(c, is_status(marks[t]))
            for c, (t, _, _) in zip(conns, PRINCIPALS, strict=True)
        ]
        rows = await log_rows(n)
        for frames, (tenant, user, role) in zip(live, PRINCIPALS, strict=True):
            want = expected_ids(rows, Principal(tenant_id=tenant, user_id=user, role=role))
            assert [f["id"] for f in frames] == want, (seed, tenant, user, role)
            async with await open_ws(n, token(tenant, user, role), since=0) as late:
                replayed = await read_until(late, is_status(marks[tenant]))
            # Same rows; a replayed `message` is read later, so it may show a later ack.
            assert [(f["id"], f["type"]) for f in replayed] == [
                (f["id"], f["type"]) for f in frames
            ], (seed, tenant, user, role)
        # Not vacuous: USERs got chat rows, and fewer rows than their tenant's admin.
        users = [f for f, (_, _, r) in zip(live, PRINCIPALS, strict=True) if r == "USER"]
        assert any(x["type"] == "chat:new-message" for f in users for x in f), seed
        assert all(len(f) < len(live[0]) for f in users[:3]), seed
        for conn in conns:
            await conn.close()


# --- resume ----------------------------------------------------------------------------------


async def _steady_ingest(n: Node, stop: asyncio.Event) -> None:
    s, i = n.sid(), 0
    while not stop.is_set():
        await n.pipeline.ingest([msg(s, f"S{i}", phone_jid(i % 7))], source="t")
        i += 1
        await asyncio.sleep(0.002)


async def test_reconnect_with_since_has_no_gap_and_no_duplicate(db_url: str):
    """A client that drops mid-stream and reconnects with `since` five times, while ingest goes
    on, ends up with the tenant's log exactly: in order, each id once."""
    async with node(db_url) as n:
        stop = asyncio.Event()
        writer = asyncio.create_task(_steady_ingest(n, stop))
        got: list[Frame] = []
        since: int | None = None
        for _ in range(5):
            async with await open_ws(n, token("acme", "u1"), since=since) as conn:
                got += await read_until(conn, lambda f: True, 10)
                got += [json.loads(await conn.recv()) for _ in range(random.randrange(1, 15))]
            since = got[-1]["id"]
            await asyncio.sleep(0.02)  # rows committed while disconnected
        stop.set()
        await writer
        status = await sentinel(n, "acme")
        async with await open_ws(n, token("acme", "u1"), since=since) as conn:
            got += await read_until(conn, is_status(status))
        want = expected_ids(
            await log_rows(n), Principal(tenant_id="acme", user_id="u1", role="ADMIN")
        )
        assert [f["id"] for f in got] == want


async def test_user_replay_follows_the_assignment_history(db_url: str):
    """A USER replaying from 0 gets a chat's rows only while it was assigned to it, plus the
    assignment rows that gave it and took it away."""
    async with node(db_url) as n:
        s, admin = n.sid(), auth(token("acme", "u1"))
        await n.pipeline.ingest([msg(s, "B1", phone_jid(1))], source="t")
        chat = await n.scalar("SELECT id FROM chats")
        await n.http.post(f"/api/chats/{chat}/assign", json={"userId": "a1"}, headers=admin)
        await n.pipeline.ingest([msg(s, "B2", phone_jid(1))], source="t")
        await n.http.post(f"/api/chats/{chat}/assign", json={"userId": "a2"}, headers=admin)
        await n.pipeline.ingest([msg(s, "B3", phone_jid(1))], source="t")
        status = await sentinel(n, "acme")
        async with await open_ws(n, token("acme", "a1", "USER"), since=0) as conn:
            frames = await read_until(conn, is_status(status))
        kinds = [
            (
                f["type"],
                f["data"].get("assignedUserId"),
                f.get("message", {}).get("providerMessageId"),
            )
            for f in frames
        ]
        assert kinds == [
            ("chat:updated", "a1", None),
            ("chat:new-message", None, "B2"),
            ("chat:updated", "a2", None),
            ("session:status", None, None),
        ]


async def test_since_outside_the_log_gets_a_resync_frame(db_url: str):
    """`since` older than the oldest retained row (pruned) or beyond the newest: a resync frame
    first, then live frames."""
    async with node(db_url) as n:
        s = n.sid()
        for i in range(3):
            await n.pipeline.ingest([msg(s, f"P{i}", phone_jid(i))], source="t")
        top = await n.scalar("SELECT max(id) FROM events")
        async with n.store.write() as conn:
            await conn.execute(text("DELETE FROM events WHERE id <= :k"), {"k": top - 2})
        for since in (1, top + 100):
            top = await n.scalar("SELECT max(id) FROM events")
            await eventually(lambda t=top: n.hub.position == t)  # the hub fanned out to `top`
            async with await open_ws(n, token("acme", "u1"), since=since) as conn:
                first = json.loads(await asyncio.wait_for(conn.recv(), 30))
                assert (first["type"], first["id"]) == ("resync", top)
                status = await sentinel(n, "acme")
                assert [f["type"] for f in await read_until(conn, is_status(status))] == [
                    "session:status"
                ]
        oldest = await n.scalar("SELECT min(id) FROM events")
        async with await open_ws(n, token("acme", "u1"), since=oldest - 1) as conn:
            first = json.loads(await asyncio.wait_for(conn.recv(), 30))
        u1 = Principal(tenant_id="acme", user_id="u1", role="ADMIN")
        assert first["id"] == expected_ids(await log_rows(n), u1)[0]  # retained: a plain replay


# --- slow and dead clients -------------------------------------------------------------------


async def test_slow_client_is_closed_with_4008_and_resumes(db_url: str):
    """A client that stops reading overflows its bounded queue and is closed with 4008 and
    `since=<last delivered id>`; ingest and a fast client never wait; resuming completes it."""
    async with node(db_url, queue_frames=4) as n:
        tok, s, body = token("acme", "u1"), n.sid(), "x" * 256_000
        # No permessage-deflate: these bodies must fill the socket buffers, not compress away.
        slow = await open_ws(n, tok, max_queue=1, max_size=2**20, compression=None)
        fast = await open_ws(n, tok, max_size=2**20)
        fast_frames: list[Frame] = []
        for i in range(400):
            await n.pipeline.ingest([msg(s, f"BIG{i}", phone_jid(1), body=body)], source="t")
            fast_frames += await read_until(fast, lambda f: f["type"] == "chat:new-message")
            if any(c.close_code == CLOSE_LAGGING for c in n.hub.clients()):
                break
        else:
            raise AssertionError("the slow client never overflowed")
        slow_frames: list[Frame] = []
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(60):
                while True:
                    slow_frames.append(json.loads(await slow.recv()))
        assert info.value.rcvd is not None and info.value.rcvd.code == 4008
        last = slow_frames[-1]["id"] if slow_frames else 0
        assert info.value.rcvd.reason.endswith(f"since={last}")
        status = await sentinel(n, "acme")
        fast_frames += await read_until(fast, is_status(status))
        async with await open_ws(n, tok, since=last, max_size=2**20, compression=None) as again:
            slow_frames += await read_until(again, is_status(status), 20)
        assert [f["id"] for f in slow_frames] == [f["id"] for f in fast_frames]
        await fast.close()


async def test_dead_connection_is_dropped_by_ping_timeout(db_url: str):
    """A peer that stops answering pings is disconnected and unsubscribed within seconds."""
    async with node(db_url, ping_s=0.2) as n:
        conn = await open_ws(n, token("acme", "u1"), ping_interval=None)
        assert n.hub.client_count == 1
        conn.transport.pause_reading()  # no pongs from here on
        await eventually(lambda: n.hub.client_count == 0)
        conn.transport.abort()


# --- two nodes -------------------------------------------------------------------------------


async def test_two_nodes_on_one_postgres_share_events(pg_url: str):
    """A client on node B sees what node A ingested (LISTEN/NOTIFY) and A's clients see B's
    REST changes; after the LISTEN connections are killed, they reconnect and catch up."""
    async with node(pg_url) as a, node(pg_url) as b:
        on_a, on_b = await open_ws(a, token("acme", "u1")), await open_ws(b, token("acme", "u1"))
        await a.pipeline.ingest([msg(a.sid(), "X1", phone_jid(1))], source="t")
        frames = await read_until(on_b, lambda f: f["type"] == "chat:new-message")
        assert frames[-1]["message"]["providerMessageId"] == "X1"
        chat = frames[-1]["chatId"]
        resp = await b.http.post(
            f"/api/chats/{chat}/assign", json={"userId": "a1"}, headers=auth(token("acme", "u1"))
        )
        assert resp.status_code == 200
        got = await read_until(on_a, lambda f: f["data"].get("assignedUserId") == "a1")
        await kill_listeners(a)
        await a.pipeline.ingest([msg(a.sid(), "X2", phone_jid(1))], source="t")
        more = await read_until(
            on_b, lambda f: f.get("message", {}).get("providerMessageId") == "X2"
        )
        status = await sentinel(a, "acme")
        more += await read_until(on_b, is_status(status))
        got += await read_until(on_a, is_status(status))
        want = expected_ids(
            await log_rows(a), Principal(tenant_id="acme", user_id="u1", role="ADMIN")
        )
        assert [f["id"] for f in frames + more] == want
        assert [f["id"] for f in got] == want
        await on_a.close()
        await on_b.close()


async def kill_listeners(n: Node) -> None:
    """Terminate every hub's LISTEN connection on the server (they must reconnect)."""
    sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n"
    async with n.store.write() as conn:
        await conn.execute(text(sql), {"n": LISTEN_APP_NAME})


# --- CLI -------------------------------------------------------------------------------------


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "wasync.toml"
    path.write_text(
        '[database]\nurl = "sqlite+aiosqlite:///x.db"\n[auth]\njwt_secret_env = "T_SECRET"\n'
        '[[tenants]]\nid = "acme"\n',
        encoding="utf-8",
    )
    return path


def test_token_command_prints_a_verifiable_jwt(tmp_path: Path):
    """`wasync token` signs with the [auth] secret; ttl units work; a bad role exits 2."""
    runner, cfg, env = CliRunner(), str(_config(tmp_path)), {"T_SECRET": SECRET}
    args = ["token", "-c", cfg, "--tenant", "acme", "--user", "a1", "--role", "USER"]
    result = runner.invoke(cli_app, [*args, "--ttl", "30m"], env=env)
    assert result.exit_code == 0, result.output
    assert verify_token(SECRET, result.stdout.strip()) == Principal(
        tenant_id="acme", user_id="a1", role="USER"
    )
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 1800
    for bad in (["--role", "ROOT"], ["--ttl", "soon"]):
        result = runner.invoke(cli_app, [*args, *bad], env=env)
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1


async def test_tail_prints_frames_and_resumes_after_a_drop(db_url: str):
    """`wasync tail` prints one JSON frame per line, reconnects with `since` when the server
    drops it (no duplicate, no gap) and exits 0 on Ctrl-C."""
    async with node(db_url) as n:
        argv = ["-m", "wasync", "tail", "--url", n.base_url, "--token", token("acme", "u1")]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(90):
                await eventually(lambda: n.hub.client_count == 1, 60)
                lines = [json.loads(await proc.stdout.readline()) for _ in await _marks(n, 1)]
                n.hub.close_all(1001, "going away")  # as when a node stops
                await n.pipeline.ingest([msg(n.sid(), "T1", phone_jid(3))], source="t")
                (last,) = await _marks(n, 1)
                while lines[-1].get("data", {}).get("status") != last:
                    lines.append(json.loads(await proc.stdout.readline()))
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        u1 = Principal(tenant_id="acme", user_id="u1", role="ADMIN")
        assert [f["id"] for f in lines] == expected_ids(await log_rows(n), u1)


@pytest.mark.timeout(240)
async def test_tail_survives_a_30s_daemon_restart(db_url: str):
    """The daemon goes away for 30 s (connection refused all along) and comes back on the
    same port: `wasync tail` keeps retrying, resumes with `since`, and prints what happened
    after the restart with no duplicate."""
    port = free_port()
    argv = ["-m", "wasync", "tail", "--token", token("acme", "u1"), "--max-backoff", "3"]
    async with node(db_url, port=port) as n:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, "--url", n.base_url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        await eventually(lambda: n.hub.client_count == 1, 60)
        (first,) = await _marks(n, 1)
        lines = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))]
        assert lines[0]["data"]["status"] == first
    try:
        await asyncio.sleep(30)  # the outage itself: what is tested is surviving it
        assert proc.returncode is None, "tail gave up during the outage"
        async with node(db_url, port=port) as n:
            await eventually(lambda: n.hub.client_count == 1, 60)
            (after,) = await _marks(n, 1)
            async with asyncio.timeout(60):
                while lines[-1].get("data", {}).get("status") != after:
                    lines.append(json.loads(await proc.stdout.readline()))
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        err = (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    ids = [f["id"] for f in lines]
    assert ids == sorted(set(ids))
    assert "reconnecting in" in err and "Traceback" not in err


async def _marks(n: Node, count: int) -> list[str]:
    return [await sentinel(n, "acme") for _ in range(count)]


async def test_events_written_by_another_process_reach_clients(db_url: str):
    """Rows committed by another writer (a backfill or `wasync send` process: its own store
    and pipeline, not subscribed to this hub) reach connected clients without a local commit."""
    async with node(db_url) as n, await open_ws(n, token("acme", "u1")) as conn:
        url = n.store.url.render_as_string(hide_password=False)
        async with Store(url) as other, Pipeline(other) as elsewhere:
            await elsewhere.ingest(
                [SessionStatus(session_id=n.sid(), status="FROM-ELSEWHERE")], source="backfill"
            )
        frames = await read_until(conn, is_status("FROM-ELSEWHERE"), timeout_s=30)
        assert frames[-1]["tenantId"] == "acme"
