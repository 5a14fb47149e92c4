"""The `dead_letters` table: what could not be stored as it came, kept once, within bounds.

Three kinds of row (`kind`):

- `unparsed`: an authenticated webhook body that can never parse; replayable
  (`wasync replay --dead-letters`);
- `quarantined`: one event that broke a column's limits or that the store refused, isolated
  from its batch by the pipeline (`wasync.ingest.quarantine`), with its session, provider id
  and reason; `body` is the event as JSON;
- `unauthenticated`: a sample of bodies no configured session signed, kept for diagnosis
  only: rate limited, cut to a size cap, at most a number of rows (the oldest are dropped),
  never replayed.

A row is kept once: the same body for the same provider and session, unreplayed, within
`DEDUPE_WINDOW` (WAHA retries a refused delivery for hours, waha.md 5), is found through the
indexed `body_sha256` instead of comparing bodies.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from wasync.events import Event
from wasync.store import models as m
from wasync.untrusted import clean_text

T_DEAD = m.DeadLetter.__table__  # type: ignore[attr-defined]

UNPARSED, QUARANTINED, UNAUTHENTICATED = "unparsed", "quarantined", "unauthenticated"
DEDUPE_WINDOW = timedelta(days=3)
MAX_ERROR_CHARS = 500
MAX_KEY_CHARS = 1000  # an over-long provider id is kept whole in `body`


def row(
    *,
    kind: str,
    source: str,
    body: bytes,
    error: str,
    now: datetime,
    provider: str | None = None,
    session_name: str | None = None,
    tenant_id: str | None = None,
    session_id: int | None = None,
    provider_message_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A `dead_letters` row; the error is cleaned and cut, the body hashed."""
    return {
        "kind": kind,
        "source": source,
        "provider": provider,
        "session_name": session_name,
        "tenant_id": tenant_id,
        "session_id": session_id,
        "provider_message_id": clean_text(provider_message_id)[:MAX_KEY_CHARS]
        if provider_message_id
        else None,
        "error": clean_text(error)[:MAX_ERROR_CHARS],
        "body": body,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "headers": {clean_text(k): clean_text(v) for k, v in headers.items()} if headers else None,
        "created_at": now,
    }


def same_row(r: Mapping[str, Any]) -> Any:
    """The id of an unreplayed row of the same kind, provider and session with this body,
    kept within `DEDUPE_WINDOW` (an index probe on `body_sha256`)."""
    d = T_DEAD.c
    return (
        select(d.id)
        .where(
            d.body_sha256 == r["body_sha256"],
            d.kind == r["kind"],
            d.provider.is_not_distinct_from(r["provider"]),
            d.session_name.is_not_distinct_from(r["session_name"]),
            d.replayed_at.is_(None),
            d.created_at >= r["created_at"] - DEDUPE_WINDOW,
        )
        .limit(1)
    )


def beyond_cap(rows: int) -> Any:
    """DELETE the `unauthenticated` rows older than the newest `rows` of them."""
    d = T_DEAD.c
    newest = (
        select(d.id)
        .where(d.kind == UNAUTHENTICATED)
        .order_by(d.id.desc())
        .limit(1)
        .offset(max(0, rows - 1))
        .scalar_subquery()
    )
    return delete(T_DEAD).where(d.kind == UNAUTHENTICATED, d.id < newest)


def counts_by_session() -> Any:
    """Unreplayed rows per kind, tenant and session name, with the newest error of each."""
    d = T_DEAD.c
    return (
        select(d.kind, d.tenant_id, d.session_name, func.count(), func.max(d.id))
        .where(d.replayed_at.is_(None))
        .group_by(d.kind, d.tenant_id, d.session_name)
    )


def raw_body(doc: Any) -> bytes:
    """A provider's JSON document (a listed row) as kept: ASCII JSON, NUL and lone surrogates
    as escapes, anything not JSON as text."""
    return json.dumps(doc, default=_plain, ensure_ascii=True).encode()


def event_body(event: Event) -> bytes:
    """An event as JSON (ASCII, so NUL and lone surrogates are kept as escapes): what a
    quarantined row holds for a person to read, with the event's class as `event`."""
    fields = dataclasses.asdict(event)
    return json.dumps(
        {"event": type(event).__name__, **fields}, default=_plain, ensure_ascii=True
    ).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return repr(value)
