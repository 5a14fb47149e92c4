"""The HTTP client of the long-running paths (the daemon's polls, sends and media, `wasync
backfill`): `httpx.AsyncClient`'s API over an aiohttp connection pool (`AiohttpTransport`).

httpx's own pool (httpcore 1.0) walks every pooled connection twice per request, asking each
socket whether it is readable, and imports `sniffio` on every request: with the hundred
keep-alive connections a thousand polled sessions keep open, a GET cost 2-3 ms of CPU
(`scripts/bench_http_client.py`); over aiohttp's pool the same GET costs a fifth of that. The
rest of wasync keeps speaking httpx (requests, responses, errors), and tests still hand the
daemon an `httpx` transport of their own (a simulator's ASGI app, a mock).

`httpx-aiohttp` does the same, but maps aiohttp's errors in a way a send cannot live with: a
read timeout or a connection dropped after the request went out becomes `ConnectTimeout`,
which says "never sent" (`wasync.providers.sending`), so the message would be sent twice. Here
only what fails before a byte is written is a connect error; everything after it is a read,
protocol or timeout error, whose outcome is unknown.

The JSON calls of `wasync.providers.http.Http` (every poll, state check and read) go further:
`fetcher` hands them to aiohttp directly and answers an `Answer` (status, headers, the
body read whole), skipping httpx's request and response models, its URL merging and its
cookie jar, which cost as much CPU again as the request itself. The URL, query, headers and
JSON body are the bytes httpx would send, and errors are the same httpx errors. No cookies are
kept on either path: one client serves every tenant's sessions, and a cookie one provider sets
must not travel with another session's requests.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from json import dumps
from typing import Any, Protocol

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

# Bodies up to this size (by Content-Length) are read with the answer; larger or unsized ones
# are streamed (media downloads).
READ_AT_ONCE = 1 << 20
# aiohttp adds its own User-Agent to a request without one: httpx sends what it is told.
SKIP_AUTO_HEADERS = ("User-Agent",)
CHUNK = 256 * 1024

# Most specific first: the first class that matches names the httpx error.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # connecting, or waiting for the pool
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS: nothing was sent
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # a body cut short
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # an answer that is not HTTP
    (aiohttp.ClientConnectionError, httpx.ReadError),  # reset or broken after connecting
    (aiohttp.ClientError, httpx.TransportError),
    (TimeoutError, httpx.ReadTimeout),
)


@contextmanager
def _mapped(request: httpx.Request | None) -> Iterator[None]:
    """aiohttp's errors as the httpx errors they mean (see the module docstring)."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        for cause, error in _ERRORS:
            if isinstance(exc, cause):
                raise error(f"{type(exc).__name__}: {exc}", request=request) from exc
        raise  # pragma: no cover  (ClientError is the last class but one)


