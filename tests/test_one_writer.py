"""One writer: a lead a send creates is scoped like one a customer creates; one ack rule on
every path (in a batch, across batches, parked, adopted), on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection, connect

from tests.factories import ack, msg
from wasync.api.app import AppContext, create_app
from wasync.api.server import serve
from wasync.auth import Role, issue_token
from wasync.campaign import SendOptions, run_campaign
from wasync.config import Settings, parse
from wasync.events import (
    AckLevel,
    ClaimRef,
    MessageType,
    SendAccepted,
    SendQueued,
    SessionStatus,
)
from wasync.hub import Hub
from wasync.outbox import Outbox
from wasync.pipeline import Pipeline
from wasync.registry import Registry, sync
from wasync.sim import EvolutionSim, WahaSim
from wasync.sim import serve as serve_sim
from wasync.store import Store

SECRET = "one-writer-tests-jwt-secret-0123456789"
WAHA_KEY = "waha-key"
EVO_KEY = "evo-key"
Frame = dict[str, Any]


# --- a node with an outbox, over loopback ----------------------------------------------------


@dataclass
class Node:
    """Store, hub, pipeline, outbox and the HTTP app, with both simulators on real ports."""

    settings: Settings
    store: Store
    registry: Registry
    pipeline: Pipeline
    base_url: str
    http: httpx.AsyncClient

    def sid(self, name: str = "default") -> int:
        """A configured session's id."""
        ref = self.registry.get("acme", name)
        assert ref is not None
        return ref.id

    async def ws(self, user: str, role: Role) -> ClientConnection:
        """A `/ws` connection for a user of `acme`."""
        url = self.base_url.replace("http://", "ws://") + "/ws"
        headers = {"Authorization": f"Bearer {token(user, role)}"}
        return await connect(url, additional_headers=headers, open_timeout=5)

    async def scalar(self, sql: str, **params: Any) -> Any:
        """One value from raw SQL."""
        async with self.store.read() as conn:
            return (await conn.execute(text(sql), params)).scalar()


def token(user: str, role: Role) -> str:
    """A JWT of tenant `acme`."""
    return issue_token(SECRET, tenant_id="acme", user_id=user, role=role, ttl_s=600)


def node_settings(db_url: str, waha_url: str, evo_url: str) -> Settings:
    """One tenant (admin `boss`) with a WAHA session and an Evolution instance."""
    sessions = [
        {"name": "default", "provider": "waha", "base_url": waha_url, "api_key": WAHA_KEY},
        {"name": "evo", "provider": "evolution", "base_url": evo_url, "api_key": EVO_KEY},
    ]
    return parse(
        {
            "database": {"url": db_url},
            "auth": {"jwt_secret": SECRET},
            "tenants": [{"id": "acme", "admins": ["boss"], "sessions": sessions}],
        }
    )


@asynccontextmanager
async def running_node(db_url: str) -> AsyncIterator[Node]:
    """The node, its simulators serving on loopback."""
    waha = WahaSim(api_key=WAHA_KEY, seed=11)
    waha.add_session("default", engine="WEBJS")
    evo = EvolutionSim(api_key=EVO_KEY, seed=12)
    evo.add_instance("evo")
    async with AsyncExitStack() as stack:
        waha_url = await stack.enter_async_context(serve_sim(waha.app))
        evo_url = await stack.enter_async_context(serve_sim(evo.app))
        settings = node_settings(db_url, waha_url, evo_url)
        store = await stack.enter_async_context(Store(db_url))
        await store.upgrade()
        registry = await sync(store, settings)
        hub = await stack.enter_async_context(Hub(store, poll_s=0.2))
        pipeline = await stack.enter_async_context(
            Pipeline.from_settings(store, settings, subscribers=[hub])
        )
        client = await stack.enter_async_context(httpx.AsyncClient())
        outbox = await stack.enter_async_context(
            Outbox(settings, store, registry, pipeline, client)
        )
        ctx = AppContext(
            settings=settings,
            store=store,
            registry=registry,
            pipeline=pipeline,
            hub=hub,
            outbox=outbox,
        )
        base = await stack.enter_async_context(serve(create_app(ctx)))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=10))
        yield Node(settings, store, registry, pipeline, base, http)


async def frames_until(conn: ClientConnection, done: Callable[[Frame], bool]) -> list[Frame]:
    """Frames up to and including the first for which `done` is true (generous timeout)."""
    out: list[Frame] = []
    while not out or not done(out[-1]):
        out.append(json.loads(await _recv(conn)))
    return out


