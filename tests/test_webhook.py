"""The webhook endpoint: every real sample, auth, dead letters, store outages, concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from sqlalchemy import text

from tests.conftest import PG_URL
from wasync.api.app import AppContext, create_app
from wasync.config import Settings, parse
from wasync.errors import PayloadError
from wasync.events import ChatKind, Message, Reaction
from wasync.metrics import Metrics
from wasync.pipeline import Pipeline
from wasync.providers import detect, evolution, waha
from wasync.registry import Registry, sync
from wasync.store import Store

SAMPLES = Path(__file__).parent / "samples"
WAHA_KEY = "waha-hmac-key-with-at-least-32-bytes!"
EVO_KEY = "evolution-jwt-key-with-at-least-32-bytes"


def _bodies(provider: str) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((SAMPLES / provider).glob("*.json")):
        body = json.loads(path.read_text())
        if isinstance(body, dict) and detect.detect_provider(body) == provider:
            out[path.name] = body
    return out


WAHA_BODIES = _bodies("waha")
EVO_BODIES = _bodies("evolution")


def _settings(url: str, **webhook: Any) -> Settings:
    """One tenant whose sessions carry every session/instance name found in the samples."""
    waha_names = sorted({b["session"] for b in WAHA_BODIES.values() if b.get("session")})
    evo_names = sorted({b["instance"] for b in EVO_BODIES.values() if b.get("instance")})
    sessions = [
        {
            "name": n,
            "provider": "waha",
            "base_url": "http://127.0.0.1:1",
            "webhook_secret": WAHA_KEY,
        }
        for n in waha_names
    ] + [
        {
            "name": n,
            "provider": "evolution",
            "base_url": "http://127.0.0.1:2",
            "webhook_secret": EVO_KEY,
        }
        for n in evo_names
    ]
    return parse(
        {
            "database": {"url": url, "busy_timeout_ms": 300},
            "webhook": {"enabled": True, **webhook},
            "tenants": [{"id": "acme", "admins": ["u1"], "sessions": sessions}],
        }
    )


class Env:
    """A running app over ASGI with its store, pipeline and metrics."""

    def __init__(self, store: Store, registry: Registry, pipeline: Pipeline, metrics: Metrics):
        self.store, self.registry, self.pipeline, self.metrics = store, registry, pipeline, metrics
        self.client: httpx.AsyncClient

    async def scalar(self, sql: str, **params: Any) -> Any:
        """One value from raw SQL."""
        async with self.store.read() as conn:
            return (await conn.execute(text(sql), params)).scalar()


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[Env]:
    """The HTTP app on a fresh database, webhooks on, small rate limit bucket untouched."""
    settings = _settings(db_url)
    async with Store(db_url, busy_timeout_ms=300) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with Pipeline(store, admins={"acme": ["u1"]}) as pipeline:
            metrics = Metrics()
            app = create_app(
                AppContext(
                    settings=settings,
                    store=store,
                    registry=registry,
                    pipeline=pipeline,
                    metrics=metrics,
                )
            )
            e = Env(store, registry, pipeline, metrics)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://wasync") as client:
                e.client = client
                yield e


def waha_headers(raw: bytes, key: str = WAHA_KEY) -> dict[str, str]:
    """Headers WAHA sends with an HMAC key configured."""
    return {
        "content-type": "application/json",
        "x-webhook-hmac": hmac.new(key.encode(), raw, hashlib.sha512).hexdigest(),
        "x-webhook-hmac-algorithm": "sha512",
    }


def evo_headers(key: str = EVO_KEY, age_s: int = 0) -> dict[str, str]:
    """Headers Evolution sends when its webhook `headers` hold `jwt_key`; `age_s` ago is when
    it minted the token (exp = iat + 600 s), negative for a clock ahead of ours."""
    iat = int(time.time()) - age_s
    token = jwt.encode(
        {"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}, key, "HS256"
    )
    return {"content-type": "application/json", "authorization": f"Bearer {token}"}


async def post_waha(e: Env, body: Any, path: str = "/api/webhooks/whatsapp") -> httpx.Response:
    """POST a WAHA body, signed."""
    raw = json.dumps(body).encode()
    return await e.client.post(path, content=raw, headers=waha_headers(raw))


async def post_evo(e: Env, body: Any, path: str = "/api/webhooks/whatsapp") -> httpx.Response:
    """POST an Evolution body with a fresh JWT."""
    return await e.client.post(path, content=json.dumps(body).encode(), headers=evo_headers())


def _expected(provider: str, body: dict[str, Any]) -> tuple[int, set[str]]:
    """Status and the message ids the parsers say this body carries."""
    parse_webhook = waha.parse_webhook if provider == "waha" else evolution.parse_webhook
    try:
        events = parse_webhook(body, session_id=1)
    except PayloadError:
        return 400, set()
    kept = (ChatKind.DIRECT, ChatKind.GROUP)  # broadcasts and newsletters are dropped
    ids = {
        e.provider_message_id
        for e in events
        if isinstance(e, Message | Reaction) and e.chat.kind in kept
    }
    return 200, ids


@pytest.mark.parametrize("name", sorted(WAHA_BODIES))
async def test_every_waha_sample(env: Env, name: str):
    """Each WAHA sample is stored (its messages become rows), ignored (200) or dead-lettered."""
    body = WAHA_BODIES[name]
    status, ids = _expected("waha", body) if body.get("session") else (400, set())
    resp = await post_waha(env, body)
    assert resp.status_code == status, resp.text
    for pmid in ids:
        assert (
            await env.scalar("SELECT count(*) FROM messages WHERE provider_message_id=:p", p=pmid)
            == 1
        )
    dead = await env.scalar("SELECT count(*) FROM dead_letters")
    assert dead == (1 if status == 400 else 0)


@pytest.mark.parametrize("name", sorted(EVO_BODIES))
async def test_every_evolution_sample(env: Env, name: str):
    """Each Evolution sample is stored, ignored or dead-lettered, authenticated by JWT."""
    body = EVO_BODIES[name]
    status, ids = _expected("evolution", body) if body.get("instance") else (400, set())
    resp = await post_evo(env, body)
    assert resp.status_code == status, resp.text
    for pmid in ids:
        assert (
            await env.scalar("SELECT count(*) FROM messages WHERE provider_message_id=:p", p=pmid)
            == 1
        )


async def test_lid_sample_lands_on_the_phone_chat(env: Env):
    """Evolution's LID-addressed upsert becomes a message in the phone's chat with a lead."""
    resp = await post_evo(env, EVO_BODIES["messages.upsert.text.json"])
    assert resp.json()["new"] == 1
    assert await env.scalar("SELECT phone FROM chats") == "5588993074699"
    assert await env.scalar("SELECT phone FROM leads") == "5588993074699"
    assert await env.scalar("SELECT body FROM messages") == "Teste envio de mensagem"


async def test_ack_webhook_moves_the_ack(env: Env):
    """A WAHA ack after its message moves `messages.ack`; a repeat changes nothing."""
    message = {
        "event": "message.any",
        "session": "default",
        "payload": {
            "id": "true_11111111111@c.us_4CC5EDD64BC22EBA6D639F2AF571346C",
            "timestamp": 1700000000,
            "from": "11111111111@c.us",
            "fromMe": True,
            "body": "oi",
            "ack": 1,
        },
    }
    assert (await post_waha(env, message)).status_code == 200
    assert (await post_waha(env, WAHA_BODIES["message.ack.json"])).status_code == 200
    assert await env.scalar("SELECT ack FROM messages") == 3


async def test_wrong_hmac_is_401(env: Env):
    """A WAHA body signed with another key, or not signed, is refused."""
    raw = json.dumps(WAHA_BODIES["message.reaction.json"]).encode()
    bad = await env.client.post(
        "/api/webhooks/whatsapp", content=raw, headers=waha_headers(raw, "other")
    )
    unsigned = await env.client.post("/api/webhooks/whatsapp", content=raw)
    assert (bad.status_code, unsigned.status_code) == (401, 401)
    assert await env.scalar("SELECT count(*) FROM messages") == 0


async def test_hmac_is_checked_on_the_raw_bytes(env: Env):
    """The signature covers the exact bytes: re-spaced JSON with the old signature fails."""
    body = WAHA_BODIES["message.reaction.json"]
    raw = json.dumps(body).encode()
    respaced = json.dumps(body, indent=2).encode()
    resp = await env.client.post(
        "/api/webhooks/whatsapp", content=respaced, headers=waha_headers(raw)
    )
    assert resp.status_code == 401


@pytest.mark.parametrize("case", ["wrong-key", "expired", "missing"])
async def test_bad_jwt_is_401(env: Env, case: str):
    """An Evolution JWT signed with another key, expired for hours, or absent is refused."""
    headers = {
        "wrong-key": evo_headers("another-key-that-is-32-bytes-long!!"),
        "expired": evo_headers(age_s=3 * 3600),
        "missing": {"content-type": "application/json"},
    }[case]
    body = json.dumps(EVO_BODIES["messages.upsert.text.pn.json"]).encode()
    resp = await env.client.post("/api/webhooks/evolution", content=body, headers=headers)
    assert resp.status_code == 401


@pytest.mark.parametrize("age_s", [675, 1800, -5])
async def test_late_retries_and_clock_skew_are_accepted(env: Env, age_s: int):
    """Evolution re-sends an event with the JWT it minted for the first attempt, for up to
    20-30 minutes (a 401 is not retried: the event would be lost); its clock may run ahead."""
    body = json.dumps(EVO_BODIES["messages.upsert.text.pn.json"]).encode()
    headers = evo_headers(age_s=age_s)
    resp = await env.client.post("/api/webhooks/evolution", content=body, headers=headers)
    assert resp.status_code == 200


async def test_by_events_suffix_after_the_tenant_query(env: Env):
    """Evolution's webhookByEvents appends `/<event>` to the URL we registered, after its
    `?tenant=` query: the delivery still reaches the tenant's session; another tenant's
    name with the same suffix does not."""
    body = EVO_BODIES["messages.upsert.text.pn.json"]
    ok = await post_evo(env, body, "/api/webhooks/evolution?tenant=acme/messages-upsert")
    assert ok.status_code == 200 and ok.json()["new"] == 1
    other = await post_evo(env, body, "/api/webhooks/evolution?tenant=acm/messages-upsert")
    assert other.status_code == 404


async def test_static_bearer_token_is_accepted(env: Env):
    """Evolution configured with a static `authorization: Bearer <secret>` header works too."""
    body = json.dumps(EVO_BODIES["messages.upsert.text.pn.json"]).encode()
    resp = await env.client.post(
        "/api/webhooks/evolution/messages-upsert",
        content=body,
        headers={"authorization": f"Bearer {EVO_KEY}"},
    )
    assert resp.status_code == 200 and resp.json()["new"] == 1


async def test_unknown_session_is_404(env: Env):
    """A body naming a session that is not configured is 404."""
    body = dict(WAHA_BODIES["message.reaction.json"], session="nope")
    assert (await post_waha(env, body)).status_code == 404


async def test_truncated_body_is_400_and_kept(env: Env):
    """A cut-off body is 400 and its exact bytes land in dead_letters, secrets stripped."""
    raw = json.dumps(WAHA_BODIES["message.reaction.json"]).encode()[:-20]
    resp = await env.client.post("/api/webhooks/whatsapp", content=raw, headers=waha_headers(raw))
    assert resp.status_code == 400
    async with env.store.read() as conn:
        row = (await conn.execute(text("SELECT body, error, headers FROM dead_letters"))).one()
    assert bytes(row.body) == raw
    assert "JSON" in row.error
    headers = row.headers if isinstance(row.headers, dict) else json.loads(row.headers)
    assert "x-webhook-hmac" not in headers


async def test_dead_letters_keep_no_instance_token(env: Env):
    """Evolution's envelope carries the instance token in `apikey`: a body kept in
    dead_letters has it blanked, whole or cut off, and keeps every other byte."""
    body = dict(EVO_BODIES["messages.upsert.text.json"], data={"key": {"remoteJid": "1@x"}})
    token = body["apikey"]
    assert isinstance(token, str) and token
    whole = json.dumps(body).encode()
    cut = whole[: whole.index(token.encode()) + 6]
    for raw in (whole, cut):
        resp = await env.client.post("/api/webhooks/evolution", content=raw, headers=evo_headers())
        assert resp.status_code == 400
    async with env.store.read() as conn:
        kept = [
            bytes(r.body)
            for r in await conn.execute(text("SELECT body FROM dead_letters ORDER BY id"))
        ]
    assert len(kept) == 2
    assert all(token[:6].encode() not in b for b in kept)
    assert kept[0] == whole.replace(token.encode(), b"[redacted]")


async def test_a_retried_dead_letter_is_kept_once(env: Env):
    """WAHA retries any non-2xx (waha.md 5): the same unparseable body is answered 400 each
    time but kept once; a different one is kept too."""
    raw = json.dumps(WAHA_BODIES["message.reaction.json"]).encode()[:-20]
    other = raw[:-5]
    for body in (raw, raw, raw, other):
        resp = await env.client.post(
            "/api/webhooks/whatsapp", content=body, headers=waha_headers(body)
        )
        assert resp.status_code == 400
    assert await env.scalar("SELECT count(*) FROM dead_letters") == 2


async def test_body_over_limit_is_413(db_url: str):
    """A body above `max_body_bytes` is refused with 413 before it is parsed."""
    settings = _settings(db_url, max_body_bytes=2048)
    async with Store(db_url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with Pipeline(store) as pipeline:
            app = create_app(
                AppContext(settings=settings, store=store, registry=registry, pipeline=pipeline)
            )
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://w"
            ) as client:
                resp = await client.post("/api/webhooks/whatsapp", content=b"x" * 4096)
    assert resp.status_code == 413


async def test_rate_limit_answers_429_with_retry_after(db_url: str):
    """Past the per-session bucket the endpoint answers 429 with Retry-After."""
    settings = _settings(db_url, rate_per_s=1, burst=3)
    async with Store(db_url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with Pipeline(store) as pipeline:
            app = create_app(
                AppContext(settings=settings, store=store, registry=registry, pipeline=pipeline)
            )
            e = Env(store, registry, pipeline, Metrics())
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://w"
            ) as e.client:
                codes = [
                    (await post_waha(e, WAHA_BODIES["message.reaction.json"])) for _ in range(5)
                ]
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    assert int(codes[-1].headers["retry-after"]) >= 1


async def test_fifty_concurrent_deliveries_one_row(env: Env):
    """Fifty simultaneous deliveries of one message leave one row, and all get 200."""
    body = EVO_BODIES["messages.upsert.text.pn.json"]
    responses = await asyncio.gather(*(post_evo(env, body) for _ in range(50)))
    assert {r.status_code for r in responses} == {200}
    assert sum(r.json()["new"] for r in responses) == 1
    assert await env.scalar("SELECT count(*) FROM messages") == 1


async def test_store_down_is_503_then_retry_stores(env: Env, db_url: str):
    """With the database unavailable the answer is 503; the provider's retry then stores it."""
    body = EVO_BODIES["messages.upsert.text.pn.json"]
    async with _database_down(db_url):
        resp = await post_evo(env, body)
        assert resp.status_code == 503
    retry = await post_evo(env, body)
    assert retry.status_code == 200 and retry.json()["new"] == 1


class _database_down:
    """Make the database refuse work: hold SQLite's write lock, or close Postgres to connections."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lock: sqlite3.Connection | None = None

    async def __aenter__(self) -> None:
        if self.url.startswith("sqlite"):
            self.lock = sqlite3.connect(self.url.split("///", 1)[1], isolation_level=None)
            self.lock.execute("BEGIN EXCLUSIVE")
            return
        await self._pg(allow=False)

    async def __aexit__(self, *exc: object) -> None:
        if self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            return
        await self._pg(allow=True)

    async def _pg(self, *, allow: bool) -> None:
        assert PG_URL
        name = self.url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg", "postgresql"))
        try:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
            if not allow:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
                # A terminated backend may still answer a query until it has exited: the
                # outage begins when none is left.
                count = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
                for _ in range(1500):  # 30 s at most
                    if not await admin.fetchval(count, name):
                        break
                    await asyncio.sleep(0.02)
        finally:
            await admin.close()
