"""One real-time client of the hub: who it is, its backlog, and how a frame reaches its socket.

A live client's frame is written by the hub's fan-out itself, without a task per client: the
connection's ASGI `send` is started eagerly (run up to its first suspension, as Python 3.12's
`asyncio.eager_task_factory` does), and for a socket that accepts the bytes (uvicorn's send
only waits while the transport is paused) it finishes then and there, like a bare
`websockets.broadcast`. A send that must wait is finished by a task of the client's own, and
the frames offered meanwhile wait in a bounded backlog behind it, in id order; a backlog that
overflows closes the client (CLOSE_LAGGING): ingest never waits for a slow reader.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from wasync.principal import Principal

# Close codes a client acts on by reconnecting with `since` (the reason ends `since=<id>`).
CLOSE_LAGGING = 4008  # its backlog overflowed: it was too slow
CLOSE_GOING_AWAY = 1001  # the server is stopping
CLOSE_SEND_FAILED = 1011  # writing to its socket failed

ScopeKey = tuple[str, str, str]  # (tenant, role, user): who sees exactly the same frames
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
# Writes a text frame at once when the socket takes it; False: nothing written, `Send` it.
WriteNow = Callable[[str], bool]


def scope_key(principal: Principal) -> ScopeKey:
    """The clients of one key see the same frames (`wasync.scopes.visible` reads no more of a
    principal than these three), so the hub judges each row once per key."""
    return (principal.tenant_id, principal.role, principal.user_id)


class Client:
    """One WebSocket client: its principal, where it joined the log, its frames in order.

    Until `go_live()` (the connection's replay is done) frames wait in the backlog; from then
    on `offer()` writes them at once when the socket allows."""

    def __init__(self, principal: Principal, *, start_id: int, max_frames: int) -> None:
        self.principal = principal
        self.key = scope_key(principal)
        self.start_id = start_id
        self.last_sent = start_id  # the resume point: `since` for a reconnect
        self.max_frames = max_frames
        self.backlog: deque[tuple[int, str]] = deque()
        self.closing = asyncio.Event()
        self.close_code = 0
        self.close_reason = ""
        self._send: Send | None = None  # set by go_live()
        self._now: WriteNow | None = None  # the server's direct write, when it has one
        self._flushing: asyncio.Task[None] | None = None

    def offer(self, frame_id: int, text: str) -> None:
        """Write a frame now if the socket takes it, else queue it without waiting; an
        overflowing backlog closes the client (CLOSE_LAGGING)."""
        if self.closing.is_set() or frame_id <= self.last_sent:
            return
        if self._send is not None and self._flushing is None and not self.backlog:
            self._write(frame_id, text)
            return
        if len(self.backlog) >= self.max_frames:
            self.close(CLOSE_LAGGING, "lagging")
            return
        self.backlog.append((frame_id, text))

    async def go_live(self, send: Send, now: WriteNow | None = None) -> None:
        """Send the backlog through `send`, then let `offer()` write directly (through `now`
        where the server offers it, `send` where that would wait); returns when the client
        is closing."""
        while self.backlog and not self.closing.is_set():
            frame_id, text = self.backlog.popleft()
            if frame_id > self.last_sent:  # the seam with the replay: never twice
                await send(_message(text))
                self.last_sent = frame_id
        self._send, self._now = send, now
        await self.closing.wait()

    def close(self, code: int, reason: str) -> None:
        """Ask the connection to close with `code`; it adds `since=<id>` to the reason. A send
        still waiting for the socket is abandoned (its frame is not counted as sent)."""
        if self.closing.is_set():
            return
        self.close_code, self.close_reason = code, reason
        self.closing.set()
        self.backlog.clear()
        if self._flushing is not None:
            self._flushing.cancel()

    async def closed(self) -> None:
        """Wait until an abandoned send has unwound (before the close frame is written)."""
        if self._flushing is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flushing

    def _write(self, frame_id: int, text: str) -> None:
        assert self._send is not None
        if self._now is not None:
            try:
                written = self._now(text)
            except Exception:  # as a failed send below: this client closes, the others go on
                self.close(CLOSE_SEND_FAILED, "send failed")
                return
            if written:
                self.last_sent = frame_id
                return
        sending = self._send(_message(text))
        if not isinstance(sending, Coroutine):  # another server's future: just wait for it
            self._flushing = asyncio.get_running_loop().create_task(
                self._flush(_awaited(sending), _YIELD, frame_id), name="wasync-ws-flush"
            )
            return
        coro = sending
        try:
            waiting = _start(coro)
        except Exception:  # the peer is gone; its receiver notices the disconnect too
            self.close(CLOSE_SEND_FAILED, "send failed")
            return
        if waiting is None:
            self.last_sent = frame_id
            return
        self._flushing = asyncio.get_running_loop().create_task(
            self._flush(coro, waiting, frame_id), name="wasync-ws-flush"
        )

    async def _flush(self, coro: Coroutine[Any, Any, None], waiting: Any, frame_id: int) -> None:
        """Finish the send that had to wait, then the backlog that grew behind it."""
        assert self._send is not None
        try:
            await _finish(coro, waiting)
            self.last_sent = frame_id
            while self.backlog:
                frame_id, text = self.backlog.popleft()
                await self._send(_message(text))
                self.last_sent = frame_id
        except asyncio.CancelledError:
            raise
        except Exception:
            self.close(CLOSE_SEND_FAILED, "send failed")
        finally:
            if asyncio.current_task() is self._flushing:
                self._flushing = None


async def _awaited(sending: Awaitable[None]) -> None:
    await sending


def _message(text: str) -> MutableMapping[str, Any]:
    return {"type": "websocket.send", "text": text}


def _start(coro: Coroutine[Any, Any, None]) -> Any:
    """Run `coro` to its first suspension: None when it finished, else what it waits for
    (an asyncio future, or None for a bare yield: wrapped as `_YIELD`)."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return _YIELD if waiting is None else waiting


_YIELD = object()  # `await asyncio.sleep(0)` yields None: resume it on the next loop turn


async def _finish(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Drive a started coroutine to its end as an asyncio Task would: wait for the future
    it yielded, resume it (it reads the future's result or exception itself), repeat."""
    while True:
        try:
            if waiting is _YIELD:
                await asyncio.sleep(0)
            else:  # taken from the yield, as a Task does (else awaiting it again fails)
                waiting._asyncio_future_blocking = False
                await waiting
        except asyncio.CancelledError:
            coro.close()
            raise
        except BaseException:  # the coroutine reads it from the future when resumed
            pass
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
        if waiting is None:
            waiting = _YIELD
