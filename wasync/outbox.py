"""The durable send queue: one outbox row per message, written with its message and event.

A send request (REST, CLI, campaign) is checked first — the number is on WhatsApp (provider
check, TTL cache, the jid the provider returns), the media fits `[send] max_media_bytes` and
its mimetype fits the kind — and only then one `Pipeline.record()` transaction writes the
`outbox` row (QUEUED), the outbound `messages` row (from_me, ack PENDING,
`provider_message_id = wasync-<outbox id>`, a placeholder until the provider names it) and
the `chat:new-message` event. An `Idempotency-Key` already used returns the first row.
`wasync.sender` takes the rows from there.
"""

from __future__ import annotations

import base64
import binascii
import logging
import mimetypes
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync.config import SendConfig, Settings
from wasync.errors import ProviderError, WasyncError
from wasync.events import AckLevel, ChatKind, MessageType
from wasync.metrics import Metrics
from wasync.phones import parse_phone, phone_jid
from wasync.pipeline import CHAT_UPDATED, LEAD_CREATED, NEW_MESSAGE, EventSink, Pipeline
from wasync.providers.base import Provider
from wasync.providers.sending import KINDS, MEDIA_KINDS, NumberCheck
from wasync.registry import Registry, SessionRef, provider_for
from wasync.store import Store
from wasync.store import models as m

if TYPE_CHECKING:
    from wasync.sender import Sender

log = logging.getLogger(__name__)

T_OUTBOX = m.Outbox.__table__  # type: ignore[attr-defined]
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]
T_LEADS = m.Lead.__table__  # type: ignore[attr-defined]
T_PENDING = m.PendingUpdate.__table__  # type: ignore[attr-defined]

QUEUED, SENDING, UNKNOWN, SENT, FAILED = "QUEUED", "SENDING", "UNKNOWN", "SENT", "FAILED"
FINAL = frozenset({SENT, FAILED})
PLACEHOLDER = "wasync-"  # provider_message_id of a message row until the provider names it
SOURCE = "outbox"
_TYPES = {
    "text": MessageType.TEXT,
    "image": MessageType.IMAGE,
    "video": MessageType.VIDEO,
    "audio": MessageType.AUDIO,
    "voice": MessageType.AUDIO,
    "document": MessageType.DOCUMENT,
}
_MAJOR = {"image": "image/", "video": "video/", "audio": "audio/", "voice": "audio/"}
_DEFAULT_MIME = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/mpeg",
    "voice": "audio/ogg",
    "document": "application/octet-stream",
}


# --- errors -----------------------------------------------------------------------------------


class SendRejected(WasyncError):
    """A send request that is refused before anything is queued; `status` is the HTTP answer."""

    status = 422


class NotOnWhatsApp(SendRejected):
    """The number has no WhatsApp account (per the provider's number check)."""


class NumberCheckFailed(SendRejected):
    """The provider could not be asked whether the number is on WhatsApp."""

    status = 503


# --- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest:
    """What to send, validated: text, or media as a URL (passed through) or base64 data."""

    kind: str = "text"
    text: str | None = None
    url: str | None = None
    data: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    size: int | None = None

    def payload(self) -> dict[str, Any]:
        """The outbox row's `payload` JSON."""
        fields = ("text", "url", "data", "mimetype", "filename", "size")
        return {k: getattr(self, k) for k in fields if getattr(self, k) is not None}


def parse_to(to: str) -> str:
    """A phone typed by a person as canonical digits (Brazil's ninth digit); SendRejected."""
    try:
        return parse_phone(to)
    except ValueError as exc:
        raise SendRejected(str(exc)) from None


def text_request(text: str) -> SendRequest:
    """A text message; blank text is refused."""
    if not text.strip():
        raise SendRejected("text is empty")
    return SendRequest(kind="text", text=text)


