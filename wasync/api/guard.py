"""What every REST route shares: the principal, one error shape, one JSON body parser, and
the parameter parsers (integers and text from an untrusted request, `wasync.untrusted`).

Errors are one line of JSON, `{"error": "..."}`: 400 a body that is not a JSON object, 401 a
missing, bad or expired token (with `WWW-Authenticate: Bearer`), 403, 404 (also for what the
caller may not see: its existence never leaks), 409, 422 a refused value, 503 the store (or a
provider check) unavailable. Nothing else is a 5xx: what no handler expected is answered 500
in the same shape by `wasync.api.app`'s error guard, and logged, without losing the
connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from wasync.auth import AuthError, Principal, bearer, verify_token
from wasync.config import Settings
from wasync.errors import ConfigError, Refused, StoreUnavailable
from wasync.untrusted import INT64_MAX, clean_text, loads, parse_int, text_problem

log = logging.getLogger(__name__)

Handler = Callable[[Request, Principal], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class Problem(Exception):
    """An error answer: HTTP status and a one-line message."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


def jwt_secret(settings: Settings) -> str | None:
    """The `[auth]` secret, or None (logged) when it is not configured: every call is 401."""
    try:
        return settings.auth.secret()
    except ConfigError as exc:
        log.warning("REST and /ws refuse every request until it is set: %s", exc)
        return None


def principal(conn: HTTPConnection, secret: str | None) -> Principal:
    """Who the request (or WebSocket handshake) speaks for; Problem 401 otherwise. No secret
    configured refuses everyone."""
    token = bearer(conn.headers, conn.query_params)
    if token is None or secret is None:
        raise Problem(401, "missing or invalid token")
    try:
        return verify_token(secret, token)
    except AuthError as exc:
        raise Problem(401, str(exc)) from None


def guarded(handler: Handler, secret: str | None) -> Endpoint:
    """Authenticate, run, and turn problems into one-line JSON errors."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, principal(request, secret))
        except Problem as exc:
            return error(exc.status, exc.error)
        except Refused as exc:
            return error(exc.status, str(exc))
        except StoreUnavailable:
            return error(503, "store unavailable")

    return endpoint


def error(status: int, message: str) -> JSONResponse:
    """The one error shape."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": clean_text(message)}, status_code=status, headers=headers)


async def json_body(request: Request) -> Mapping[str, Any]:
    """The request's JSON object; Problem 400 for anything else (an empty body is `{}`)."""
    raw = await request.body()
    try:
        body = loads(raw) if raw.strip() else {}
    except ValueError:  # also a body nested too deep
        raise Problem(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Problem(400, "body must be a JSON object")
    return body


def int_param(raw: Any, name: str, *, status: int = 422, hi: int = INT64_MAX) -> int:
    """A non-negative integer parameter (path, query, cursor value) up to `hi` (the column's
    range: an id is INTEGER on Postgres); Problem `status` for anything else: `"²"`, 5,000
    digits, a fraction, a sign, a value past the column."""
    value = parse_int(raw, lo=0, hi=hi)
    if value is None:
        raise Problem(status, f"{name} must be a positive integer")
    return value


def text_param(raw: str, name: str, *, status: int = 422) -> str:
    """A text parameter no column would refuse: Problem `status` for NUL or a lone surrogate
    (`%00` in a query, `"\\u0000"` in a JSON body)."""
    problem = text_problem(raw)
    if problem is not None:
        raise Problem(status, f"{name} {problem}")
    return raw
