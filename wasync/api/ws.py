"""`/ws`: the event log pushed to WebSocket clients, scoped by JWT, resumable with `since`.

Protocol. Connect to `/ws` with `Authorization: Bearer <jwt>` or `?token=<jwt>`; a missing,
bad or expired token is refused before the upgrade with HTTP 401 (a bad `since`: 422). Each
text frame is one event-log row: `{"id", "type", "tenantId", "chatId", "messageId", "at",
"data", "message"?}`, ids increasing; `message` (chat:new-message) is the stored row as read
when the frame is built, so a replayed one shows later acks and edits. `?since=<id>` first
replays what the client may see after `id`, then continues live, with no gap and no duplicate.
When `since` is older than the retained log (or unknown to this database) the first frame is
`{"type": "resync", "id": ...}`: reload through REST, then carry on from that id.

Scope (`wasync.scopes.visible`, the predicate REST uses): the token's tenant only; ADMIN
every chat, USER the chats assigned to it (an assignment also reaches the user it moves away
from); `notification:*` only the notified user; of the rows without a chat, `session:status`
the whole tenant and `session:health` its ADMINs only.

Close codes: 4008 the client was too slow (its queue of `[http] ws_queue_frames` overflowed),
1001 the server is stopping, 1011 the store failed during a replay; the reason ends with
`since=<id>`: reconnect with it. Dead connections are dropped by WebSocket ping/pong
(`[http] ws_ping_interval_s`, `ws_ping_timeout_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from wasync.api.doc import Op, Param, documented
from wasync.api.guard import Problem, principal
from wasync.api.server import WRITE_TEXT
from wasync.errors import Refused, StoreUnavailable, WasyncError
from wasync.hub import Client, Hub
from wasync.metrics import Metrics
from wasync.principal import Principal
from wasync.untrusted import parse_int

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 60.0  # a peer that reads nothing is dropped sooner, by the ping timeout


def ws_routes(hub: Hub, secret: str | None, metrics: Metrics | None = None) -> list[BaseRoute]:
    """The `/ws` route; `secret` None (not configured) refuses every connection."""

    op = Op(summary="Live events (WebSocket; ?token=, ?since=)", tag="realtime", status=101,
            params=(Param(name="since", description="last event id seen", type="integer"),
                    Param(name="token", description="the JWT (browsers cannot set headers)")),
            errors=(401,))  # fmt: skip
    endpoint = _Endpoint(hub, secret, metrics or Metrics())
    return [documented(WebSocketRoute("/ws", endpoint), op)]


class _Endpoint:
    """`/ws` as a plain ASGI app (Starlette wraps a function in its own session): live frames
    go through the server's `send` itself, written by the hub (`wasync.wsclient`)."""

    def __init__(self, hub: Hub, secret: str | None, metrics: Metrics) -> None:
        self.hub, self.secret, self.metrics = hub, secret, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        await _handle(ws, send, self.hub, self.secret, self.metrics)


async def _handle(
    ws: WebSocket, send: Send, hub: Hub, secret: str | None, metrics: Metrics
) -> None:
    try:
        who = principal(ws, secret)
    except Problem:
        return await _deny(ws, 401, "missing, invalid or expired token")
    raw_since = ws.query_params.get("since")
    since = parse_int(raw_since, lo=0) if raw_since is not None else None
    if raw_since is not None and since is None:  # "²", 5,000 digits, past 64 bits
        return await _deny(ws, 422, "since must be a non-negative integer")
    client = hub.subscribe(who)
    metrics.ws_clients.inc()
    try:
        await ws.accept()
        await _Connection(ws, send, hub, client).run(since)
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(client)
        metrics.ws_clients.dec()


