"""Webhooks fail closed: a session with no webhook secret refuses unsigned bodies (401,
nothing stored) unless `[webhook] allow_unsigned = true`; on SQLite and Postgres."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy import text

from tests.test_webhook import EVO_BODIES, WAHA_BODIES
from wasync.api.app import AppContext, create_app
from wasync.config import parse
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.store import Store

WAHA_BODY = WAHA_BODIES["message.image.json"]
EVO_BODY = EVO_BODIES["messages.upsert.extendedText.v1.json"]


@asynccontextmanager
async def _app(db_url: str, allow_unsigned: bool | None) -> AsyncIterator[Posted]:
    """The app with one WAHA session and one Evolution instance, neither with a secret."""
    hook: dict[str, object] = {"enabled": True}
    if allow_unsigned is not None:
        hook["allow_unsigned"] = allow_unsigned
    sessions = [
        {"name": WAHA_BODY["session"], "provider": "waha", "base_url": "http://127.0.0.1:1"},
        {"name": EVO_BODY["instance"], "provider": "evolution", "base_url": "http://127.0.0.1:2"},
    ]
    settings = parse(
        {
            "database": {"url": db_url},
            "webhook": hook,
            "tenants": [{"id": "acme", "admins": ["u1"], "sessions": sessions}],
        }
    )
    async with Store(db_url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with Pipeline(store, admins={"acme": ["u1"]}) as pipeline:
            ctx = AppContext(settings=settings, store=store, registry=registry, pipeline=pipeline)
            transport = httpx.ASGITransport(app=create_app(ctx))
            async with httpx.AsyncClient(transport=transport, base_url="http://wasync") as client:
                yield await _post_both(client, store)


@dataclass(frozen=True, slots=True)
class Posted:
    """The answers to the WAHA and the Evolution body, and the messages stored then."""

    codes: list[int]
    stored: int


async def _post_both(client: httpx.AsyncClient, store: Store) -> Posted:
    codes = []
    for body in (WAHA_BODY, EVO_BODY):
        raw = json.dumps(body).encode()
        resp = await client.post(
            "/api/webhooks/whatsapp", content=raw, headers={"content-type": "application/json"}
        )
        codes.append(resp.status_code)
    async with store.read() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar()
    return Posted(codes, int(stored or 0))


async def test_a_session_without_a_secret_refuses_unsigned_webhooks(db_url: str) -> None:
    """By default (and with `allow_unsigned = false`) both providers' unsigned bodies get 401
    and no message is stored."""
    for flag in (None, False):
        async with _app(db_url, flag) as posted:
            assert posted == Posted([401, 401], 0)


async def test_allow_unsigned_accepts_them(db_url: str) -> None:
    """With `[webhook] allow_unsigned = true` the same bodies are stored (200)."""
    async with _app(db_url, True) as posted:
        assert posted.codes == [200, 200] and posted.stored >= 2
