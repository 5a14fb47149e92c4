"""What a route declares about itself for `/openapi.json`: `documented(Route(...), Op(...))`.

The declaration sits beside the route definition; `wasync.api.openapi` walks the app's routes
and builds the document from them (paths, methods and path parameters from the route itself,
the rest from its `Op`). A route without one is missing from the document, and
`tests/test_openapi.py` fails on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

from starlette.routing import BaseRoute

R = TypeVar("R", bound=BaseRoute)
Auth = Literal["jwt", "webhook", "none"]
ATTRIBUTE = "wasync_openapi"


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """A query (or header) parameter."""

    name: str
    description: str
    type: Literal["string", "integer", "boolean"] = "string"
    where: Literal["query", "header"] = "query"


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """One operation: what it does, who may call it, what it takes and answers. Schemas are
    named components of `wasync.api.schemas`."""

    summary: str
    tag: str
    auth: Auth = "jwt"
    body: str | None = None  # request body schema
    response: str | None = None  # the success answer's JSON schema
    status: int = 200
    media_type: str = "application/json"
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()  # besides 401 for "jwt"


def documented(route: R, op: Op) -> R:
    """`route`, carrying `op` (for every method it serves but HEAD)."""
    setattr(route, ATTRIBUTE, op)
    return route


def op_of(route: BaseRoute) -> Op | None:
    """What `route` declared, if anything."""
    found = getattr(route, ATTRIBUTE, None)
    return found if isinstance(found, Op) else None