async def _recv(conn: ClientConnection) -> str | bytes:
    async with asyncio.timeout(30):
        return await conn.recv()


def marked(status: str) -> Callable[[Frame], bool]:
    """The session:status frame that carries `status`."""
    return lambda f: f["type"] == "session:status" and f["data"].get("status") == status


def shape(frame: Frame) -> tuple[str, tuple[str, ...], bool]:
    """What must be the same for a lead made by a send and one made by a customer."""
    return frame["type"], tuple(sorted(frame["data"])), frame["chatId"] is not None


async def test_a_user_gets_no_frame_of_chats_and_leads_it_cannot_see(
    db_url: str, tmp_path: Path
) -> None:
    """An ADMIN writes to new numbers (REST and a CSV campaign in a process of its own) and a
    customer writes first, while a USER with no chat is connected: the USER receives nothing
    of those chats or leads; the ADMIN's lead frames look the same whoever wrote first."""
    async with running_node(db_url) as n:
        user, admin = await n.ws("agent", "USER"), await n.ws("boss", "ADMIN")
        resp = await n.http.post(
            "/api/messages",
            json={"to": "5511987650101", "text": "Olá!"},
            headers={"Authorization": f"Bearer {token('boss', 'ADMIN')}"},
        )
        assert resp.status_code == 201, resp.text
        csv = tmp_path / "leads.csv"
        csv.write_text("phone\n5511987650102\n5511987650103\n")
        opts = SendOptions(tenant="acme", csv_path=csv, text="Olá, {phone}!", wait=False)
        summary = await run_campaign(n.settings, opts, Console(quiet=True))
        assert summary.queued == 2
        inbound = msg(n.sid(), "IN-1", "5511987650104@c.us", body="Quero comprar")
        await n.pipeline.ingest([inbound], source="webhook")
        status = "MARK-one-writer"
        await n.pipeline.ingest([SessionStatus(session_id=n.sid(), status=status)], source="t")

        seen_by_user = await frames_until(user, marked(status))
        assert [f["type"] for f in seen_by_user] == ["session:status"]

        seen_by_admin = await frames_until(admin, marked(status))
        leads = [f for f in seen_by_admin if f["type"] == "lead:created"]
        created = [f for f in seen_by_admin if f["type"] == "chat:updated" and f["data"]]
        assert len(leads) == len(created) == 4
        assert {shape(f) for f in leads} == {("lead:created", ("leadId", "phone"), True)}
        assert {shape(f) for f in created} == {("chat:updated", ("created", "jid", "kind"), True)}
        assert {f["data"]["kind"] for f in created} == {"direct"}
        for frame in leads:
            phone = frame["data"]["phone"]
            chat = await n.scalar("SELECT id FROM chats WHERE phone = :p", p=phone)
            assert frame["chatId"] == chat
        notified = [f["data"]["userId"] for f in seen_by_admin if f["type"] == "notification:new"]
        assert notified == ["boss"]  # only the number that wrote first notifies
        await user.close()
        await admin.close()


# --- one ack rule ---------------------------------------------------------------------------

E, P, S, D, R, Y = "ERROR", "PENDING", "SERVER", "DEVICE", "READ", "PLAYED"
# The acks a message receives, in arrival order, and the ack it must end with: the order is
# (no ack) < PENDING < ERROR < SERVER < DEVICE < READ < PLAYED, whatever the batching.
ACK_TABLE: list[tuple[list[str], str]] = [
    ([P], P),
    ([E], E),
    ([P, E], E),
    ([E, P], E),
    ([E, S], S),
    ([S, E], S),
    ([S, P], S),
    ([R, D, S], R),
    ([D, Y, R], Y),
    ([D, P, E], D),
    ([E, P, R, E], R),
]


def _levels(names: list[str]) -> list[AckLevel]:
    return [AckLevel[n] for n in names]


async def _stored_acks(store: Store, prefix: str) -> dict[str, str | None]:
    async with store.read() as conn:
        rows = await conn.execute(
            text("SELECT provider_message_id, ack FROM messages WHERE provider_message_id LIKE :p"),
            {"p": f"{prefix}%"},
        )
        return {r[0]: None if r[1] is None else AckLevel(r[1]).name for r in rows}


def _sid(registry: Registry) -> int:
    ref = registry.get("acme", "default")
    assert ref is not None
    return ref.id


