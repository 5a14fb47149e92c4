"""`wasync.httpclient`: httpx's API over aiohttp's pool, against real loopback servers that
answer, stall, drop or cut their answers. What matters most is the error a failure becomes:
only a request that never left may be called "not sent" (a send is retried on it), anything
after the request went out leaves the outcome unknown."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest

from wasync.errors import SendOutcomeUnknown, SessionNotWorking, TransientProviderError
from wasync.httpclient import READ_AT_ONCE, AiohttpTransport, client
from wasync.providers.http import Http, RetryPolicy
from wasync.providers.sending import post_once

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=5)


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One HTTP/1.1 request: its request line, headers (lower-case names) and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *fields = head.decode().split("\r\n")[:-2]
    headers = {k.lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


def answer(body: bytes, *, status: int = 200, extra: str = "", length: int | None = None) -> bytes:
    """An HTTP/1.1 answer; `length` may lie about the body's size."""
    size = len(body) if length is None else length
    head = f"HTTP/1.1 {status} OK\r\nContent-Length: {size}\r\n{extra}\r\n"
    return head.encode() + body


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server running `handler` per connection: its URL and the connections made."""
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        srv.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with what it received, as JSON, gzipped."""
    while True:
        line, headers, body = await read_request(reader)
        doc = {"line": line, "headers": headers, "body": body.decode()}
        writer.write(
            answer(gzip.compress(json.dumps(doc).encode()), extra="Content-Encoding: gzip\r\n")
        )
        await writer.drain()


async def test_requests_and_answers_pass_through_and_the_connection_is_reused():
    async with (
        server(echo) as (url, connections),
        client(limits=LIMITS, headers={"X-Node": "n1"}) as c,
    ):
        first = await c.post(
            f"{url}/api/send?x=1&y=d%C3%A1", json={"text": "olá"}, headers={"X-Api-Key": "k"}
        )
        second = await c.get(f"{url}/api/chats", params={"limit": 2})
    assert first.status_code == 200 and first.http_version == "HTTP/1.1"
    doc = first.json()  # gzip decoded by httpx
    assert doc["line"] == "POST /api/send?x=1&y=d%C3%A1 HTTP/1.1"
    assert doc["headers"]["x-api-key"] == "k" and doc["headers"]["x-node"] == "n1"
    assert doc["headers"]["content-type"] == "application/json"
    assert json.loads(doc["body"]) == {"text": "olá"}
    assert second.json()["line"] == "GET /api/chats?limit=2 HTTP/1.1"
    assert len(connections) == 1  # kept alive


async def test_http_calls_over_aiohttp_send_what_httpx_sends():
    """`Http`'s JSON calls go straight over aiohttp (`httpclient.fetcher`): the same request line,
    query, headers and body as through httpx's own transport, the gzipped answer decoded."""
    params = {"chatId": "5531988887777@c.us", "limit": 2, "downloadMedia": False, "q": "dá é"}
    body = {"text": "olá", "n": [1, 2.5], "none": None}
    seen: dict[str, list[dict[str, object]]] = {}
    async with server(echo) as (url, _):
        for kind, transport in (("aiohttp", None), ("httpx", httpx.AsyncHTTPTransport())):
            async with client(transport, limits=LIMITS, headers={"X-Wasync-Node": "n1"}) as c:
                http = Http(c, url, headers={"X-Api-Key": "k"})
                seen[kind] = [
                    await http.get("/api/default/chats/overview", params=params),
                    await http.post("/chat/findChats/vendas", body),
                    await http.call("PUT", "/api/sessions/default", json={"config": {}}),
                ]
    for fast, slow in zip(seen["aiohttp"], seen["httpx"], strict=True):
        for doc in (fast, slow):
            doc["headers"].pop("accept-encoding")  # type: ignore[attr-defined]
        assert fast == slow
    first = seen["aiohttp"][0]
    assert first["line"] == (
        "GET /api/default/chats/overview?chatId=5531988887777%40c.us&limit=2"
        "&downloadMedia=false&q=d%C3%A1+%C3%A9 HTTP/1.1"
    )
    assert first["headers"]["x-api-key"] == "k" and first["headers"]["x-wasync-node"] == "n1"
    assert json.loads(seen["aiohttp"][1]["body"]) == body  # type: ignore[arg-type]


async def test_no_user_agent_is_added_to_calls_whose_client_has_none():
    """httpx sends the user agent its client has, and none once it was removed; over aiohttp
    (both paths) no `aiohttp` agent is added in its place."""
    seen: list[dict[str, str]] = []
    async with server(echo) as (url, _):
        for removed in (False, True):
            async with client(limits=LIMITS) as c:
                if removed:
                    del c.headers["user-agent"]
                http = Http(c, url, headers={"X-Api-Key": "k"})
                seen.append((await http.get("/api/sessions"))["headers"])  # type: ignore[index]
                seen.append((await c.get(f"{url}/api/files/a.jpg")).json()["headers"])
    assert [h.get("user-agent", "").split("/")[0] for h in seen] == [
        "python-httpx",
        "python-httpx",
        "",
        "",
    ]


