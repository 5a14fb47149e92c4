"""The durable send queue: checked requests in, one outbox row per message.

A send request (REST, CLI, campaign) is checked first — the number is on WhatsApp (provider
check, TTL cache, the jid the provider returns), the media fits (`wasync.outgoing`) — and only
then queued as a `SendQueued` command: the one writer (`wasync.ingest.sends`) writes the
`outbox` row (QUEUED), the outbound message (ack PENDING, `wasync-<outbox id>` until the
provider names it), the chat and lead of a phone we write to first, and their events, in one
transaction. An `Idempotency-Key` already used returns the first row. `wasync.sender` takes
the rows from there; this module and the sender write only the `outbox` table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import httpx
from sqlalchemy import select

from wasync.config import SendConfig, Settings
from wasync.errors import ProviderError
from wasync.events import ChatKind, OutboxStatus, SendQueued
from wasync.ingest.sends import OUTBOX_VIEW, PLACEHOLDER, by_key
from wasync.metrics import Metrics
from wasync.outgoing import (
    SendRejected,
    SendRequest,
    data_request,
    media_request,
    parse_to,
    text_request,
)
from wasync.phones import phone_jid
from wasync.pipeline import Pipeline
from wasync.providers.base import Provider
from wasync.providers.sending import KINDS, NumberCheck
from wasync.registry import Registry, SessionRef, provider_for
from wasync.store import Store
from wasync.store import models as m

log = logging.getLogger(__name__)

T_OUTBOX = m.Outbox.__table__  # type: ignore[attr-defined]
T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]

QUEUED = OutboxStatus.QUEUED.value
SENDING = OutboxStatus.SENDING.value
UNKNOWN = OutboxStatus.UNKNOWN.value
SENT = OutboxStatus.SENT.value
FAILED = OutboxStatus.FAILED.value
FINAL = frozenset({SENT, FAILED})
SOURCE = "outbox"  # `messages.source` of our sends


class NotOnWhatsApp(SendRejected):
    """The number has no WhatsApp account (per the provider's number check)."""

    from_world = True  # the provider's answer: `wasync send` exits 1


class NumberCheckFailed(SendRejected):
    """The provider could not be asked whether the number is on WhatsApp."""

    status = 503


# --- views --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Queued:
    """An outbox row as callers see it; `created` is False for an idempotent replay."""

    id: int
    tenant_id: str
    session_id: int
    chat_id: int | None
    message_id: int | None
    to_jid: str
    kind: str
    status: str
    attempts: int
    provider_message_id: str | None
    last_error: str | None
    idempotency_key: str | None
    created_at: datetime
    created: bool = False

    @classmethod
    def of(cls, row: Any, *, created: bool = False) -> Queued:
        """From an `outbox` row."""
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            session_id=row.session_id,
            chat_id=row.chat_id,
            message_id=row.message_id,
            to_jid=row.to_jid,
            kind=row.kind,
            status=row.status,
            attempts=row.attempts,
            provider_message_id=row.provider_message_id,
            last_error=row.last_error,
            idempotency_key=row.idempotency_key,
            created_at=row.created_at,
            created=created,
        )

    def to_json(self) -> dict[str, Any]:
        """The REST shape (camelCase)."""
        return {
            "id": self.id,
            "status": self.status,
            "chatId": self.chat_id,
            "messageId": self.message_id,
            "providerMessageId": self.provider_message_id,
            "to": self.to_jid,
            "kind": self.kind,
            "attempts": self.attempts,
            "lastError": self.last_error,
            "idempotencyKey": self.idempotency_key,
            "createdAt": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where a message goes: the session, the provider jid, and our chat (known or by phone)."""

    session: SessionRef
    to_jid: str
    phone: str | None = None
    chat_id: int | None = None


# --- numbers ------------------------------------------------------------------------------------


class NumberBook:
    """Provider number checks with a TTL cache per session; `clock` is a parameter.

    "Not on WhatsApp" is kept at most `NEGATIVE_TTL_S`: a person may join meanwhile.
    """

    NEGATIVE_TTL_S = 600.0

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[tuple[int, str], tuple[float, NumberCheck]] = {}

    async def check(self, provider: Provider, session_id: int, phone: str) -> NumberCheck:
        """The cached answer when fresh, else ask the provider (ProviderError propagates)."""
        key = (session_id, phone)
        hit = self._cache.get(key)
        if hit is not None:
            ttl = self.ttl_s if hit[1].exists else min(self.ttl_s, self.NEGATIVE_TTL_S)
            if self.clock() - hit[0] < ttl:
                return hit[1]
        answer = await provider.check_number(phone)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = (self.clock(), answer)
        return answer


# --- the outbox ---------------------------------------------------------------------------------


class Outbox:
    """Checks and queues send requests; with `run_sender` it also owns a `Sender`.

    Use as an async context manager; one per process (daemon, CLI). A `Sender` running
    beside it registers in `wakers`, to hear at once of rows queued for its sessions.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: Registry,
        pipeline: Pipeline,
        client: httpx.AsyncClient,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.cfg: SendConfig = settings.send
        self.store = store
        self.registry = registry
        self.pipeline = pipeline
        self.client = client
        self.metrics = metrics
        self.numbers = NumberBook(self.cfg.number_cache_ttl_s)
        self.wakers: list[Callable[[int], None]] = []
        self._providers: dict[int, Provider] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._providers.clear()

    def provider(self, ref: SessionRef) -> Provider:
        """The session's adapter, with the send timeout (reads keep the poll retries)."""
        if ref.id not in self._providers:
            poll = self.settings.poll.model_copy(update={"timeout_s": self.cfg.timeout_s})
            self._providers[ref.id] = provider_for(ref, self.client, poll)
        return self._providers[ref.id]

    def session(self, tenant_id: str, name: str | None) -> SessionRef:
        """The named session of the tenant, or its first enabled one."""
        refs = [r for r in self.registry if r.tenant_id == tenant_id and r.config.enabled]
        if name is not None:
            refs = [r for r in refs if r.name == name]
        if not refs:
            what = f"session {name!r}" if name else "enabled session"
            raise SendRejected(f"tenant {tenant_id!r} has no {what}")
        return refs[0]

    # -- targets --

    async def target_phone(self, ref: SessionRef, phone: str) -> Target:
        """A canonical phone (`parse_to`), checked with the provider."""
        return Target(session=ref, to_jid=await self._check(ref, phone), phone=phone)

    async def target_chat(self, ref: SessionRef, chat: Any) -> Target:
        """An existing chat: groups and LID-only chats go to their jid, phones are checked."""
        if chat.kind != ChatKind.DIRECT.value or not chat.phone:
            return Target(session=ref, to_jid=chat.jid, chat_id=chat.id)
        jid = await self._check(ref, chat.phone)
        return Target(session=ref, to_jid=jid, phone=chat.phone, chat_id=chat.id)

    async def _check(self, ref: SessionRef, phone: str) -> str:
        try:
            found = await self.numbers.check(self.provider(ref), ref.id, phone)
        except ProviderError as exc:
            raise NumberCheckFailed(f"could not check +{phone} on {ref.label}: {exc}") from None
        if not found.exists:
            raise NotOnWhatsApp(f"+{phone} is not on WhatsApp (checked on {ref.label})")
        return found.jid or phone_jid(phone)

    # -- queueing --

    async def find(self, tenant_id: str, key: str) -> Queued | None:
        """The row queued earlier under this idempotency key, if any."""
        async with self.store.read() as conn:
            row = (await conn.execute(by_key(tenant_id, key))).first()
        return Queued.of(row) if row is not None else None

    async def enqueue(self, target: Target, request: SendRequest, key: str | None) -> Queued:
        """Queue the send (`SendQueued`); an idempotency key already used returns the first
        row (`created=False`)."""
        ref = target.session
        command = SendQueued(
            tenant_id=ref.tenant_id,
            session_id=ref.id,
            to_jid=target.to_jid,
            chat_id=target.chat_id,
            phone=target.phone,
            kind=request.kind,
            payload=request.payload(),
            idempotency_key=key,
            type=request.message_type,
            body=request.text,
            media=request.media(),
        )
        row, created = await self.pipeline.execute(command, source=SOURCE)
        queued = Queued.of(row, created=created)
        if created:
            for wake in self.wakers:
                wake(queued.session_id)
        return queued

    async def get(self, tenant_id: str, outbox_id: int) -> Queued | None:
        """One row of the tenant."""
        o = T_OUTBOX.c
        async with self.store.read() as conn:
            q = select(*OUTBOX_VIEW).where(o.id == outbox_id, o.tenant_id == tenant_id)
            row = (await conn.execute(q)).first()
        return Queued.of(row) if row is not None else None

    async def statuses(self, ids: Sequence[int]) -> dict[int, Queued]:
        """Rows by id (for waiting on them)."""
        out: dict[int, Queued] = {}
        async with self.store.read() as conn:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                rows = await conn.execute(select(*OUTBOX_VIEW).where(T_OUTBOX.c.id.in_(chunk)))
                out.update({r.id: Queued.of(r) for r in rows})
        return out


__all__ = [
    "FAILED",
    "KINDS",
    "PLACEHOLDER",
    "QUEUED",
    "SENDING",
    "SENT",
    "UNKNOWN",
    "NotOnWhatsApp",
    "NumberCheckFailed",
    "Outbox",
    "Queued",
    "SendRejected",
    "SendRequest",
    "Target",
    "data_request",
    "media_request",
    "parse_to",
    "text_request",
]