async def _ack_path(pipeline: Pipeline, store: Store, sid: int, path: str) -> dict[str, str]:
    """Apply each table row's acks along `path`; the stored ack per row."""
    for i, (names, _) in enumerate(ACK_TABLE):
        pmid, chat = f"{path}-{i}", f"55119876{i:05d}@c.us"
        acks = [ack(sid, pmid, level) for level in _levels(names)]
        if path == "in-batch":
            await pipeline.ingest([msg(sid, pmid, chat)], source="t")
            await pipeline.ingest(acks, source="t")
        elif path == "cross-batch":
            await pipeline.ingest([msg(sid, pmid, chat)], source="t")
            for one in acks:
                await pipeline.ingest([one], source="t")
        elif path == "parked-in-batch":
            await pipeline.ingest(acks, source="t")
            await pipeline.ingest([msg(sid, pmid, chat)], source="t")
        else:  # parked-cross-batch: each one merged into `pending_updates` by the SQL
            for one in acks:
                await pipeline.ingest([one], source="t")
            await pipeline.ingest([msg(sid, pmid, chat)], source="t")
    return {k: v or "" for k, v in (await _stored_acks(store, path)).items()}


async def test_one_ack_rule_in_a_batch(pipeline: Pipeline, store: Store, registry: Registry):
    """Acks merged within one batch end where the table says."""
    got = await _ack_path(pipeline, store, _sid(registry), "in-batch")
    assert got == {f"in-batch-{i}": want for i, (_, want) in enumerate(ACK_TABLE)}


async def test_one_ack_rule_across_batches(pipeline: Pipeline, store: Store, registry: Registry):
    """Acks applied one transaction each to a stored message end where the table says."""
    got = await _ack_path(pipeline, store, _sid(registry), "cross-batch")
    assert got == {f"cross-batch-{i}": want for i, (_, want) in enumerate(ACK_TABLE)}


async def test_one_ack_rule_parked(pipeline: Pipeline, store: Store, registry: Registry):
    """Acks that wait in `pending_updates` (merged in one batch, or by the parking SQL across
    batches) end where the table says once their message lands."""
    sid = _sid(registry)
    for path in ("parked-in-batch", "parked-cross-batch"):
        got = await _ack_path(pipeline, store, sid, path)
        assert got == {f"{path}-{i}": want for i, (_, want) in enumerate(ACK_TABLE)}
    assert await _count(store, "pending_updates") == 0


async def test_one_ack_rule_for_adopted_sends(pipeline: Pipeline, store: Store, registry: Registry):
    """Our send (ack PENDING) adopts the provider's id after an echo brought the first ack and
    the rest waited parked: it ends where the table says."""
    sid = _sid(registry)
    for i, (names, _) in enumerate(ACK_TABLE):
        phone, pmid = f"55119877{i:05d}", f"adopted-{i}"
        row, created = await pipeline.execute(
            SendQueued(
                tenant_id="acme",
                session_id=sid,
                to_jid=f"{phone}@c.us",
                phone=phone,
                kind="text",
                payload={"text": "oi"},
                type=MessageType.TEXT,
                body="oi",
            )
        )
        assert created
        await _claim(store, row["id"])
        first, *rest = _levels(names)
        for level in rest:
            await pipeline.ingest([ack(sid, pmid, level)], source="t")
        echo = msg(sid, pmid, f"{phone}@c.us", from_me=True, ack=first)
        await pipeline.ingest([echo], source="t")
        claim = ClaimRef(
            outbox_id=row["id"],
            attempts=1,
            tenant_id="acme",
            session_id=sid,
            chat_id=row["chat_id"],
            message_id=row["message_id"],
        )
        accepted = SendAccepted(claim=claim, provider_message_id=pmid)
        assert await pipeline.execute(accepted) is True
    got = await _stored_acks(store, "adopted-")
    assert got == {f"adopted-{i}": want for i, (_, want) in enumerate(ACK_TABLE)}
    assert await _count(store, "messages WHERE from_me") == len(ACK_TABLE)  # echoes merged


async def _claim(store: Store, outbox_id: int) -> None:
    """What a sender's claim does to the row (status SENDING, first attempt)."""
    async with store.write() as conn:
        sql = "UPDATE outbox SET status = 'SENDING', attempts = 1 WHERE id = :i"
        await conn.execute(text(sql), {"i": outbox_id})


async def _count(store: Store, what: str) -> int:
    async with store.read() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {what}"))).scalar_one())