async def test_no_cookie_a_provider_sets_travels_with_later_requests():
    """One client serves every tenant's sessions: a cookie a provider sets is not kept,
    neither on `Http`'s path nor on httpx's (sends, media)."""
    cookies: list[str | None] = []

    async def sets_cookie(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _line, headers, _body = await read_request(reader)
            cookies.append(headers.get("cookie"))
            writer.write(answer(b"{}", extra="Set-Cookie: sid=tenant-a; Path=/\r\n"))
            await writer.drain()

    async with server(sets_cookie) as (url, _), client(limits=LIMITS) as c:
        url = url.replace("127.0.0.1", "localhost")  # a jar takes no cookie from an address
        http = Http(c, url, headers={})
        await http.get("/a")
        await http.get("/b")
        await c.post(f"{url}/c", json={})
        await c.post(f"{url}/d", json={})
    assert cookies == [None, None, None, None]


@pytest.mark.parametrize("fault", ["refused", "drop", "stall", "cut"])
async def test_http_errors_over_aiohttp_are_the_errors_over_httpx(fault: str):
    """A failed JSON call is the same `TransientProviderError`, naming the same httpx error,
    over aiohttp (`httpclient.fetcher`) as over httpx's own transport."""

    async def misbehave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if fault == "stall":
            await asyncio.sleep(30)
        elif fault == "cut":
            writer.write(answer(b"x" * 10, length=100))
            await writer.drain()

    messages = []
    async with AsyncExitStack() as stack:
        if fault == "refused":
            async with server(misbehave) as (url, _):
                pass  # closed: nothing listens on its port any more
        else:
            url, _ = await stack.enter_async_context(server(misbehave))
        for transport in (None, httpx.AsyncHTTPTransport()):
            async with client(transport, limits=LIMITS) as c:
                http = Http(c, url, headers={}, retry=RetryPolicy(attempts=1), timeout_s=0.3)
                with pytest.raises(TransientProviderError) as caught:
                    await http.get("/api/sessions/default")
                messages.append(str(caught.value))
    expected = {
        "refused": "GET /api/sessions/default: ConnectError",
        "drop": "GET /api/sessions/default: RemoteProtocolError",
        "stall": "GET /api/sessions/default: timed out",
        "cut": "GET /api/sessions/default: RemoteProtocolError",
    }
    assert messages == [expected[fault]] * 2


async def test_a_large_answer_is_streamed_whole():
    blob = bytes(range(256)) * (3 * READ_AT_ONCE // 256)

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(blob))
        await writer.drain()

    async with server(big) as (url, _), client(limits=LIMITS) as c:
        async with c.stream("GET", f"{url}/media") as resp:
            got = b"".join([chunk async for chunk in resp.aiter_bytes()])
        whole = await c.get(f"{url}/media")
    assert got == blob and whole.content == blob


async def test_a_refused_connection_is_a_connect_error_and_a_send_not_sent():
    async with server(echo) as (url, _):
        pass  # closed: nothing listens on its port any more
    async with client(limits=LIMITS) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(url)
        http = Http(c, url, headers={}, retry=RetryPolicy(attempts=1, backoff_s=0))
        with pytest.raises(TransientProviderError, match="not sent"):
            await post_once(http, "/api/sendText", {"text": "oi"})


async def test_a_connection_dropped_after_the_request_leaves_the_send_unknown():
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # it arrived; then the server goes away without answering

    async with server(drop) as (url, _), client(limits=LIMITS) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post(f"{url}/api/sendText", json={"text": "oi"})
        http = Http(c, url, headers={}, retry=RetryPolicy(attempts=1, backoff_s=0))
        with pytest.raises(SendOutcomeUnknown):
            await post_once(http, "/api/sendText", {"text": "oi"})


async def test_a_server_that_never_answers_is_a_read_timeout_and_a_send_unknown():
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with server(stall) as (url, _), client(limits=LIMITS) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(url, timeout=httpx.Timeout(0.3))
        http = Http(c, url, headers={}, timeout_s=0.3)
        with pytest.raises(SendOutcomeUnknown):
            await post_once(http, "/api/sendText", {"text": "oi"})


EVOLUTION_500 = {"status": 500, "error": "Internal Server Error", "response": {"message": "x"}}


@pytest.mark.parametrize(
    ("status", "body", "error", "match"),
    [
        # Evolution's number check runs before the send and throws Baileys' Boom: a 500.
        (500, {**EVOLUTION_500, "response": {"message": "Connection Closed"}},
         SessionNotWorking, "Connection Closed"),
        (400, {"status": 400, "error": "Bad Request",
               "response": {"message": ["Error: Connection Closed"]}},
         SessionNotWorking, "Connection Closed"),
        (500, EVOLUTION_500, TransientProviderError, "not sent"),
        (500, {"statusCode": 500, "message": "Internal server error"},
         SendOutcomeUnknown, "outcome unknown"),
        (201, {"key": {"id": "3EB0"}, "message": {"conversation": "Connection closed?"}},
         None, ""),
    ],
)  # fmt: skip
async def test_what_a_send_answer_says_about_the_send(
    status: int, body: dict[str, object], error: type[Exception] | None, match: str
):
    """ "Connection Closed" in an error answer, whatever its status, is a session that is
    down; Evolution's own 500 came before the send (not sent); any other 500 leaves it
    unknown; an accepted send whose text says "connection closed" is accepted."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(json.dumps(body).encode(), status=status))
        await writer.drain()

    async with server(reply) as (url, _), client(limits=LIMITS) as c:
        http = Http(c, url, headers={}, retry=RetryPolicy(attempts=1, backoff_s=0))
        if error is None:
            assert await post_once(http, "/message/sendText/evo", {"text": "oi"}) == body
            return
        with pytest.raises(error, match=match):
            await post_once(http, "/message/sendText/evo", {"text": "oi"})


@pytest.mark.parametrize("size", [100, 2 * READ_AT_ONCE])
async def test_an_answer_cut_short_is_a_protocol_error(size: int):
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"x" * 10, length=size))
        await writer.drain()

    async with server(cut) as (url, _), client(limits=LIMITS) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(url)
        http = Http(c, url, headers={}, retry=RetryPolicy(attempts=1, backoff_s=0))
        with pytest.raises(TransientProviderError):
            await http.get("/")


async def test_waiting_for_a_free_connection_is_a_pool_timeout_not_sent():
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        arrived.set()
        await release.wait()
        writer.write(answer(b"{}"))
        await writer.drain()

    one = httpx.Limits(max_connections=1)
    async with server(slow) as (url, connections), client(limits=one) as c:
        busy = asyncio.create_task(c.get(url))
        await asyncio.wait_for(arrived.wait(), 60)
        http = Http(c, url, headers={}, timeout_s=5)
        http.timeout = httpx.Timeout(5, pool=0.2)
        with pytest.raises(TransientProviderError, match="not sent"):
            await post_once(http, "/api/sendText", {"text": "oi"})
        release.set()
        assert (await busy).status_code == 200
    assert len(connections) == 1  # the waiting send never reached the server


async def test_a_streamed_upload_is_framed_by_the_transport():
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"ab", b"cd", b"ef"):
            yield part

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = b""
        if b"transfer-encoding: chunked" in head.lower():
            while (size := int((await reader.readline()).strip(), 16)) != 0:
                body += await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        writer.write(answer(body))
        await writer.drain()

    async with server(chunked) as (url, _), client(limits=LIMITS) as c:
        resp = await c.post(url, content=parts())
    assert resp.content == b"abcdef"


async def test_a_given_transport_is_used_as_it_is():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"ok": True})

    async with client(httpx.MockTransport(handler), limits=LIMITS) as c:
        assert not isinstance(c._transport, AiohttpTransport)
        assert (await c.get("http://provider.test/x")).json() == {"ok": True}
    assert seen == ["http://provider.test/x"]


@pytest.mark.parametrize("failures", [0, 1, 2, 3])
async def test_transient_answers_are_retried_up_to_the_policy(failures: int):
    """503 and 429 answers are tried again, `attempts` times in all (the first try runs
    outside tenacity, and a failure of it counts as tenacity's first)."""
    seen: list[str] = []

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, _headers, _body = await read_request(reader)
            seen.append(line)
            if len(seen) <= failures:
                status, extra = (503, "") if len(seen) % 2 else (429, "Retry-After: 0\r\n")
                writer.write(answer(b"busy", status=status, extra=extra))
            else:
                writer.write(answer(b'{"ok": true}'))
            await writer.drain()

    async with server(flaky) as (url, _), client(limits=LIMITS) as c:
        http = Http(c, url, headers={}, retry=RetryPolicy(attempts=3, backoff_s=0))
        if failures < 3:
            assert await http.get("/api/sessions/default") == {"ok": True}
        else:
            with pytest.raises(TransientProviderError, match="HTTP 503"):
                await http.get("/api/sessions/default")
    assert len(seen) == http.requests == min(failures + 1, 3)
