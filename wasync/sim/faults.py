"""Fault injection and request counting for the simulators, as Starlette (pure ASGI) middleware.

A `Faults` object belongs to one simulator and can be changed while it serves: a failure `rate`
drawn from its own RNG, and/or an explicit queue of next faults. Faults happen in front of the
provider logic (like a proxy or an overloaded server would), so client code is never patched.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FAULT_KINDS = ("500", "502", "503", "429", "slow", "truncated", "reset")
UNMATCHED = "<unmatched>"


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure.

    `kind`: `500`/`502`/`503` (error answer), `429` (with `Retry-After: retry_after_s`), `slow`
    (wait `delay_s`, then handle the request: a client that gave up meanwhile does not stop
    it, as it does not stop WAHA or Evolution, and a send still stores its message; the answer
    is lost), `truncated` (the real answer cut in half, with a
    matching Content-Length), `reset` (the connection drops before a complete answer).
    `route` limits a queued fault to one route name (None: the next request, whatever it is).
    """

    kind: str
    retry_after_s: int = 1
    delay_s: float = 5.0
    route: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; expected one of {FAULT_KINDS}")


class SimulatedReset(httpx.RemoteProtocolError):
    """Raised by the `reset` fault: what httpx raises when a server drops the connection.

    Over uvicorn the response head is already sent, so the client sees a body cut at 0 bytes;
    through `httpx.ASGITransport` this exception reaches the client itself.
    """


class Faults:
    """The runtime-settable fault plan of one simulator.

    Attributes may be changed at any time: `rate` (0.0-1.0, chance that a request fails),
    `kinds` (what a rate-drawn fault is), `routes` (route names faults apply to; None = all),
    `retry_after_s` and `slow_s` (parameters of rate-drawn `429` and `slow` faults).
    `injected` counts the faults served, by kind.
    """

    def __init__(
        self,
        *,
        rate: float = 0.0,
        kinds: Sequence[str] = ("500", "502", "503", "429"),
        seed: int = 0,
        rng: random.Random | None = None,
        routes: Iterable[str] | None = None,
        retry_after_s: int = 1,
        slow_s: float = 5.0,
    ) -> None:
        for kind in kinds:
            Fault(kind)
        self.rate = rate
        self.kinds = tuple(kinds)
        self.rng = rng or random.Random(seed)
        self.routes = frozenset(routes) if routes is not None else None
        self.retry_after_s = retry_after_s
        self.slow_s = slow_s
        self.queue: deque[Fault] = deque()
        self.injected: Counter[str] = Counter()

    def push(self, *faults: Fault | str) -> None:
        """Queue faults for the next matching requests, in order."""
        for item in faults:
            self.queue.append(Fault(item) if isinstance(item, str) else item)

    def clear(self) -> None:
        """Back to a healthy server: empty queue, rate 0."""
        self.queue.clear()
        self.rate = 0.0

    def draw(self, route: str) -> Fault | None:
        """The fault for a request to `route`, if any (queued faults first, then the rate)."""
        if self.routes is not None and route not in self.routes:
            return None
        fault = self._from_queue(route)
        if fault is None and self.rate > 0 and self.kinds and self.rng.random() < self.rate:
            kind = self.rng.choice(self.kinds)
            fault = Fault(kind, retry_after_s=self.retry_after_s, delay_s=self.slow_s)
        if fault is not None:
            self.injected[fault.kind] += 1
        return fault

    def _from_queue(self, route: str) -> Fault | None:
        for index, fault in enumerate(self.queue):
            if fault.route is None or fault.route == route:
                del self.queue[index]
                return fault
        return None


def route_name(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The name of the route a request will reach (method included), else `<unmatched>`."""
    return route_match(routes, scope)[0]


def route_match(routes: Sequence[BaseRoute], scope: Scope) -> tuple[str, dict[str, Any]]:
    """The route's name and its path parameters (`{"session": "default"}`)."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "name", UNMATCHED)), dict(child.get("path_params", {}))
    return UNMATCHED, {}


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """One request as the simulator received it: when (`time.monotonic()`), which route, its
    path parameters (the session or instance), and the `X-Wasync-Node` that sent it."""

    at: float
    route: str
    params: dict[str, Any] = field(default_factory=dict)
    node: str | None = None

    @property
    def target(self) -> str | None:
        """The session (WAHA) or instance (Evolution) named in the path, if any."""
        value = self.params.get("session") or self.params.get("instance")
        return str(value) if value is not None else None


_HTML = {
    502: b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    b"</h1></center><hr><center>nginx</center></body></html>\n",
    503: b"<html><head><title>503 Service Temporarily Unavailable</title></head><body><center>"
    b"<h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body>"
    b"</html>\n",
}


class FaultMiddleware:
    """Counts requests per route name and injects the faults a `Faults` plan draws.

    502/503 answer like the nginx in front of most deployments (HTML); 500 and 429 use the
    provider's JSON error shape from `error_body(status)`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        faults: Faults,
        requests: Counter[str],
        routes: Sequence[BaseRoute],
        error_body: Callable[[int], dict[str, Any]],
        log: deque[RequestRecord] | None = None,
    ) -> None:
        self.app = app
        self.faults = faults
        self.requests = requests
        self.log = log
        self.routes = routes
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name, params = route_match(self.routes, scope)
        self.requests[name] += 1
        if self.log is not None:
            node = dict(scope.get("headers") or []).get(b"x-wasync-node")
            self.log.append(
                RequestRecord(
                    at=time.monotonic(),
                    route=name,
                    params=params,
                    node=node.decode("latin-1") if node else None,
                )
            )
        fault = self.faults.draw(name)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.kind == "slow":
            await self._slow(fault.delay_s, scope, receive, send)
        elif fault.kind == "truncated":
            await self._truncated(scope, receive, send)
        elif fault.kind == "reset":
            await _reset(send)
        else:
            await self._error(fault, send)

    async def _error(self, fault: Fault, send: Send) -> None:
        status = int(fault.kind)
        headers = [(b"content-type", b"application/json; charset=utf-8")]
        if status in _HTML:
            body = _HTML[status]
            headers = [(b"content-type", b"text/html")]
        else:
            body = json.dumps(self.error_body(status), separators=(",", ":")).encode()
        if status == 429:
            headers.append((b"retry-after", str(fault.retry_after_s).encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _slow(self, delay_s: float, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle the request after `delay_s`, whether or not the client is still there: WAHA
        and Evolution run a handler to its end when its client disconnects (a big video's
        conversion, a WEBJS upload), so a send the client timed out on still goes out. The
        answer goes to a client that is still there, else nowhere."""
        buffered: list[Message] = []
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return
                buffered.append(message)

        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.sleep(delay_s)
        finally:
            watcher.cancel()

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        async def answer(message: Message) -> None:
            if not gone.is_set():
                await send(message)

        await self.app(scope, replay, answer)

    async def _truncated(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The real answer with its body cut in half (and a Content-Length that matches)."""
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        cut = body[: len(body) // 2]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        status = start.get("status", 200)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": cut})


async def _reset(send: Send) -> None:
    """Drop the connection: announce a body, then fail before sending it."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"1024")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    raise SimulatedReset("simulated connection reset (wasync.sim fault)")
