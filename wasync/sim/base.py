"""Shared by both simulators: the `Simulator` base, the Starlette app with its error shape,
records of what clients sent, webhook delivery with retries, and `serve()` for loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from wasync.api.server import serve as serve_app
from wasync.sim.content import Content, media
from wasync.sim.content import text as text_content
from wasync.sim.directory import Directory, digits_of
from wasync.sim.faults import FaultMiddleware, Faults, RequestRecord

Json = dict[str, Any]


class SimError(Exception):
    """An error answer with a provider-shaped JSON body, raised from a simulator endpoint."""

    def __init__(self, status: int, body: Any, *, headers: Mapping[str, str] | None = None):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _sim_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SimError)
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def build_app(
    routes: Sequence[BaseRoute],
    *,
    faults: Faults,
    requests: Counter[str],
    error_body: Callable[[int], Json],
    not_found: Callable[[Request], Json],
    log: deque[RequestRecord] | None = None,
) -> Starlette:
    """A simulator app: routes behind the fault/counting middleware (and its request log),
    provider-shaped errors."""

    def unknown_route(request: Request, _exc: Exception) -> Response:
        return JSONResponse(not_found(request), status_code=404)

    return Starlette(
        routes=list(routes),
        middleware=[
            Middleware(
                FaultMiddleware,
                faults=faults,
                requests=requests,
                routes=list(routes),
                error_body=error_body,
                log=log,
            )
        ],
        exception_handlers={SimError: _sim_error_handler, 404: unknown_route, 405: unknown_route},
    )


async def read_json(request: Request, bad_request: Callable[[str], SimError]) -> Any:
    """The request's JSON body, or the provider's 400 when it is not JSON."""
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise bad_request(f"Unexpected token in JSON: {exc}") from None


def compact_json(value: Any) -> bytes:
    """JSON as `JSON.stringify` writes it: no spaces, UTF-8, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def version_tuple(version: str) -> tuple[int, ...]:
    """The numeric parts of a dotted version, to compare it with a release (`(2026, 6, 1)`)."""
    return tuple(int(p) for p in version.split(".") if p.isdigit())


@dataclass(slots=True, kw_only=True)
class SentRequest:
    """One send request a client made (`route`, target session/instance, body as received)."""

    route: str
    target: str
    body: Any
    status: int = 0
    message_id: str | None = None
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryAttempt:
    """One POST of a webhook delivery; `status` is None when the request itself failed."""

    url: str
    attempt: int
    status: int | None
    error: str | None
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """The outcome of delivering one event to one URL, after retries."""

    url: str
    ok: bool
    attempts: int
    status: int | None
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


async def post_with_retries(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    max_attempts: int,
    delay_s: Callable[[int], float],
    retryable: Callable[[int], bool],
    log: list[DeliveryAttempt],
) -> Delivery:
    """POST `body` until a 2xx, a non-retryable status, or `max_attempts` tries.

    `delay_s(n)` is the wait after failed attempt `n` (1-based); network errors are retried.
    """
    status: int | None = None
    attempt = 0
    for attempt in range(1, max_attempts + 1):
        error: str | None = None
        try:
            response = await http.post(url, content=body, headers=dict(headers))
            status = response.status_code
        except httpx.TransportError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        log.append(
            DeliveryAttempt(
                url=url, attempt=attempt, status=status, error=error, headers=headers, body=body
            )
        )
        if status is not None and (200 <= status < 300 or not retryable(status)):
            break
        wait = delay_s(attempt)
        if attempt < max_attempts and wait > 0:
            await asyncio.sleep(wait)
    ok = status is not None and 200 <= status < 300
    return Delivery(url=url, ok=ok, attempts=attempt, status=status, body=body, headers=headers)