def media_request(
    kind: str,
    source: str,
    *,
    caption: str | None = None,
    filename: str | None = None,
    max_bytes: int,
    allow_files: bool,
) -> SendRequest:
    """Media from a URL (passed through) or, when `allow_files`, a local file (sent as base64).

    Size and mimetype are checked here, before anything is queued.
    """
    if kind not in MEDIA_KINDS:
        raise SendRejected(f"unknown media kind {kind!r}; expected one of {sorted(MEDIA_KINDS)}")
    if _is_url(source):
        name = filename or Path(urlsplit(source).path).name or None
        mime = _checked_mime(kind, _guess_mime(name) or _DEFAULT_MIME[kind], source)
        return SendRequest(kind=kind, text=caption, url=source, mimetype=mime, filename=name)
    if not allow_files:
        raise SendRejected("media must be an http(s) URL or base64 data")
    return _file_request(kind, Path(source).expanduser(), caption, filename, max_bytes)


def data_request(
    kind: str,
    data: str,
    *,
    mimetype: str | None,
    caption: str | None = None,
    filename: str | None = None,
    max_bytes: int,
) -> SendRequest:
    """Media given as base64 (a `data:` URI prefix is accepted and removed)."""
    if kind not in MEDIA_KINDS:
        raise SendRejected(f"unknown media kind {kind!r}; expected one of {sorted(MEDIA_KINDS)}")
    if data.startswith("data:") and "," in data:
        head, data = data.split(",", 1)
        mimetype = mimetype or head[5:].split(";", 1)[0] or None
    try:
        size = len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise SendRejected(f"{kind} data is not valid base64") from None
    _check_size(kind, size, max_bytes, "data")
    mime = _checked_mime(kind, mimetype or _guess_mime(filename) or _DEFAULT_MIME[kind], "data")
    if filename is None and kind == "document":
        # Like a URL's or a file's own name: Evolution refuses a base64 document without one.
        filename = "document" + (mimetypes.guess_extension(mime) or "")
    return SendRequest(
        kind=kind, text=caption, data=data, mimetype=mime, filename=filename, size=size
    )


def _file_request(
    kind: str, path: Path, caption: str | None, filename: str | None, max_bytes: int
) -> SendRequest:
    if not path.is_file():
        raise SendRejected(f"{path}: no such file")
    size = path.stat().st_size
    _check_size(kind, size, max_bytes, str(path))
    mime = _checked_mime(kind, _guess_mime(path.name) or _DEFAULT_MIME[kind], str(path))
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return SendRequest(
        kind=kind, text=caption, data=data, mimetype=mime, filename=filename or path.name, size=size
    )


def _check_size(kind: str, size: int, max_bytes: int, what: str) -> None:
    if size == 0:
        raise SendRejected(f"{kind} {what} is empty")
    if size > max_bytes:
        raise SendRejected(
            f"{kind} {what} is {size / 1_048_576:.1f} MiB; the limit is "
            f"{max_bytes / 1_048_576:.1f} MiB ([send] max_media_bytes)"
        )


def _guess_mime(name: str | None) -> str | None:
    if not name:
        return None
    if name.lower().endswith((".opus", ".oga")):
        return "audio/ogg"
    return mimetypes.guess_type(name, strict=False)[0]


def _checked_mime(kind: str, mime: str, what: str) -> str:
    major = _MAJOR.get(kind)
    if major and not mime.lower().startswith(major):
        raise SendRejected(f"{kind} must be {major}* but {what} is {mime}")
    return mime


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


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
            created_at=utc(row.created_at),
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


