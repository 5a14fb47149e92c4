"""WAHA's error answers and the checks in front of every handler: the API key, a known
session, a WORKING one, the NOWEB store."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from wasync.sim.base import Json, SimError
from wasync.sim.waha.session import WahaSession
from wasync.sim.waha.state import WahaState

DOCS_URL = "https://waha.devlike.pro/"
NOT_WORKING = "Session status is not as expected. Try again later or restart the session"


def nest(status: int, message: Any, error: str) -> Json:
    """NestJS' error body: `{message, error, statusCode}`."""
    return {"message": message, "error": error, "statusCode": status}


def bad_request(*messages: str) -> SimError:
    """A 400 carrying NestJS' validation messages."""
    return SimError(400, nest(400, list(messages), "Bad Request"))


def error_body(status: int) -> Json:
    """The body of an injected 429 (NestJS throttler) or 500 (its exception filter)."""
    if status == 429:
        return {"message": "ThrottlerException: Too Many Requests", "statusCode": 429}
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "statusCode": status,
        "timestamp": stamp,
        "exception": {"message": "Simulated internal error (wasync.sim fault)", "name": "Error"},
    }


def not_found(request: Request) -> Json:
    """NestJS' 404 for a route that does not exist."""
    return nest(404, f"Cannot {request.method} {request.url.path}", "Not Found")


def check_key(state: WahaState, request: Request) -> None:
    """waha.md §1: `X-Api-Key` header or `?x-api-key=`; 401 with NestJS' body."""
    if state.api_key is None:
        return
    given = request.headers.get("x-api-key") or request.query_params.get("x-api-key") or ""
    if not secrets.compare_digest(given.encode(), state.api_key.encode()):
        raise SimError(401, {"message": "Unauthorized", "statusCode": 401})


class Handlers:
    """A group of route handlers over the simulator's state, with the session checks."""

    def __init__(self, state: WahaState) -> None:
        self.state = state

    def known(self, name: str) -> WahaSession:
        """The session `name`, else WAHA's 404 for an unknown session."""
        session = self.state.sessions.get(name)
        if session is None:
            message = (
                f"We didn't find a session with name '{name}'.\n"
                f"Please start it first by using POST /api/sessions/{name}/start request"
            )
            raise SimError(404, nest(404, message, "Not Found"))
        return session

    def working(self, name: str) -> WahaSession:
        """waha.md §3: 422 with this exact body when the session is not WORKING.

        The real server first waits up to 15 s for WORKING; the simulator answers at once.
        """
        session = self.known(name)
        if session.status != "WORKING":
            body = {
                "error": NOT_WORKING,
                "session": name,
                "status": session.status,
                "expected": ["WORKING"],
            }
            raise SimError(422, body)
        session.activity_ms = int(self.state.clock() * 1000)
        return session

    def store_required(self, session: WahaSession) -> None:
        """NOWEB serves chats and messages only with its store enabled (400 otherwise)."""
        store = (session.config.get("noweb") or {}).get("store") or {}
        if session.engine == "NOWEB" and not store.get("enabled"):
            message = (
                'Enable NOWEB store "config.noweb.store.enabled=True" and '
                '"config.noweb.store.full_sync=True" when starting a new session. '
                f"Read more: {DOCS_URL}docs/engines/noweb#store"
            )
            raise SimError(400, nest(400, message, "Bad Request"))
