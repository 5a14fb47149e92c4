"""The SQLModel tables: wasync's public schema (documented in README.md).

Table and column names are a contract with the CRMs that read them: add, never rename.
Times are UTC (`timestamptz` on Postgres; ISO text on SQLite), read back aware through
`UTCDateTime`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from wasync.store.types import UTCDateTime

# SQLite only auto-increments INTEGER PRIMARY KEY; Postgres gets BIGINT identities.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Aware UTC now; the one clock default of the schema."""
    return datetime.now(UTC)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _created() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))


class Tenant(SQLModel, table=True):
    """A CRM tenant, as configured."""

    __tablename__ = "tenants"
    id: str = Field(primary_key=True, max_length=100)
    name: str | None = None
    created_at: datetime = _created()


class Session(SQLModel, table=True):
    """A WAHA session or Evolution instance of a tenant."""

    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_sessions_tenant_name"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=100)
    name: str = Field(max_length=100)
    provider: str = Field(max_length=20)
    base_url: str
    engine: str | None = None
    status: str | None = None
    status_at: datetime | None = _ts()
    created_at: datetime = _created()


class Identity(SQLModel, table=True):
    """A LID (`…@lid`) known to be a phone, per tenant."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("tenant_id", "lid", name="uq_identities_tenant_lid"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=100)
    lid: str = Field(max_length=64)
    phone: str = Field(max_length=20, index=True)
    created_at: datetime = _created()


class Lead(SQLModel, table=True):
    """A CRM lead, created the first time an unknown number writes."""

    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("tenant_id", "phone", name="uq_leads_tenant_phone"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=100)
    first_name: str
    last_name: str
    email: str | None = None
    phone: str | None = Field(default=None, max_length=20)
    source: str
    status: str
    score: int
    created_at: datetime = _created()


class Chat(SQLModel, table=True):
    """A conversation: one per tenant and phone (direct) or jid (group, unresolved LID)."""

    __tablename__ = "chats"
    __table_args__ = (
        UniqueConstraint("tenant_id", "jid", name="uq_chats_tenant_jid"),
        UniqueConstraint("tenant_id", "phone", name="uq_chats_tenant_phone"),
        Index("ix_chats_tenant_last_message", "tenant_id", "last_message_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=100)
    session_id: int = Field(foreign_key="sessions.id")
    kind: str = Field(max_length=20)
    jid: str = Field(max_length=128)
    phone: str | None = Field(default=None, max_length=20)
    lid: str | None = Field(default=None, max_length=64)
    name: str | None = None
    lead_id: int | None = Field(default=None, foreign_key="leads.id")
    status: str = Field(default="OPEN", max_length=20)
    assigned_user_id: str | None = Field(default=None, max_length=100, index=True)
    last_message_at: datetime | None = _ts()
    unread_count: int = 0
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Message(SQLModel, table=True):
    """A message; unique per session and bare provider stanza id."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("session_id", "provider_message_id", name="uq_messages_session_pmid"),
        Index("ix_messages_chat_sent", "chat_id", "sent_at"),
        Index("ix_messages_media_status", "media_status", "media_next_at"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    tenant_id: str = Field(max_length=100)
    chat_id: int = Field(foreign_key="chats.id")
    session_id: int = Field(foreign_key="sessions.id")
    provider_message_id: str = Field(max_length=128)
    from_me: bool
    type: str = Field(max_length=20)
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    sender_jid: str | None = Field(default=None, max_length=128)
    sender_phone: str | None = Field(default=None, max_length=20)
    push_name: str | None = None
    media_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    media_mimetype: str | None = None
    media_filename: str | None = None
    media_size: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    media_voice: bool = False
    # The media worker's columns (wasync.media): status, why, fetch rounds, the content key
    # (SHA-256) in the media store, the provider's locator, when stored, next try / lease.
    media_status: str = Field(
        default="NONE", sa_column=Column(String(20), nullable=False, server_default="NONE")
    )
    media_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    media_attempts: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    media_key: str | None = Field(default=None, max_length=64)
    media_ref: dict[str, Any] | None = _json()
    media_stored_at: datetime | None = _ts()
    media_next_at: datetime | None = _ts()
    reply_to: str | None = Field(default=None, max_length=128)
    extra: dict[str, Any] | None = _json()
    sent_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ack: int | None = None
    edited: bool = False
    edited_at: datetime | None = _ts()
    revoked: bool = False
    revoked_at: datetime | None = _ts()
    source: str = Field(max_length=20)
    raw: dict[str, Any] | None = _json()
    created_at: datetime = _created()


class PendingUpdate(SQLModel, table=True):
    """An ack, edit or revoke that arrived before its message; applied when it lands."""

    __tablename__ = "pending_updates"
    session_id: int = Field(foreign_key="sessions.id", primary_key=True)
    provider_message_id: str = Field(max_length=128, primary_key=True)
    ack: int | None = None
    edit_body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    edited_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()
    created_at: datetime = _created()


class Notification(SQLModel, table=True):
    """A notification for one user of a tenant (new lead: one per admin)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_tenant_user", "tenant_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=100)
    user_id: str = Field(max_length=100)
    type: str = Field(max_length=40)
    title: str
    message: str
    link: str | None = None
    chat_id: int | None = None
    lead_id: int | None = None
    read: bool = False
    read_at: datetime | None = _ts()
    created_at: datetime = _created()


class EventRow(SQLModel, table=True):
    """The event log: one row per change, ids increasing and visible in id order."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_tenant_id", "tenant_id", "id"),
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    tenant_id: str = Field(max_length=100)
    type: str = Field(max_length=40)
    chat_id: int | None = None
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    data: dict[str, Any] | None = _json()
    created_at: datetime = _created()