_VIEW = [
    T_OUTBOX.c[n]
    for n in [
        "id",
        "tenant_id",
        "session_id",
        "chat_id",
        "message_id",
        "to_jid",
        "kind",
        "status",
        "attempts",
        "provider_message_id",
        "last_error",
        "idempotency_key",
        "created_at",
    ]
]


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

    Use as an async context manager; one per process (daemon, CLI).
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
        run_sender: bool = False,
    ) -> None:
        self.settings = settings
        self.cfg: SendConfig = settings.send
        self.store = store
        self.registry = registry
        self.pipeline = pipeline
        self.client = client
        self.metrics = metrics
        self.numbers = NumberBook(self.cfg.number_cache_ttl_s)
        self.sender: Sender | None = None
        self._run_sender = run_sender
        self._providers: dict[int, Provider] = {}

    async def __aenter__(self) -> Self:
        if self._run_sender:
            from wasync.sender import Sender  # the sender imports this module

            refs = [r for r in self.registry if r.config.enabled]
            self.sender = await Sender(self, refs).__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.sender is not None:
            await self.sender.__aexit__(*exc)
            self.sender = None

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
            row = (await conn.execute(_by_key(tenant_id, key))).first()
        return Queued.of(row) if row is not None else None

    async def enqueue(self, target: Target, request: SendRequest, key: str | None) -> Queued:
        """Write the outbox row, the outbound message and its event in one transaction; an
        idempotency key already used returns the first row (`created=False`)."""

        async def work(conn: AsyncConnection, sink: EventSink) -> Queued:
            return await _Enqueue(self, conn, sink, target, request, key).run()

        queued = await self.pipeline.record(work)
        if queued.created and self.sender is not None:
            self.sender.wake(queued.session_id)
        return queued

    async def get(self, tenant_id: str, outbox_id: int) -> Queued | None:
        """One row of the tenant."""
        o = T_OUTBOX.c
        async with self.store.read() as conn:
            q = select(*_VIEW).where(o.id == outbox_id, o.tenant_id == tenant_id)
            row = (await conn.execute(q)).first()
        return Queued.of(row) if row is not None else None

    async def statuses(self, ids: Sequence[int]) -> dict[int, Queued]:
        """Rows by id (for waiting on them)."""
        out: dict[int, Queued] = {}
        async with self.store.read() as conn:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                rows = await conn.execute(select(*_VIEW).where(T_OUTBOX.c.id.in_(chunk)))
                out.update({r.id: Queued.of(r) for r in rows})
        return out