class _Body(httpx.AsyncByteStream):
    """A streamed answer's body; closing it returns the connection to the pool."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request):
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport over one `aiohttp.ClientSession` (made on first use, on the running
    loop): no redirects, no decompression (httpx decodes), httpx's timeouts and limits."""

    def __init__(self, limits: httpx.Limits | None = None) -> None:
        self.limits = limits or httpx.Limits()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        limits = self.limits
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry or 0,
            ssl=httpx.create_ssl_context(),  # httpx's trust store (certifi), on first use
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # see the module docstring
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session, opened on first use."""
        if self._session is None:
            self._session = self._open()
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self.session
        timeout = request.extensions.get("timeout", {})
        try:
            data: bytes | httpx.AsyncByteStream | None = request.content or None
        except httpx.RequestNotRead:  # a streamed upload; aiohttp frames it itself
            data = request.stream  # type: ignore[assignment]
            request.headers.pop("transfer-encoding", None)
        with _mapped(request):
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                compress=None,
                timeout=_timeout(timeout),
                skip_auto_headers=SKIP_AUTO_HEADERS,
            )
            size = response.content_length
            stream: httpx.AsyncByteStream
            if size is not None and size <= READ_AT_ONCE:
                try:
                    stream = httpx.ByteStream(await response.read())
                finally:
                    response.release()
            else:
                stream = _Body(response, request)
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _timeout(timeout: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's timeouts (`httpx.Timeout.as_dict()`) as aiohttp's."""
    return aiohttp.ClientTimeout(
        connect=timeout.get("pool"),
        sock_connect=timeout.get("connect"),
        sock_read=timeout.get("read"),
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer read whole, with the attributes of `httpx.Response` that
    `wasync.providers.http.decode` reads."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes

    @property
    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.content.decode("utf-8", "replace")


class Client(httpx.AsyncClient):
    """`httpx.AsyncClient` whose aiohttp transport `fetcher` can reach (see the module
    docstring)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._aiohttp = transport if isinstance(transport, AiohttpTransport) else None


def fetcher(
    client: httpx.AsyncClient, *, headers: Mapping[str, str], timeout: httpx.Timeout
) -> Fetch:
    """One JSON call's `request(method, url, params=, json=)` with these headers and timeout:
    over aiohttp directly when it is `client`'s transport, answering an `Answer`, the headers
    merged and the timeout converted once (a provider's `Http` makes every call with the same
    ones); else `client.request`, answering httpx's response."""
    aio = client._aiohttp if isinstance(client, Client) else None
    if aio is None:
        return functools.partial(client.request, headers=headers, timeout=timeout)
    sent = dict(client.headers)  # the client's defaults (lower-case names), then the call's
    sent["accept-encoding"] = "gzip, deflate"  # what aiohttp decodes
    sent.update((k.lower(), v) for k, v in headers.items())
    # As multidicts, which aiohttp takes as they are; and when httpx's user agent is there (it
    # always is unless a caller removed it), nothing for aiohttp to skip: its check for
    # headers to skip builds two multidicts per request.
    plain, with_json = CIMultiDict(sent), CIMultiDict(sent)
    with_json["content-type"] = "application/json"
    skip = None if "user-agent" in sent else SKIP_AUTO_HEADERS
    return _Fetch(aio, plain, with_json, skip, _timeout(timeout.as_dict()))


class Fetch(Protocol):
    """What `fetcher` returns."""

    async def __call__(
        self, method: str, url: str, *, params: Mapping[str, Any] | None = ..., json: Any = ...
    ) -> Answer | httpx.Response: ...


@dataclass(frozen=True, slots=True)
class _Fetch:
    """One JSON call straight over aiohttp, with the bytes httpx would send."""

    transport: AiohttpTransport
    headers: CIMultiDict[str]
    json_headers: CIMultiDict[str]  # `headers` and the JSON body's content type
    skip_auto_headers: tuple[str, ...] | None
    timeout: aiohttp.ClientTimeout

    async def __call__(
        self, method: str, url: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Answer:
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{_query(params)}"
        sent, data = self.headers, None
        if json is not None:
            data = _json_body(json)
            sent = self.json_headers
        with _mapped(None):
            async with self.transport.session.request(
                method,
                URL(url, encoded=True),
                headers=sent,
                data=data,
                allow_redirects=False,
                auto_decompress=True,
                compress=None,
                timeout=self.timeout,
                skip_auto_headers=self.skip_auto_headers,
            ) as response:
                return Answer(response.status, response.headers, await response.read())


_QUERIES: dict[tuple[tuple[str, type, Any], ...], str] = {}
_QUERIES_MAX = 1024
_PLAIN = frozenset((str, int, bool, type(None)))  # equal values of one of these encode alike


def _query(params: Mapping[str, Any]) -> str:
    """`params` encoded as httpx encodes them (`httpx.QueryParams`), remembered when every
    value is plain text, a number or a flag: a poll asks with the same few every cycle.
    Others (0.0 and -0.0 are equal, so are Decimal 1.0 and 1.00) are encoded each time."""
    if not _PLAIN.issuperset(map(type, params.values())):
        return str(httpx.QueryParams(params))
    key = tuple((k, type(v), v) for k, v in params.items())  # True == 1, "true" != "1"
    text = _QUERIES.get(key)
    if text is None:
        if len(_QUERIES) >= _QUERIES_MAX:
            _QUERIES.clear()
        text = _QUERIES[key] = str(httpx.QueryParams(params))
    return text


def _json_body(doc: Any) -> bytes:
    """A JSON body as httpx encodes one (`httpx._content.encode_json`)."""
    text = dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def client(
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    limits: httpx.Limits,
    headers: dict[str, str] | None = None,
) -> Client:
    """A `Client` over `transport`, or over aiohttp's pool when none is given; it follows no
    redirects (a provider that redirects is misconfigured, and an API key must not follow a
    redirect to another host) and keeps no cookies (see the module docstring)."""
    return Client(
        transport or AiohttpTransport(limits),
        limits=limits,
        follow_redirects=False,
        headers=headers,
        cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # keeps none
    )
