"""Evolution's error envelope and the checks in front of the handlers: the instance exists
(404) before the key is checked (401), and is connected."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request

from wasync.sim.base import Json, SimError
from wasync.sim.evolution.instance import EvoInstance
from wasync.sim.evolution.state import EvolutionState


def envelope(status: int, error: str, message: Any) -> Json:
    """evolution.md §1: every error is `{status, error, response: {message}}`."""
    return {"status": status, "error": error, "response": {"message": message}}


def bad(*messages: Any) -> SimError:
    """A 400 in the error envelope, with its messages as a list."""
    return SimError(400, envelope(400, "Bad Request", list(messages)))


def bad_json(message: str) -> SimError:
    """The 400 for a body that is not JSON."""
    return bad(message)


def error_body(status: int) -> Json:
    """The envelope of an injected 429 or 500."""
    names = {429: "Too Many Requests", 500: "Internal Server Error"}
    name = names.get(status, "Error")
    return envelope(status, name, name)


def not_found(request: Request) -> Json:
    """The 404 for a route that does not exist (`Cannot GET /path`), in the envelope."""
    return envelope(404, "Not Found", [f"Cannot {request.method} {request.url.path}"])


def same(given: str, expected: str) -> bool:
    """A non-empty key equal to `expected` (constant-time)."""
    return bool(given) and secrets.compare_digest(given.encode(), expected.encode())


def guard(state: EvolutionState, request: Request) -> EvoInstance:
    """evolution.md §1: the instance must exist (404) before the key is checked (401)."""
    name = request.path_params["instance"]
    inst = state.instances.get(name)
    if inst is None:
        message = [f'The "{name}" instance does not exist']
        raise SimError(404, envelope(404, "Not Found", message))
    given = request.headers.get("apikey", "")
    if not (same(given, state.api_key) or same(given, inst.token)):
        raise SimError(401, envelope(401, "Unauthorized", "Unauthorized"))
    return inst


def connected(inst: EvoInstance) -> None:
    """The 400 Evolution answers when the instance is not connected."""
    if inst.state != "open":
        raise bad("Error: Connection Closed")


class Handlers:
    """A group of route handlers over the simulator's state."""

    def __init__(self, state: EvolutionState) -> None:
        self.state = state