class Cursor(SQLModel, table=True):
    """How far polling got, per session and scope (a chat jid, or '*' for the session)."""

    __tablename__ = "cursors"
    session_id: int = Field(foreign_key="sessions.id", primary_key=True)
    scope: str = Field(max_length=128, primary_key=True)
    ts: float
    updated_at: datetime = _created()


class Outbox(SQLModel, table=True):
    """A message to send; survives restarts; one row per idempotency key."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_outbox_tenant_idem"),
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=100)
    session_id: int = Field(foreign_key="sessions.id")
    chat_id: int | None = Field(default=None, foreign_key="chats.id")
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    idempotency_key: str | None = Field(default=None, max_length=200)
    to_jid: str = Field(max_length=128)
    kind: str = Field(max_length=20)
    payload: dict[str, Any] | None = _json()
    status: str = Field(default="QUEUED", max_length=20)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    provider_message_id: str | None = Field(default=None, max_length=128)
    next_attempt_at: datetime | None = _ts()
    created_at: datetime = _created()
    updated_at: datetime = _created()
    # When the request whose outcome is unknown started: reconciled, never resent, until
    # `[send] reconcile_grace_s` after it (`wasync.delivery`).
    unknown_since: datetime | None = _ts()
    # The first refusal of a session that was down, in the wait still going on: the row waits
    # for the session at most `[send] max_session_wait_s` from it.
    session_down_since: datetime | None = _ts()


class DeadLetter(SQLModel, table=True):
    """What could not be stored as it came, with the error: a raw body that could not be
    parsed (`kind` `unparsed`, replayable), one event the store refused or that broke a
    column's limits (`quarantined`: its session, provider id and reason; `body` is the event
    as JSON), or a sample of bodies no session signed (`unauthenticated`: capped in rows and
    bytes, oldest dropped, never replayed). `body_sha256` makes "already kept" an index probe.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_body_sha256", "body_sha256", "kind"),
        Index("ix_dead_letters_kind_id", "kind", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=20)
    provider: str | None = Field(default=None, max_length=20)
    session_name: str | None = Field(default=None, max_length=100)
    tenant_id: str | None = Field(default=None, max_length=100)
    error: str = Field(sa_column=Column(Text, nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: dict[str, Any] | None = _json()
    created_at: datetime = _created()
    replayed_at: datetime | None = _ts()
    kind: str = Field(
        default="unparsed",
        sa_column=Column(String(20), nullable=False, server_default="unparsed"),
    )
    session_id: int | None = None
    provider_message_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    body_sha256: str | None = Field(default=None, max_length=64)


class BackfillCheckpoint(SQLModel, table=True):
    """A window of one chat's history that `wasync backfill` read and stored completely.

    Written after the window's messages committed; a rerun skips covered windows. `chat_jid` is
    the chat id as the provider lists it; `messages` counts what the window held.
    """

    __tablename__ = "backfill_checkpoints"
    session_id: int = Field(foreign_key="sessions.id", primary_key=True)
    chat_jid: str = Field(max_length=128, primary_key=True)
    window_start: datetime = Field(
        sa_column=Column(UTCDateTime(), primary_key=True, nullable=False)
    )
    window_end: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    messages: int = 0
    done_at: datetime = _created()


class SessionHealthRow(SQLModel, table=True):
    """A session's health from message flow (`wasync.health`): its state (`OK`, `STALLED`,
    `DOWN`) and why, the last successful poll, the newest inbound message (its provider
    time), the last time a webhook delivered one of its messages, the latest webhook-vs-poll
    lag (seconds polling saw a message after its webhook; negative: polling was first), and
    the messages reconciliation recovered (in total, and per minute over the last hour).
    """

    __tablename__ = "session_health"
    session_id: int = Field(foreign_key="sessions.id", primary_key=True)
    state: str | None = Field(default=None, max_length=20)
    reason: str | None = Field(default=None, max_length=40)
    state_at: datetime | None = _ts()
    last_poll_at: datetime | None = _ts()
    last_inbound_at: datetime | None = _ts()
    last_webhook_at: datetime | None = _ts()
    webhook_lag_s: float | None = None
    recovered_total: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    recovered_recent: list[Any] | None = _json()
    suspect_at: datetime | None = _ts()
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Node(SQLModel, table=True):
    """A `wasync run` on Postgres, alive while `expires_at` is ahead (its heartbeat moves it):
    the live rows are how many nodes share the sessions."""

    __tablename__ = "nodes"
    id: str = Field(primary_key=True, max_length=200)
    started_at: datetime = _created()
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SessionLease(SQLModel, table=True):
    """The node polling, sending and fetching media for a session (Postgres); free for another
    node once `expires_at` has passed."""

    __tablename__ = "session_leases"
    session_id: int = Field(foreign_key="sessions.id", primary_key=True)
    node_id: str = Field(max_length=200, index=True)
    acquired_at: datetime = _created()
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SendSlot(SQLModel, table=True):
    """A session's send rate shared by every process (GCRA): `tat` is the theoretical arrival
    time of the next send, in epoch seconds by the database's clock."""

    __tablename__ = "send_slots"
    session_id: int = Field(foreign_key="sessions.id", primary_key=True)
    tat: float = Field(sa_column=Column(Float(precision=53), nullable=False))
