"""Fuzzing with Hypothesis: bodies mutated from both providers' real webhook samples, garbage
bytes, and REST / WebSocket parameters. The examples per test are bounded by the profile in
`tests/conftest.py` (`HYPOTHESIS_PROFILE=long` for more); `scripts/fuzz_webhooks.py` runs the
same strategies against a real daemon for as long as you like."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.strategies import dumps, garbage, query_values, waha_signature, webhook_bodies
from tests.test_realtime import Node, node, token
from tests.test_webhook import WAHA_KEY, _settings, evo_headers
from wasync import deadletters
from wasync.api.app import AppContext, create_app
from wasync.auth import issue_token
from wasync.errors import PayloadError
from wasync.ingest.normalize import normalize
from wasync.pipeline import Pipeline
from wasync.providers import KINDS
from wasync.registry import sync
from wasync.store import Store

SECRET = "fuzz-tests-jwt-secret-0123456789abcdef"
OK_WEBHOOK = {200, 400, 401, 404, 413, 429}


@given(webhook_bodies())
def test_parsers_raise_nothing_but_payload_errors(case: tuple[str, dict[str, Any]]) -> None:
    """A mutated body either parses into events or is a PayloadError (a dead letter); the
    events then normalize and render as JSON without raising."""
    provider, body = case
    kind = KINDS[provider]
    kind.detect(body)
    kind.session_name(body)
    kind.session_in_raw(dumps(body))
    try:
        events = kind.parse_webhook(body, session_id=1)
    except PayloadError:
        return
    kept, refused = normalize(events)
    for ev in [*kept, *(r.event for r in refused)]:
        json.loads(deadletters.event_body(ev))


@given(webhook_bodies())
def test_message_parsers_raise_nothing_but_payload_errors(
    case: tuple[str, dict[str, Any]],
) -> None:
    """The message inside a mutated body, parsed the way polling parses listed messages."""
    provider, body = case
    message = body.get("payload" if provider == "waha" else "data")
    with contextlib.suppress(PayloadError):
        KINDS[provider].parse_message(message, session_id=1)  # type: ignore[arg-type]


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The webhook, REST and health routes over ASGI on a fresh database; generous limits
    (the fuzz posts many bodies from one address)."""
    settings = _settings(
        db_url, rate_per_s=1e6, burst=10**6, source_rate_per_s=1e6, source_burst=10**6
    )
    settings = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"jwt_secret": SecretStr(SECRET)})}
    )
    async with Store(db_url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with Pipeline.from_settings(store, settings) as pipeline:
            ctx = AppContext(settings=settings, store=store, registry=registry, pipeline=pipeline)
            transport = httpx.ASGITransport(app=create_app(ctx))
            async with httpx.AsyncClient(transport=transport, base_url="http://wasync") as c:
                yield c
            async with store.read() as conn:  # the store survived every example
                assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1


@given(case=webhook_bodies(), signed=st.booleans())
async def test_the_webhook_endpoint_never_answers_5xx(
    client: httpx.AsyncClient, case: tuple[str, dict[str, Any]], signed: bool
) -> None:
    """Mutated bodies, signed as their provider signs (so they reach the parsers and the
    store) or not: a 2xx or 4xx, in the endpoint's JSON shape; 503 only for an outage."""
    provider, body = case
    raw = dumps(body)
    headers = {"content-type": "application/json"}
    if signed:
        headers.update(waha_signature(WAHA_KEY, raw) if provider == "waha" else evo_headers())
    resp = await client.post(f"/api/webhooks/{provider}", content=raw, headers=headers)
    assert resp.status_code in OK_WEBHOOK, resp.text
    assert "ok" in resp.json()


@given(raw=garbage(), path=st.sampled_from(["whatsapp", "waha", "evolution"]))
async def test_garbage_is_a_4xx(client: httpx.AsyncClient, raw: bytes, path: str) -> None:
    """Random bytes, cut JSON, deep JSON, JSON of another shape: 400/404, JSON answer."""
    resp = await client.post(f"/api/webhooks/{path}", content=raw)
    assert resp.status_code in OK_WEBHOOK and resp.json()["ok"] is False


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


@given(
    limit=query_values(),
    cursor=st.one_of(query_values(), query_values().map(_b64)),
    chat=query_values(),
    assigned=query_values(),
)
async def test_rest_parameters_never_answer_5xx(
    client: httpx.AsyncClient, limit: str, cursor: str, chat: str, assigned: str
) -> None:
    """`?limit=`, `?cursor=`, `?assigned=` and path ids of any text: 2xx or a one-line JSON
    4xx."""
    tok = issue_token(SECRET, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=600)
    auth = {"Authorization": f"Bearer {tok}"}

    def q(value: str) -> str:
        return quote(value.encode("utf-8", "surrogatepass"), safe="")

    for path in (
        f"/api/chats?limit={q(limit)}&cursor={q(cursor)}&assigned={q(assigned)}",
        f"/api/chats/{q(chat)}/messages?limit={q(limit)}&cursor={q(cursor)}",
        f"/api/notifications?cursor={q(cursor)}&unread={q(assigned)}",
        f"/api/chats/{q(chat)}",
    ):
        resp = await client.get(path, headers=auth)
        assert resp.status_code < 500, (path, resp.text)
        if resp.status_code >= 400:
            assert set(resp.json()) == {"error"} and "\n" not in resp.text


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[Node]:
    """A node served on loopback (`/ws` needs a real server)."""
    async with node(db_url) as n:
        yield n


@given(since=query_values())
async def test_ws_since_is_accepted_or_422(served: Node, since: str) -> None:
    """`/ws?since=` of any text: the upgrade, or a 422 before it; never a 5xx."""
    value = quote(since.encode("utf-8", "surrogatepass"), safe="")
    url = served.base_url.replace("http://", "ws://") + f"/ws?since={value}"
    headers = {"Authorization": f"Bearer {token('acme', 'u1')}"}
    try:
        async with connect(url, additional_headers=headers, open_timeout=5):
            pass
    except InvalidStatus as exc:
        assert exc.response.status_code == 422
