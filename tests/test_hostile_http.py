"""Only 503 and deliberate 5xx: hostile REST, send and WebSocket parameters are one-line JSON
4xx, and neither a 4xx nor a 500 costs the client its keep-alive connection (real uvicorn)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.factories import msg
from tests.test_outbox import JWT_SECRET, PHONE, Env, environment
from tests.test_realtime import node, token
from wasync.api.app import AppContext, create_app
from wasync.api.server import serve
from wasync.auth import issue_token

BIG = "1" * 5000


def _cursor(value: Any) -> str:
    raw = json.dumps(value).encode() if not isinstance(value, bytes) else value
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# (method, path, JSON body or None, expected status)
HOSTILE = [
    ("GET", "/api/chats?limit=²", None, 422),
    ("GET", f"/api/chats?limit={BIG}", None, 422),
    ("GET", "/api/chats?limit=1e3", None, 422),
    ("GET", "/api/chats/²", None, 422),
    ("GET", f"/api/chats/{BIG}", None, 422),
    ("GET", "/api/chats/9999999999", None, 422),  # past INTEGER: asyncpg refused it (500)
    ("GET", f"/api/chats/{BIG}/messages", None, 422),
    ("GET", f"/api/chats?cursor={_cursor(b'[' * 5000 + b']' * 5000)}", None, 422),
    ("GET", f"/api/chats?cursor={_cursor(['2026-01-01T00:00:00', 10**30])}", None, 422),
    ("GET", f"/api/chats?cursor={_cursor(['2026-01-01T00:00:00', '²'])}", None, 422),
    ("GET", f"/api/chats?cursor={_cursor(['9999-12-31T23:59:59-14:00', 1])}", None, 422),
    ("GET", f"/api/chats?cursor={_cursor(['x', 1])}", None, 422),
    ("GET", "/api/chats?cursor=%C3%A9%C3%A9", None, 422),
    ("GET", "/api/chats?assigned=%00", None, 422),
    ("GET", f"/api/notifications?cursor={_cursor([BIG])}", None, 422),
    ("POST", "/api/chats/1/assign", {"userId": "u\u0000"}, 422),
    ("POST", "/api/chats/1/status", {"status": ["OPEN"]}, 422),
    ("POST", f"/api/notifications/{BIG}/read", {}, 422),
    ("POST", "/api/messages", {"to": "\u0000"}, 400),
    ("POST", "/api/messages", {"to": PHONE, "text": "oi\u0000"}, 400),
    ("POST", "/api/messages", {"to": PHONE, "text": "\ud800"}, 400),
    ("POST", f"/api/chats/{BIG}/messages", {"text": "oi"}, 404),
    ("GET", "/api/outbox/²", None, 404),
    ("GET", f"/api/outbox/{BIG}", None, 404),
    ("GET", "/api/nothing-here", None, 404),
    ("DELETE", "/api/chats", None, 405),
]


def context(env: Env, **extra: Any) -> AppContext:
    """The app's context over the test environment's store and pipeline."""
    return AppContext(
        settings=env.settings,
        store=env.store,
        registry=env.registry,
        pipeline=env.pipeline,
        metrics=env.metrics,
        **extra,
    )


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app (REST and send routes) over ASGI, with one chat; an ADMIN token."""
    async with environment(db_url) as env:
        ctx = context(env, outbox=env.outbox)
        sid = env.ref("waha").id
        await env.pipeline.ingest([msg(sid, "in-1", f"{PHONE}@c.us")], source="test")
        tok = issue_token(JWT_SECRET, tenant_id="acme", user_id="boss", role="ADMIN", ttl_s=600)
        transport = httpx.ASGITransport(create_app(ctx))
        headers = {"Authorization": f"Bearer {tok}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://wasync", headers=headers
        ) as c:
            yield c


@pytest.mark.parametrize(("method", "path", "body", "status"), HOSTILE)
async def test_hostile_parameters_are_one_line_json_4xx(
    client: httpx.AsyncClient, method: str, path: str, body: Any, status: int
) -> None:
    """Digits `int()` refuses, values past a column, deep or broken cursors, NUL in a query
    or a body, no such route: a 4xx with `{"error": ...}` on one line, never a 500."""
    content = json.dumps(body).encode() if body is not None else None
    resp = await client.request(method, path, content=content)
    assert resp.status_code == status, resp.text
    assert set(resp.json()) == {"error"} and "\n" not in resp.text


async def test_deeply_nested_bodies_are_400(client: httpx.AsyncClient) -> None:
    """A JSON body deep enough for RecursionError is a bad body like any other."""
    for path in ("/api/chats/1/assign", "/api/messages"):
        resp = await client.post(path, content=b"[" * 100_000 + b"]" * 100_000)
        assert resp.status_code == 400 and resp.json() == {"error": "body is not valid JSON"}


@pytest.mark.parametrize("since", ["²", BIG, "-1", "1.5", str(2**64)])
async def test_bad_since_is_422_before_the_upgrade(db_url: str, since: str) -> None:
    """`/ws?since=` that is not a 64-bit non-negative integer: 422, no upgrade."""
    async with node(db_url) as n:
        url = n.base_url.replace("http://", "ws://") + f"/ws?since={since}"
        headers = {"Authorization": f"Bearer {token('acme', 'u1')}"}
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, additional_headers=headers, open_timeout=5):
                pass
        assert info.value.response.status_code == 422


async def _boom(_request: Request) -> Response:
    raise RuntimeError("a bug nobody foresaw")


async def test_keep_alive_survives_a_4xx_and_a_500(db_url: str) -> None:
    """Over one TCP connection: a 401, a 404, a 422, an unhandled exception (500, JSON), then a
    200. uvicorn used to close the connection after the 500 (Starlette re-raises after its
    own 500), so a client reusing it had its next request reset."""
    async with environment(db_url) as env:
        ctx = context(env, extra_routes=[Route("/boom", _boom)])
        async with serve(create_app(ctx)) as base:
            host, port = base.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                tok = issue_token(JWT_SECRET, tenant_id="acme", user_id="u", role="ADMIN", ttl_s=60)
                got = [
                    await _exchange(reader, writer, "/api/chats", None),
                    await _exchange(reader, writer, "/api/nothing", tok),
                    await _exchange(reader, writer, "/api/chats?limit=%C2%B2", tok),
                    await _exchange(reader, writer, "/boom", tok),
                    await _exchange(reader, writer, "/healthz", None),
                ]
            finally:
                writer.close()
    assert [status for status, _, _ in got] == [401, 404, 422, 500, 200]
    assert got[3][2] == {"error": "internal error"}
    assert all(headers.get("connection") != "close" for _, headers, _ in got)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, tok: str | None
) -> tuple[int, dict[str, str], Any]:
    """One HTTP/1.1 request on the open connection; its status, headers and JSON body."""
    auth = f"Authorization: Bearer {tok}\r\n" if tok else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: wasync\r\n{auth}\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(
            (k.strip().lower(), v.strip()) for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)
        )
        body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, json.loads(body)
