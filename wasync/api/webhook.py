"""`POST /api/webhooks/whatsapp`: one authenticated, durable endpoint for WAHA and Evolution.

Status codes are chosen for what the providers do with them (waha.md section 5,
evolution.md section 3.4): 2xx only after the events are committed (events the store cannot
hold are quarantined in `dead_letters` first, so a provider never retries them for ever);
503 when the store is down (both retry 5xx); 400 for a body that can never parse (Evolution
does not retry 400); 401 for a bad or missing signature (a session with no secret is refused
too, unless `[webhook] allow_unsigned`: fail closed); 404 for an unknown session; 413 above the
size limit; 429 with `Retry-After` from a token bucket per client address (checked before any
work) and one per session (after authentication).

Nothing is kept before the sender is known: the session is identified (from the body, or
from the raw bytes of one that does not parse) and its signature verified first; a body
that a session signed but cannot parse is kept once (`webhook_keep.Keeper.unparsed`), one
that no session signed only counted and at most sampled (`Keeper.unauthenticated`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wasync import logs, providers
from wasync.api.webhook_keep import Keeper
from wasync.errors import PayloadError, Quarantined, StoreUnavailable
from wasync.events import Event
from wasync.metrics import Metrics
from wasync.pipeline import IngestResult, Pipeline
from wasync.providers import ProviderKind
from wasync.ratelimit import TokenBucket
from wasync.registry import Registry, SessionRef
from wasync.store import Store
from wasync.untrusted import clean_text, loads, parse_int

log = logging.getLogger(__name__)

MAX_SOURCES = 10_000  # client addresses with a bucket (least recently seen forgotten first)
MAX_SIGNERS = 16  # distinct secrets tried for a body that names no session


class InlineSink(Protocol):
    """Takes the files webhook events carry themselves (the media worker)."""

    def offer(self, events: Iterable[Event]) -> None:
        """Keep them for the download that would otherwise fetch them again."""


@dataclass(slots=True)
class WebhookReceiver:
    """Authenticates, parses and ingests provider webhooks."""

    registry: Registry
    pipeline: Pipeline
    store: Store
    metrics: Metrics
    max_body_bytes: int = 16 * 1024 * 1024
    rate_per_s: float = 200.0
    burst: int = 400
    source_rate_per_s: float = 500.0
    source_burst: int = 1000
    keeper: Keeper | None = None
    allow_unsigned: bool = False  # `[webhook] allow_unsigned`: a session with no secret takes any
    clock: Callable[[], float] = time.monotonic
    media: InlineSink | None = None  # files the body carried inline go here first
    _buckets: dict[int, TokenBucket] = field(default_factory=dict)
    _sources: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.keeper is None:
            self.keeper = Keeper(self.store, clock=self.clock)

    async def handle(self, request: Request, kind: ProviderKind | None = None) -> Response:
        """The whole request, receipt to answer; `kind` when the path names the provider,
        else it is detected from the body."""
        started = time.perf_counter()
        try:
            return await self._handle(request, kind)
        finally:
            self.metrics.webhook_seconds.observe(time.perf_counter() - started)

    async def _handle(self, request: Request, hint: ProviderKind | None) -> Response:
        wait_s = self._source_bucket(request).try_take()
        if wait_s > 0:
            return self._limited(hint, "source_limited", wait_s)
        raw = await _read_limited(request, self.max_body_bytes)
        if raw is None:
            return self._answer(hint, "too_large", 413, "body over the size limit")
        try:
            body: Any = loads(raw)
        except ValueError:
            return await self._unusable(request, raw, hint, "body is not valid JSON")
        detected = providers.detect_kind(body) if isinstance(body, Mapping) else None
        kind = hint or detected
        if kind is None or not isinstance(body, Mapping):
            return await self._unusable(request, raw, hint, "not a WAHA or Evolution webhook")
        name = detected.session_name(body) if detected is not None else None
        if not name:
            return await self._unusable(request, raw, kind, "body names no session")
        candidates = self._named(request, kind, name)
        if not candidates:
            error = f"unknown session {name[:100]!r}"
            return await self._untied(request, raw, kind, "unknown_session", 404, error)
        ref = next((c for c in candidates if self._authentic(c, kind, request, raw)), None)
        if ref is None:
            error = "bad or missing signature"
            return await self._untied(request, raw, kind, "unauthorized", 401, error)
        wait_s = self._bucket(ref).try_take()
        if wait_s > 0:
            return self._limited(kind, "rate_limited", wait_s)
        with logs.scope(session=ref.config.name, tenant=ref.tenant_id):
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
            return await self._unparsed(request, raw, kind, ref, str(exc))
        except Exception as exc:  # a parser bug must cost one body, kept for replay, not a 500
            log.exception("session %s: webhook parser failed", ref.label)
            return await self._unparsed(request, raw, kind, ref, f"parser error: {exc!r}"[:300])
        if not events:
            return self._answer(kind, "ignored", 200, "ignored", ok=True)
        if self.media is not None:  # before the commit wakes the worker
            self.media.offer(events)
        self.metrics.count_unparsed(kind.name, events)
        try:
            result = await self.pipeline.ingest(events, source="webhook")
        except StoreUnavailable:
            return self._unavailable(kind)
        except Quarantined as exc:  # kept in dead_letters: the provider must stop retrying it
            result = exc.result
        return self._stored(kind, result)

    def _stored(self, kind: ProviderKind, result: IngestResult) -> Response:
        m = self.metrics
        m.child(m.ingested, "webhook").inc(result.new)
        m.child(m.duplicates, "webhook").inc(result.duplicate)
        m.child(m.quarantined, "webhook").inc(result.quarantined)
        outcome = "quarantined" if result.quarantined else "stored"
        m.child(m.webhooks, kind.name, outcome).inc()
        answer = {"ok": True, "new": result.new, "duplicate": result.duplicate}
        answer["ignored"] = result.ignored
        if result.quarantined:
            answer["quarantined"] = result.quarantined
        return JSONResponse(answer)

    # --- bodies that cannot be ingested ---------------------------------------------------------

    async def _unusable(
        self, request: Request, raw: bytes, kind: ProviderKind | None, error: str
    ) -> Response:
        """A body that does not parse into a webhook of a known session: kept once when a
        session signed it (400), else counted and maybe sampled (400 too: it is malformed)."""
        signed = self._signer(request, raw, kind)
        if signed is not None:
            return await self._unparsed(request, raw, signed[0], signed[1], error)
        return await self._untied(request, raw, kind, "unauthenticated", 400, error)

    async def _untied(
        self,
        request: Request,
        raw: bytes,
        kind: ProviderKind | None,
        outcome: str,
        status: int,
        error: str,
    ) -> Response:
        """A body no configured session signed: counted, maybe sampled, answered `status`."""
        assert self.keeper is not None
        try:
            kept = await self.keeper.unauthenticated(request, raw, error)
        except StoreUnavailable:
            kept = False  # a sample is not worth a retry
        self.metrics.unauthenticated.labels("yes" if kept else "no").inc()
        return self._answer(kind, outcome, status, error)

    async def _unparsed(
        self, request: Request, raw: bytes, kind: ProviderKind, ref: SessionRef, error: str
    ) -> Response:
        assert self.keeper is not None
        try:
            await self.keeper.unparsed(request, raw, kind, ref, error)
        except StoreUnavailable:
            return self._unavailable(kind)
        return self._answer(kind, "dead_letter", 400, error)

    def _signer(
        self, request: Request, raw: bytes, kind: ProviderKind | None
    ) -> tuple[ProviderKind, SessionRef] | None:
        """Which configured session signed a body that names none we could read: the one its
        raw bytes name, else any session (of the path's kind) whose secret verifies it, trying
        at most `MAX_SIGNERS` distinct secrets. A session with no secret signs nothing here."""
        kinds = [kind] if kind is not None else list(providers.KINDS.values())
        tried: set[tuple[str, str]] = set()
        for k in kinds:
            name = k.session_in_raw(raw)
            named = self._named(request, k, name) if name else []
            others = [r for r in self._named(request, k, None) if r not in named]
            for ref in [*named, *others]:
                secret = ref.config.resolved_webhook_secret()
                if not secret or (k.name, secret) in tried or len(tried) >= MAX_SIGNERS:
                    continue
                tried.add((k.name, secret))
                if k.verify(secret, request.headers, raw):
                    return k, ref
        return None

    # --- helpers --------------------------------------------------------------------------------

    def _authentic(self, ref: SessionRef, kind: ProviderKind, request: Request, raw: bytes) -> bool:
        """The kind's constant-time check of the session's webhook secret. Fails closed: a
        session with no secret is refused, unless `[webhook] allow_unsigned`."""
        secret = ref.config.resolved_webhook_secret()
        if not secret:
            return self.allow_unsigned
        return kind.verify(secret, request.headers, raw)

    def _named(self, request: Request, kind: ProviderKind, name: str | None) -> list[SessionRef]:
        """The sessions of `kind` called `name` (every one for None), `?tenant=` applied."""
        if name is None:
            refs = [r for r in self.registry.sessions.values() if r.kind is kind]
        else:
            refs = self.registry.by_name(name, kind.name)
        tenant = request.query_params.get("tenant")
        return [r for r in refs if tenant is None or _tenant_is(tenant, r.tenant_id)]

    def _source_bucket(self, request: Request) -> TokenBucket:
        """The client address's bucket (uvicorn resolves `X-Forwarded-For` from trusted
        proxies only: `forwarded_allow_ips`)."""
        source = request.client.host if request.client else ""
        bucket = self._sources.get(source)
        if bucket is None:
            if len(self._sources) >= MAX_SOURCES:
                self._sources.popitem(last=False)
            bucket = TokenBucket(self.source_rate_per_s, self.source_burst, self.clock)
            self._sources[source] = bucket
        else:
            self._sources.move_to_end(source)
        return bucket

    def _bucket(self, ref: SessionRef) -> TokenBucket:
        bucket = self._buckets.get(ref.id)
        if bucket is None:
            bucket = self._buckets[ref.id] = TokenBucket(self.rate_per_s, self.burst, self.clock)
        return bucket

    def _limited(self, kind: ProviderKind | None, outcome: str, wait_s: float) -> JSONResponse:
        resp = self._answer(kind, outcome, 429, "too many requests")
        resp.headers["Retry-After"] = str(max(1, round(wait_s)))
        return resp

    def _unavailable(self, kind: ProviderKind | None) -> JSONResponse:
        resp = self._answer(kind, "store_unavailable", 503, "store unavailable")
        resp.headers["Retry-After"] = "5"
        return resp

    def _answer(
        self, kind: ProviderKind | None, outcome: str, status: int, detail: str, *, ok: bool = False
    ) -> JSONResponse:
        self.metrics.child(self.metrics.webhooks, kind.name if kind else "unknown", outcome).inc()
        # The detail may quote the body (an id, a session name): no lone surrogate may reach
        # the UTF-8 encoder of the answer.
        return JSONResponse({"ok": ok, "detail": clean_text(detail)}, status_code=status)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than `limit` (checked before and while reading)."""
    declared = parse_int(request.headers.get("content-length"), lo=0)
    if declared is not None and declared > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _tenant_is(given: str, tenant_id: str) -> bool:
    """`?tenant=<id>`. Evolution with `webhookByEvents` appends `/<event>` to the registered
    URL, query string included (evolution.md 3.1): `?tenant=<id>/messages-upsert`."""
    return given == tenant_id or given.startswith(f"{tenant_id}/")