async def _deny(ws: WebSocket, status: int, error: str) -> None:
    """An HTTP answer instead of the upgrade (close before accept where unsupported: 403)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"error": error}, status_code=status))
    else:
        await ws.close(code=1008)


class _Connection:
    """One accepted client: replay, then live frames; closes when its hub client must."""

    def __init__(self, ws: WebSocket, send: Send, hub: Hub, client: Client) -> None:
        self.ws, self.send, self.hub, self.client = ws, send, hub, client

    async def run(self, since: int | None) -> None:
        """Until the peer leaves, or the hub closes the client, or the store fails mid-replay."""
        sender = asyncio.create_task(self._send(since))
        receiver = asyncio.create_task(_until_disconnect(self.ws))
        closing = asyncio.create_task(self.client.closing.wait())
        done, pending = await asyncio.wait(
            {sender, receiver, closing}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        # Every finished task's exception is retrieved (two can finish together: the peer
        # leaving fails the send in flight), so none is "never retrieved".
        errors = {t: t.exception() for t in done if not t.cancelled()}
        if receiver in done:
            return
        if closing in done:
            await self._close(self.client.close_code, self.client.close_reason)
            return
        exc = errors.get(sender)
        if isinstance(exc, StoreUnavailable):
            await self._close(1011, "store unavailable")
        elif isinstance(exc, WebSocketDisconnect):
            return
        elif exc is not None:
            raise exc

    async def _send(self, since: int | None) -> None:
        if since is not None:
            await self._replay(since)
        now = self.ws.scope.get("extensions", {}).get(WRITE_TEXT, {}).get("write")
        await self.client.go_live(self.send, now)

    async def _replay(self, since: int) -> None:
        """Frames in `(since, start_id]` from the log; live ones above it wait in the backlog."""
        client = self.client
        start, principal = client.start_id, client.principal
        if not await self.hub.retained(since):
            await self.ws.send_text(_resync(start, principal))
            return
        client.last_sent = since
        async for page in self.hub.history(principal, after=since, until=start):
            for frame_id, text in page:
                await self.ws.send_text(text)
                client.last_sent = frame_id
        client.last_sent = max(client.last_sent, start)

    async def _close(self, code: int, reason: str) -> None:
        """Close with `since=<resume point>` in the reason. The close is written even when
        the peer's socket is backed up (`wasync.api.server._WebSocketProtocol`); a peer that
        never reads again is left to uvicorn's close timeout."""
        await self.client.closed()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.ws.close(code, f"{reason}; since={self.client.last_sent}")


async def _until_disconnect(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass


def _resync(start_id: int, principal: Principal) -> str:
    frame = {
        "id": start_id,
        "type": "resync",
        "tenantId": principal.tenant_id,
        "chatId": None,
        "data": {"reason": "since is outside the retained event log: reload through REST"},
    }
    return json.dumps(frame, separators=(",", ":"))


# --- client: `wasync tail` ------------------------------------------------------------------


def ws_url(url: str, since: int | None) -> str:
    """`http://host:port` (or a ws:// URL) → `ws://host:port/ws[?since=N]`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "http", url
    scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    host, _, path = rest.partition("/")
    path = path.split("?")[0] or "ws"
    query = f"?since={since}" if since is not None else ""
    return f"{scheme}://{host}/{path}{query}"


async def tail(
    url: str,
    token: str,
    *,
    out: Callable[[str], None],
    since: int | None = None,
    attempts: int | None = None,
    backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
    note: Callable[[str], None] | None = None,
) -> None:
    """Hand every frame to `out`; after a drop reconnect with `since=<last id>`, forever
    (or giving up after `attempts` failures in a row), waiting a capped exponential backoff
    with jitter between tries so that many clients of a restarted daemon do not reconnect in
    step. `note` hears each reconnect. Runs until cancelled (Ctrl-C)."""
    last, failures = since, 0
    while True:
        try:
            last = await _tail_once(ws_url(url, last), token, out, last)
            failures, reason = 0, "connection closed"
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 422):  # a bad token or `since`: bad input
                raise TailRefused(f"refused with HTTP {exc.response.status_code}") from None
            reason = f"HTTP {exc.response.status_code}"
        except _Dropped as exc:  # it was open: the failure count starts again
            last, failures, reason = exc.last, 0, str(exc)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            reason = str(exc) or type(exc).__name__
        failures += 1
        if attempts is not None and failures > attempts:
            raise WasyncError(f"gave up after {attempts} reconnect attempts: {reason}")
        wait = backoff_wait(failures, backoff_s, max_backoff_s)
        if note is not None:
            note(f"{reason}; reconnecting in {wait:.1f}s")
        await asyncio.sleep(wait)


def backoff_wait(failures: int, base_s: float, cap_s: float) -> float:
    """The wait after `failures` failures in a row: exponential, capped, with "equal jitter"
    (half fixed, half random), so it never collapses to zero and never exceeds the cap."""
    ceiling = min(cap_s, base_s * 2.0 ** min(failures - 1, 32))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class TailRefused(Refused):
    """The daemon refused the token or `since` (HTTP 401 / 422): retrying will not help."""

    status = 401


class _Dropped(Exception):
    """A connection that ended after it was open (the frames so far were handed out)."""

    def __init__(self, reason: str, last: int | None) -> None:
        super().__init__(reason)
        self.last = last


async def _tail_once(
    url: str, token: str, out: Callable[[str], None], last: int | None
) -> int | None:
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with connect(url, additional_headers=headers, open_timeout=10) as conn:
            async for text in conn:
                frame_text = text if isinstance(text, str) else text.decode()
                out(frame_text)
                last = _frame_id(frame_text, last)
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
        raise _Dropped(f"closed {rcvd.code} {rcvd.reason}" if rcvd else "dropped", last) from None
    return last


def _frame_id(text: str, default: int | None) -> int | None:
    try:
        frame: Any = json.loads(text)
    except ValueError:
        return default
    value = frame.get("id") if isinstance(frame, dict) else None
    return value if isinstance(value, int) else default
