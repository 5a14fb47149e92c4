"""uvicorn inside the caller's event loop, stopped cooperatively (the owner keeps signals).

Used by the daemon for its HTTP app and by the simulators for real loopback HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from wasync import redact
from wasync.errors import ListenError


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _DenialNoise(logging.Filter):
    """Drop uvicorn's "ASGI callable returned without completing handshake." ERROR.

    uvicorn's websockets-sansio protocol logs it after every WebSocket refused with a denial
    response (wasync's 401 and 422), which the client did receive correctly: `send()` never
    marks the handshake complete (uvicorn PR #3138, open). Alerting on ERROR would fire on
    every bad token. wasync's handlers always accept or deny, so the message carries nothing.
    """

    MESSAGE = "ASGI callable returned without completing handshake."

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.MESSAGE


def _quiet_denials() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialNoise) for f in logger.filters):
        logger.addFilter(_DenialNoise())
    # uvicorn logs each handshake with its query string: `/ws?token=<JWT>` (wasync.redact).
    for name in ("uvicorn.error", "uvicorn.access"):
        redact.install(logging.getLogger(name))


CLOSE_LINGER_S = 60.0  # how long a closed WebSocket's backlog may wait for a slow reader
# The scope extension of an accepted WebSocket whose "write" is `_WebSocketProtocol.write_text`.
WRITE_TEXT = "wasync.websocket.write_text"
_encoded: tuple[str, bytes] = ("", b"")  # the frame `write_text` wrote last, as UTF-8


class _WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, except that a close is written at once even when
    the peer has stopped reading.

    uvicorn's `send()` first waits until the transport is writable, a close included; for a
    client whose socket is backed up (the one wasync closes with 4008 because its queue
    overflowed) that wait outlasts the keepalive: the ping timeout drops the connection with
    1011 and the 4008 never leaves (websockets_sansio_impl `send`, `keepalive_timeout`).
    Written now, the close frame waits behind the backlog in the transport, the ping timeout
    stands down (`close_sent`), and a client that reads again gets its frames, then 4008
    with `since=<id>`. Nothing else may be sent after a close, so the writable flag this sets
    early guards nothing else.
    """

    def handle_connect(self, event: Any) -> None:
        """Accept or refuse the handshake as uvicorn does; an accepted connection's scope
        offers `write_text` to the app (extension `WRITE_TEXT`)."""
        super().handle_connect(event)
        if not self.close_sent:  # the ASGI app starts on the next loop turn: in time
            self.scope["extensions"][WRITE_TEXT] = {"write": self.write_text}  # type: ignore[index]

    def write_text(self, text: str) -> bool:
        """Write a text frame now, as `send({"type": "websocket.send", "text": text})` does
        when it need not wait, without an ASGI message and the coroutines around it (the hub
        writes every live frame of every client: a bare `websockets.broadcast` does the
        same). False, with nothing written, when that send would wait or fail: the caller
        sends it the ASGI way then (a paused transport, a closing or lost connection)."""
        if (
            not self.writable.is_set()
            or self.disconnected
            or not self.handshake_complete
            or self.close_sent
            or self.initial_response is not None
        ):
            return False
        global _encoded
        encoded = _encoded
        if encoded[0] is not text:  # the hub offers one frame to every client in turn
            encoded = _encoded = (text, text.encode())
        try:
            self.conn.send_text(encoded[1])
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """As uvicorn's; the scope lets go of `write_text` (a cycle through the protocol)."""
        super().connection_lost(exc)
        extensions = getattr(self, "scope", {}).get("extensions", {})
        extensions.pop(WRITE_TEXT, None)

    async def send(self, message: Any) -> None:
        """Send an ASGI message; a close does not wait for the peer to read."""
        closing = message["type"] == "websocket.close" and self.handshake_complete
        if closing:
            self.writable.set()
        await super().send(message)
        if closing and self.close_sent:
            self.loop.call_later(CLOSE_LINGER_S, self._give_up)

    def _give_up(self) -> None:
        """A peer that did not read its backlog and the close within `CLOSE_LINGER_S` never
        will: drop the connection (asyncio's close would wait for the buffer for ever)."""
        if self.transport.get_write_buffer_size() > 0:
            self.transport.abort()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop every wasync process runs on: uvloop when installed (`uvicorn[standard]`;
    measured faster on the webhook path, scripts/bench_webhook.py), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when
    # `sock.proto` says TCP (proto 0 meant Nagle + delayed ACK: +40 ms per keep-alive answer).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # several processes on one port, the kernel spreading connections
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (port 0: a free one) with SO_REUSEPORT but not listening:
    it holds the port for the processes that will listen on it (`wasync run --workers`)."""
    return _bind(host, port, reuse_port=True)


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("uvicorn stopped before it started serving")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ws: str = "websockets-sansio",
    shutdown_timeout_s: int = 2,
    reuse_port: bool = False,
    **options: Any,
) -> AsyncIterator[str]:
    """Serve `app` until the block exits; yields the base URL (`port=0` picks a free port).

    No signal handlers and no lifespan; leaving the block stops the server, cancelling
    requests still running after `shutdown_timeout_s`. `ws="websockets-sansio"` is the
    `websockets` library's current protocol implementation; `reuse_port` lets other processes
    bind the same port (`wasync run --workers`); `options` go to uvicorn.Config.
    """
    _quiet_denials()
    sock = _bind(host, port, reuse_port=reuse_port)
    config = uvicorn.Config(
        app,
        lifespan="off",
        ws=_WebSocketProtocol if ws == "websockets-sansio" else ws,  # type: ignore[arg-type]
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=shutdown_timeout_s,
        **options,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await _started(server, task)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}"
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()
