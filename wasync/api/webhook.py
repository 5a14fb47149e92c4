"""`POST /api/webhooks/whatsapp`: one authenticated, durable endpoint for WAHA and Evolution.

Status codes are chosen for what the providers do with them (waha.md section 5,
evolution.md section 3.4): 2xx only after the events are committed; 503 when the store is
down (both retry 5xx); 400 for a body that can never parse, kept in `dead_letters` (Evolution
does not retry 400); 401 for a bad signature; 404 for an unknown session; 413 above the size
limit; 429 with `Retry-After` from a per-session token bucket.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wasync import providers
from wasync.errors import PayloadError, StoreUnavailable
from wasync.events import Event
from wasync.metrics import Metrics
from wasync.pipeline import Pipeline
from wasync.providers import ProviderKind
from wasync.ratelimit import TokenBucket
from wasync.registry import Registry, SessionRef
from wasync.store import Store
from wasync.store import models as m

log = logging.getLogger(__name__)

# Header names whose values never reach `dead_letters` or a log line: every kind's API key and
# signature headers, and cookies.
SECRET_HEADERS = frozenset(
    {"cookie", *(name for k in providers.KINDS.values() for name in k.secret_headers)}
)
T_DEAD = m.DeadLetter.__table__  # type: ignore[attr-defined]


class InlineSink(Protocol):
    """Takes the files webhook events carry themselves (the media worker)."""

    def offer(self, events: Iterable[Event]) -> None:
        """Keep them for the download that would otherwise fetch them again."""


@dataclass(slots=True)
class WebhookReceiver:
    """Parses, authenticates and ingests provider webhooks."""

    registry: Registry
    pipeline: Pipeline
    store: Store
    metrics: Metrics
    max_body_bytes: int = 16 * 1024 * 1024
    rate_per_s: float = 200.0
    burst: int = 400
    clock: Callable[[], float] = time.monotonic
    media: InlineSink | None = None  # files the body carried inline go here first
    _buckets: dict[int, TokenBucket] = field(default_factory=dict)

    async def handle(self, request: Request, kind: ProviderKind | None = None) -> Response:
        """The whole request, receipt to answer; `kind` when the path names the provider,
        else it is detected from the body."""
        started = time.perf_counter()
        try:
            return await self._handle(request, kind)
        finally:
            self.metrics.webhook_seconds.observe(time.perf_counter() - started)

    async def _handle(self, request: Request, hint: ProviderKind | None) -> Response:
        raw = await _read_limited(request, self.max_body_bytes)
        if raw is None:
            return self._answer(hint, "too_large", 413, "body over the size limit")
        try:
            body = json.loads(raw)
        except ValueError:
            return await self._dead(request, raw, hint, None, "body is not valid JSON")
        detected = providers.detect_kind(body) if isinstance(body, Mapping) else None
        kind = hint or detected
        if kind is None or not isinstance(body, Mapping):
            return await self._dead(request, raw, hint, None, "not a WAHA or Evolution webhook")
        name = detected.session_name(body) if detected is not None else None
        if not name:
            return await self._dead(request, raw, kind, None, "body names no session")
        candidates = self.registry.by_name(name, kind.name)
        tenant = request.query_params.get("tenant")
        candidates = [c for c in candidates if tenant is None or _tenant_is(tenant, c.tenant_id)]
        if not candidates:
            return self._answer(kind, "unknown_session", 404, f"unknown session {name!r}")
        ref = next((c for c in candidates if _authentic(c, kind, request, raw)), None)
        if ref is None:
            return self._answer(kind, "unauthorized", 401, "bad or missing signature")
        wait_s = self._bucket(ref).try_take()
        if wait_s > 0:
            resp = self._answer(kind, "rate_limited", 429, "too many requests")
            resp.headers["Retry-After"] = str(max(1, round(wait_s)))
            return resp
        return await self._ingest(request, raw, body, kind, ref)

    async def _ingest(
        self,
        request: Request,
        raw: bytes,
        body: Mapping[str, Any],
        kind: ProviderKind,
        ref: SessionRef,
    ) -> Response:
        try:
            events = kind.parse_webhook(body, session_id=ref.id)
        except PayloadError as exc:
            return await self._dead(request, raw, kind, ref, str(exc))
        if not events:
            return self._answer(kind, "ignored", 200, "ignored", ok=True)
        if self.media is not None:  # before the commit wakes the worker
            self.media.offer(events)
        self.metrics.count_unparsed(kind.name, events)
        try:
            result = await self.pipeline.ingest(events, source="webhook")
        except StoreUnavailable:
            resp = self._answer(kind, "store_unavailable", 503, "store unavailable")
            resp.headers["Retry-After"] = "5"
            return resp
        self.metrics.ingested.labels("webhook").inc(result.new)
        self.metrics.duplicates.labels("webhook").inc(result.duplicate)
        self.metrics.webhooks.labels(kind.name, "stored").inc()
        return JSONResponse(
            {
                "ok": True,
                "new": result.new,
                "duplicate": result.duplicate,
                "ignored": result.ignored,
            }
        )

    def _bucket(self, ref: SessionRef) -> TokenBucket:
        bucket = self._buckets.get(ref.id)
        if bucket is None:
            bucket = self._buckets[ref.id] = TokenBucket(self.rate_per_s, self.burst, self.clock)
        return bucket

    def _answer(
        self, kind: ProviderKind | None, outcome: str, status: int, detail: str, *, ok: bool = False
    ) -> JSONResponse:
        self.metrics.webhooks.labels(kind.name if kind else "unknown", outcome).inc()
        return JSONResponse({"ok": ok, "detail": detail}, status_code=status)

    async def _dead(
        self,
        request: Request,
        raw: bytes,
        kind: ProviderKind | None,
        ref: SessionRef | None,
        error: str,
    ) -> Response:
        """Keep a body that can never parse, then answer 400 (503 if it cannot be kept)."""
        row = {
            "source": "webhook",
            "provider": kind.name if kind else None,
            "session_name": ref.name if ref else None,
            "tenant_id": ref.tenant_id if ref else None,
            "error": error,
            "body": _without_keys(raw),
            "headers": {
                k: v for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS
            },
            "created_at": m.utcnow(),
        }
        try:
            async with self.store.write() as conn:
                kept = await conn.scalar(_same_dead_letter(row))
                if kept is None:
                    await conn.execute(T_DEAD.insert(), row)
        except StoreUnavailable:
            return self._answer(kind, "store_unavailable", 503, "store unavailable")
        if kept is None:
            log.warning("webhook body rejected into dead_letters: %s", error)
        return self._answer(kind, "dead_letter", 400, error)


# WAHA retries any non-2xx, 15 times over hours with our retry policy (waha.md 5): the same
# body is kept once while it waits to be replayed.
DEAD_LETTER_DEDUPE = timedelta(days=3)


def _same_dead_letter(row: Mapping[str, Any]) -> Any:
    """The id of an unreplayed dead letter with this row's provider, session and body, kept
    within `DEAD_LETTER_DEDUPE`."""
    d = T_DEAD.c
    return (
        select(d.id)
        .where(
            d.provider.is_not_distinct_from(row["provider"]),
            d.session_name.is_not_distinct_from(row["session_name"]),
            d.replayed_at.is_(None),
            d.created_at >= row["created_at"] - DEAD_LETTER_DEDUPE,
            d.body == row["body"],
        )
        .limit(1)
    )


# An API key inside a body: Evolution puts the instance token in its envelope's `apikey`
# (evolution.md 3.2, when AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES is on, as in its example
# env); with it anyone can send as the business.
_BODY_KEY = re.compile(rb'("(?:apikey|api_key)"\s*:\s*")((?:[^"\\]|\\.)*)("|\Z)', re.IGNORECASE)


def _without_keys(raw: bytes) -> bytes:
    """The body to keep in `dead_letters`: byte for byte, but API key values blanked (found by
    pattern, so a body that is not valid JSON, even one cut inside the key, is scrubbed too)."""
    return _BODY_KEY.sub(rb"\1[redacted]\3", raw)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than `limit` (checked before and while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _authentic(ref: SessionRef, kind: ProviderKind, request: Request, raw: bytes) -> bool:
    """The kind's constant-time check of the session's webhook secret; no secret configured →
    accepted."""
    secret = ref.config.resolved_webhook_secret()
    if not secret:
        return True
    return kind.verify(secret, request.headers, raw)


def _tenant_is(given: str, tenant_id: str) -> bool:
    """`?tenant=<id>`. Evolution with `webhookByEvents` appends `/<event>` to the registered
    URL, query string included (evolution.md 3.1): `?tenant=<id>/messages-upsert`."""
    return given == tenant_id or given.startswith(f"{tenant_id}/")