def utc(ts: datetime) -> datetime:
    """A stored time as aware UTC (SQLite gives it back naive)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _by_key(tenant_id: str, key: str) -> Any:
    o = T_OUTBOX.c
    return select(*_VIEW).where(o.tenant_id == tenant_id, o.idempotency_key == key)


class _Enqueue:
    """The enqueue transaction: chat (and lead) for a new phone, outbox row, message, event."""

    def __init__(
        self,
        outbox: Outbox,
        conn: AsyncConnection,
        sink: EventSink,
        target: Target,
        request: SendRequest,
        key: str | None,
    ) -> None:
        self.outbox, self.conn, self.sink = outbox, conn, sink
        self.target, self.request, self.key = target, request, key
        self.tenant = target.session.tenant_id
        self.pg = not outbox.store.is_sqlite
        self.now = datetime.now(UTC)

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.pg else sqlite.insert)(table)

    async def run(self) -> Queued:
        if self.key is not None:
            found = (await self.conn.execute(_by_key(self.tenant, self.key))).first()
            if found is not None:
                return Queued.of(found)
        chat_id = self.target.chat_id or await self._chat()
        outbox_id = await self._outbox_row(chat_id)
        if outbox_id is None:  # the same key won a race a moment ago
            assert self.key is not None
            return Queued.of((await self.conn.execute(_by_key(self.tenant, self.key))).one())
        message_id = await self._message_row(chat_id, outbox_id)
        o = T_OUTBOX.c
        await self.conn.execute(
            update(T_OUTBOX).where(o.id == outbox_id).values(message_id=message_id)
        )
        await self._bump_chat(chat_id)
        self.sink.emit(self.tenant, NEW_MESSAGE, chat_id, message_id, outboxId=outbox_id)
        row = (await self.conn.execute(select(*_VIEW).where(o.id == outbox_id))).one()
        return Queued.of(row, created=True)

    async def _outbox_row(self, chat_id: int) -> int | None:
        values = {
            "tenant_id": self.tenant,
            "session_id": self.target.session.id,
            "chat_id": chat_id,
            "idempotency_key": self.key,
            "to_jid": self.target.to_jid,
            "kind": self.request.kind,
            "payload": self.request.payload(),
            "status": QUEUED,
            "attempts": 0,
            "created_at": self.now,
            "updated_at": self.now,
        }
        stmt = self._insert(T_OUTBOX).values(**values)
        stmt = stmt.on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
        result = await self.conn.execute(stmt.returning(T_OUTBOX.c.id))
        found = result.scalar_one_or_none()
        return int(found) if found is not None else None

    async def _message_row(self, chat_id: int, outbox_id: int) -> int:
        req = self.request
        values = {
            "tenant_id": self.tenant,
            "chat_id": chat_id,
            "session_id": self.target.session.id,
            "provider_message_id": f"{PLACEHOLDER}{outbox_id}",
            "from_me": True,
            "type": _TYPES[req.kind].value,
            "body": req.text,
            "media_url": req.url,
            "media_mimetype": req.mimetype,
            "media_filename": req.filename,
            "media_size": req.size,
            "media_voice": req.kind == "voice",
            "extra": {"outboxId": outbox_id},
            "sent_at": self.now,
            "ack": int(AckLevel.PENDING),
            "edited": False,
            "revoked": False,
            "source": SOURCE,
            "created_at": self.now,
        }
        stmt = T_MESSAGES.insert().values(**values).returning(T_MESSAGES.c.id)
        return int((await self.conn.execute(stmt)).scalar_one())

    async def _bump_chat(self, chat_id: int) -> None:
        c = T_CHATS.c
        newer = or_(c.last_message_at.is_(None), c.last_message_at < self.now)
        await self.conn.execute(
            update(T_CHATS).where(c.id == chat_id, newer).values(last_message_at=self.now)
        )

    async def _chat(self) -> int:
        """The direct chat of the phone, created (with its lead) when we write first."""
        phone = self.target.phone
        assert phone is not None
        c = T_CHATS.c
        q = select(c.id).where(c.tenant_id == self.tenant, c.jid == phone_jid(phone))
        found = (await self.conn.execute(q)).scalar_one_or_none()
        if found is not None:
            return int(found)
        lead_id = await self._lead(phone)
        values = {
            "tenant_id": self.tenant,
            "session_id": self.target.session.id,
            "kind": ChatKind.DIRECT.value,
            "jid": phone_jid(phone),
            "phone": phone,
            "lead_id": lead_id,
            "status": "OPEN",
            "unread_count": 0,
            "created_at": self.now,
            "updated_at": self.now,
        }
        stmt = self._insert(T_CHATS).values(**values).on_conflict_do_nothing()
        chat_id = (await self.conn.execute(stmt.returning(c.id))).scalar_one_or_none()
        if chat_id is None:
            return int((await self.conn.execute(q)).scalar_one())
        self.sink.emit(self.tenant, CHAT_UPDATED, chat_id, created=True, jid=phone_jid(phone))
        return int(chat_id)

    async def _lead(self, phone: str) -> int:
        """The lead of this phone; a new one (CRM defaults, no admin notification: we wrote)."""
        c = T_LEADS.c
        q = select(c.id).where(c.tenant_id == self.tenant, c.phone == phone)
        found = (await self.conn.execute(q)).scalar_one_or_none()
        if found is not None:
            return int(found)
        d = self.outbox.pipeline.crm.lead
        fill = {"phone": phone, "last4": phone[-4:], "chat_id": ""}
        values = {
            "tenant_id": self.tenant,
            "first_name": d.first_name.format(**fill),
            "last_name": d.last_name.format(**fill),
            "email": d.email.format(**fill),
            "phone": phone,
            "source": d.source,
            "status": d.status,
            "score": d.score,
            "created_at": self.now,
        }
        stmt = self._insert(T_LEADS).values(**values).on_conflict_do_nothing()
        lead_id = (await self.conn.execute(stmt.returning(c.id))).scalar_one_or_none()
        if lead_id is None:
            return int((await self.conn.execute(q)).scalar_one())
        self.sink.emit(self.tenant, LEAD_CREATED, None, leadId=lead_id, phone=phone)
        return int(lead_id)


__all__ = [
    "FAILED",
    "KINDS",
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
