"""`POST /api/webhooks/whatsapp`: one authenticated, durable endpoint for WAHA and Evolution.

Status codes are chosen for what the providers do with them (waha.md section 5,
evolution.md section 3.4): 2xx only after the events are committed; 503 when the store is
down (both retry 5xx); 400 for a body that can never parse, kept in `dead_letters` (Evolution
does not retry 400); 401 for a bad signature; 404 for an unknown session; 413 above the size
limit; 429 with `Retry-After` from a per-session token bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wasync.errors import PayloadError, StoreUnavailable
from wasync.metrics import Metrics
from wasync.pipeline import Pipeline
from wasync.providers import WEBHOOK_PARSERS, detect
from wasync.registry import Registry, SessionRef
from wasync.store import Store
from wasync.store import models as m

log = logging.getLogger(__name__)

# Header names whose values never reach `dead_letters` or a log line.
SECRET_HEADERS = frozenset({"authorization", "x-webhook-hmac", "apikey", "x-api-key", "cookie"})
T_DEAD = m.DeadLetter.__table__  # type: ignore[attr-defined]


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up; time is a parameter."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.at = clock()

    def take(self) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is available."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


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
    _buckets: dict[int, TokenBucket] = field(default_factory=dict)

    async def handle(self, request: Request, provider_hint: str | None = None) -> Response:
        """The whole request, receipt to answer."""
        started = time.perf_counter()
        try:
            return await self._handle(request, provider_hint)
        finally:
            self.metrics.webhook_seconds.observe(time.perf_counter() - started)

    async def _handle(self, request: Request, hint: str | None) -> Response:
        raw = await _read_limited(request, self.max_body_bytes)
        if raw is None:
            return self._answer(hint, "too_large", 413, "body over the size limit")
        try:
            body = json.loads(raw)
        except ValueError:
            return await self._dead(request, raw, hint, None, "body is not valid JSON")
        provider = hint or (detect.detect_provider(body) if isinstance(body, Mapping) else None)
        if provider is None or not isinstance(body, Mapping):
            return await self._dead(request, raw, hint, None, "not a WAHA or Evolution webhook")
        name = detect.session_name(body)
        if not name:
            return await self._dead(request, raw, provider, None, "body names no session")
        candidates = self.registry.by_name(name, provider)
        tenant = request.query_params.get("tenant")
        candidates = [c for c in candidates if tenant is None or _tenant_is(tenant, c.tenant_id)]
        if not candidates:
            return self._answer(provider, "unknown_session", 404, f"unknown session {name!r}")
        ref = next((c for c in candidates if _authentic(c, provider, request, raw)), None)
        if ref is None:
            return self._answer(provider, "unauthorized", 401, "bad or missing signature")
        wait_s = self._bucket(ref).take()
        if wait_s > 0:
            resp = self._answer(provider, "rate_limited", 429, "too many requests")
            resp.headers["Retry-After"] = str(max(1, round(wait_s)))
            return resp
        return await self._ingest(request, raw, body, provider, ref)

    async def _ingest(
        self, request: Request, raw: bytes, body: Mapping[str, Any], provider: str, ref: SessionRef
    ) -> Response:
        try:
            events = WEBHOOK_PARSERS[provider](body, session_id=ref.id)
        except PayloadError as exc:
            return await self._dead(request, raw, provider, ref, str(exc))
        if not events:
            return self._answer(provider, "ignored", 200, "ignored", ok=True)
        try:
            result = await self.pipeline.ingest(events, source="webhook")
        except StoreUnavailable:
            resp = self._answer(provider, "store_unavailable", 503, "store unavailable")
            resp.headers["Retry-After"] = "5"
            return resp
        self.metrics.ingested.labels("webhook").inc(result.new)
        self.metrics.duplicates.labels("webhook").inc(result.duplicate)
        self.metrics.webhooks.labels(provider, "stored").inc()
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
        self, provider: str | None, outcome: str, status: int, detail: str, *, ok: bool = False
    ) -> JSONResponse:
        self.metrics.webhooks.labels(provider or "unknown", outcome).inc()
        return JSONResponse({"ok": ok, "detail": detail}, status_code=status)

    async def _dead(
        self,
        request: Request,
        raw: bytes,
        provider: str | None,
        ref: SessionRef | None,
        error: str,
    ) -> Response:
        """Keep a body that can never parse, then answer 400 (503 if it cannot be kept)."""
        row = {
            "source": "webhook",
            "provider": provider,
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
            return self._answer(provider, "store_unavailable", 503, "store unavailable")
        if kept is None:
            log.warning("webhook body rejected into dead_letters: %s", error)
        return self._answer(provider, "dead_letter", 400, error)


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


def _authentic(ref: SessionRef, provider: str, request: Request, raw: bytes) -> bool:
    """Constant-time check of the session's webhook secret; no secret configured → accepted."""
    secret = ref.config.resolved_webhook_secret()
    if not secret:
        return True
    if provider == "waha":
        return _waha_hmac_ok(secret, request, raw)
    return _evolution_token_ok(secret, request)


def _tenant_is(given: str, tenant_id: str) -> bool:
    """`?tenant=<id>`. Evolution with `webhookByEvents` appends `/<event>` to the registered
    URL, query string included (evolution.md 3.1): `?tenant=<id>/messages-upsert`."""
    return given == tenant_id or given.startswith(f"{tenant_id}/")


def _waha_hmac_ok(secret: str, request: Request, raw: bytes) -> bool:
    """`X-Webhook-Hmac` = hex HMAC-SHA512 of the raw body (waha.md section 5)."""
    algorithm = request.headers.get("x-webhook-hmac-algorithm", "sha512").lower()
    given = request.headers.get("x-webhook-hmac", "")
    if algorithm != "sha512" or not given:
        return False
    expected = hmac.new(secret.encode(), raw, hashlib.sha512).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


# Evolution mints the JWT (exp = iat + 600 s) once per event and sends the same one with every
# retry, and retries for 20-30 minutes (evolution.md 3.3); a 401 is not retried. Accept tokens
# up to 35 minutes past `exp`, and an `iat` up to as far ahead (the two hosts' clocks differ).
# A replay inside that window is harmless: ingest is idempotent.
EVOLUTION_JWT_LEEWAY_S = 35 * 60


def _evolution_token_ok(secret: str, request: Request) -> bool:
    """Evolution does not sign: a HS256 JWT it mints from `headers.jwt_key` (checked with
    `exp`, see `EVOLUTION_JWT_LEEWAY_S`), or a static token in `Authorization: Bearer` /
    `X-Wasync-Token`."""
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    static = request.headers.get("x-wasync-token", "")
    if static and hmac.compare_digest(static.encode(), secret.encode()):
        return True
    if not token:
        return False
    if hmac.compare_digest(token.encode(), secret.encode()):
        return True
    try:
        with warnings.catch_warnings():  # a short jwt_key is the operator's choice, warned at start
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                options={"require": ["exp"]},
                leeway=EVOLUTION_JWT_LEEWAY_S,
            )
    except jwt.PyJWTError:
        return False
    return True
