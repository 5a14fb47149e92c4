"""The app's last line: what no handler expected is one JSON 500, logged once, and the
connection stays usable.

Starlette's `ServerErrorMiddleware` answers an unhandled exception with a plain-text 500 and
then re-raises it (always: "allows servers to log the error"); uvicorn, seeing the exception
after the response started, closes the transport, so a client that reuses the keep-alive
connection has its next request reset (uvicorn `h11_impl.RequestResponseCycle.run_asgi`).
`ErrorGuard` sits inside it and does not re-raise: the 500 goes out with the one error shape
(`{"error": ...}`, `wasync.api.guard`) and the connection lives on. Starlette's own 404 and
405 get that shape too (`http_error`).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_STARTED = frozenset({"http.response.start", "websocket.accept", "websocket.http.response.start"})


class ErrorGuard:
    """ASGI middleware: an exception from the app is logged (with its traceback: it is a
    bug) and, when nothing was sent yet, answered 500 JSON; WebSocket errors only logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] in _STARTED
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("%s %s failed", scope.get("method", "WebSocket"), scope.get("path"))
            if scope["type"] != "http":
                return
            if started:  # a response cut in the middle: only closing tells the client
                raise
            await JSONResponse({"error": "internal error"}, status_code=500)(scope, receive, send)


async def http_error(request: Request, exc: Any) -> Response:
    """Starlette's HTTPException (404 no such route, 405 wrong method) in the one shape."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