class Simulator:
    """What both simulators hold: the RNG, the clock, the client `deliver()` posts with, who is
    on WhatsApp, the fault plan, and what clients asked (`requests` by route, `request_log` one
    record each, the newest 100,000, `sends`) and got (`deliveries`). A subclass builds `.app`
    from its routes with `_build_app`."""

    _app: Starlette

    def __init__(
        self,
        *,
        seed: int,
        http: httpx.AsyncClient | None,
        clock: Callable[[], float],
        faults: Faults | None,
    ) -> None:
        self.http = http
        self.clock = clock
        self.rng = random.Random(seed)
        self.faults = faults or Faults(seed=seed)
        self.directory = Directory()
        self.requests: Counter[str] = Counter()
        self.request_log: deque[RequestRecord] = deque(maxlen=100_000)
        self.sends: list[SentRequest] = []
        self.deliveries: list[DeliveryAttempt] = []
        # Sessions (instances) whose webhooks stopped firing while the session stays WORKING
        # and messages keep landing in its store (WAHA #1717/#2151, Evolution #2647/#2665).
        self.muted: set[str] = set()

    def add_message(
        self,
        target: str,
        chat: str,
        content: Content,
        *,
        from_me: bool = False,
        ts: int | None = None,
        sender: str | None = None,
        push_name: str | None = None,
        ack: int | None = None,
        message_id: str | None = None,
        device: str | None = None,
    ) -> str:
        """Store a message in `chat` of session (instance) `target`; returns its id as the
        provider shows it. Each simulator stores it in its provider's shape."""
        raise NotImplementedError

    def add_incoming(
        self,
        target: str,
        chat: str,
        *,
        text: str,
        ts: int | None = None,
        sender: str | None = None,
        push_name: str | None = None,
    ) -> str:
        """Append a text message someone sent us; returns its id (WAHA's `id`, Evolution's
        `key.id`)."""
        return self.add_message(
            target, chat, text_content(text), ts=ts, sender=sender, push_name=push_name
        )

    def add_incoming_media(
        self,
        target: str,
        chat: str,
        *,
        kind: str = "image",
        caption: str | None = None,
        filename: str | None = None,
        mimetype: str | None = None,
        ts: int | None = None,
        sender: str | None = None,
    ) -> str:
        """Append a media message someone sent us (image, video, audio, voice, document,
        sticker); returns its id."""
        content = media(kind, caption=caption, filename=filename, mimetype=mimetype)
        return self.add_message(target, chat, content, ts=ts, sender=sender)

    def mute_webhooks(self, session: str, muted: bool = True) -> None:
        """Stop (or, `muted=False`, resume) firing the webhooks of `session`: `deliver()`
        sends nothing and records no attempt, while the session keeps answering as before."""
        if muted:
            self.muted.add(session)
        else:
            self.muted.discard(session)

    def _build_app(
        self,
        routes: Sequence[BaseRoute],
        *,
        error_body: Callable[[int], Json],
        not_found: Callable[[Request], Json],
    ) -> None:
        self._app = build_app(
            routes,
            faults=self.faults,
            requests=self.requests,
            error_body=error_body,
            not_found=not_found,
            log=self.request_log,
        )

    @property
    def app(self) -> Starlette:
        """The ASGI app serving the provider's API."""
        return self._app

    @property
    def requests_total(self) -> int:
        """All requests received, whatever the route."""
        return sum(self.requests.values())

    def mark_absent(self, phone: str) -> None:
        """Make a number "not on WhatsApp" (both Brazilian forms) for the number checks."""
        self.directory.mark_absent(digits_of(phone))

    def webhook_client(self, http: httpx.AsyncClient | None) -> httpx.AsyncClient:
        """The client a delivery posts with: `http` when given, else the simulator's own."""
        client = http or self.http
        if client is None:
            name = type(self).__name__
            raise RuntimeError(f"{name}.deliver needs an httpx.AsyncClient (http=...)")
        return client

    @contextlib.contextmanager
    def record_send(self, route: str, target: str, body: Any) -> Iterator[SentRequest]:
        """Record a send request in `sends`; a `SimError` raised inside becomes its status."""
        record = SentRequest(route=route, target=target, body=body)
        self.sends.append(record)
        try:
            yield record
        except SimError as exc:
            record.status = exc.status
            raise


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, shutdown_timeout_s: int = 2
) -> AsyncIterator[str]:
    """Serve a simulator on a loopback port (no WebSocket); yields the base URL."""
    async with serve_app(
        app, host=host, port=port, ws="none", shutdown_timeout_s=shutdown_timeout_s
    ) as url:
        yield url
