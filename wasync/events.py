"""What `Pipeline.ingest()` consumes: inbound events and outbound commands.

Events (`Message`, `Ack`, `Revoke`, `Edit`, `Reaction`, `PollVote`, `SessionStatus`) are what
the providers said; adapters turn provider JSON into these frozen values with pure functions,
and nothing outside `wasync.providers` reads provider JSON. Commands are the changes wasync makes
itself (a send queued, accepted or failed; an agent's assignment, status change or read): they
run in the same transaction type as events, by the same rules (one writer, one ack order,
every event row scoped by its chat). `CursorUpdate` moves a poll cursor in that transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from wasync.principal import Principal


class AckLevel(enum.IntEnum):
    """Delivery state of a message, WAHA's numbering (`WAMessageAck`); higher is further along."""

    ERROR = -1
    PENDING = 0
    SERVER = 1
    DEVICE = 2
    READ = 3
    PLAYED = 4


class ChatKind(enum.StrEnum):
    """What a chat is: a person, a group, or a broadcast stream we normally drop."""

    DIRECT = "direct"
    GROUP = "group"
    BROADCAST = "broadcast"
    NEWSLETTER = "newsletter"


class MessageType(enum.StrEnum):
    """The `messages.type` column; voice notes are `audio` with `Media.voice`."""

    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "contact"
    REACTION = "reaction"
    POLL = "poll"  # a poll's question as body, `extra["poll"]` its options and votes
    OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """Who a chat or a sender is.

    `jid` is the canonical key: `<phone>@s.whatsapp.net` when the phone is known, else
    `<lid>@lid`, or the group / broadcast jid. `phone` is canonical digits (see `wasync.phones`).
    """

    jid: str
    kind: ChatKind = ChatKind.DIRECT
    phone: str | None = None
    lid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """Media metadata; the bytes stay at the provider (`url` when it gave one)."""

    mimetype: str | None = None
    filename: str | None = None
    url: str | None = None
    size: int | None = None
    voice: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message seen in a chat, incoming or our own (`from_me`)."""

    session_id: int
    provider_message_id: str
    chat: Address
    from_me: bool
    type: MessageType
    timestamp: datetime
    body: str | None = None
    sender: Address | None = None
    ack: AckLevel | None = None
    media: Media | None = None
    push_name: str | None = None
    reply_to: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] | None = None
    # The provider's own name for the content (`messageType`, a proto key, a WEBJS type):
    # what an `other` message was, for the unparsed-messages metric. Not stored.
    provider_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """A delivery receipt for one message; applied monotonically."""

    session_id: int
    provider_message_id: str
    ack: AckLevel
    chat: Address | None = None
    from_me: bool | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Revoke:
    """A message deleted for everyone."""

    session_id: int
    provider_message_id: str
    chat: Address | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Edit:
    """A message whose text was edited; `body` is the new text."""

    session_id: int
    provider_message_id: str
    body: str | None
    chat: Address | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reaction:
    """An emoji reaction to `target_message_id`; an empty `emoji` removes it."""

    session_id: int
    provider_message_id: str
    target_message_id: str
    emoji: str
    chat: Address
    from_me: bool
    timestamp: datetime
    sender: Address | None = None
    raw: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PollVote:
    """`voter` chose `options` in the poll `provider_message_id` (an update of the poll
    message, never a message of its own); no options takes the vote back."""

    session_id: int
    provider_message_id: str  # the poll's id
    voter: str  # the voter's jid, or `me` for the session's own account
    options: tuple[str, ...]
    chat: Address | None = None
    timestamp: datetime | None = None
    vote_id: str | None = None  # the vote's own message id, when the provider lists votes


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStatus:
    """A provider session changed state (`WORKING`, `SCAN_QR_CODE`, `open`, `close`, ...)."""

    session_id: int
    status: str
    timestamp: datetime | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


Event = Message | Ack | Revoke | Edit | Reaction | PollVote | SessionStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class CursorUpdate:
    """Move a poll cursor, in the same transaction as the messages it covers."""

    session_id: int
    scope: str = "*"
    ts: float


# --- commands -----------------------------------------------------------------------------------


class OutboxStatus(enum.StrEnum):
    """The `outbox.status` column."""

    QUEUED = "QUEUED"
    SENDING = "SENDING"
    UNKNOWN = "UNKNOWN"
    SENT = "SENT"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True, kw_only=True)
class SendQueued:
    """A checked send request: its outbox row (QUEUED), the outbound message (ack PENDING,
    a placeholder id until the provider names it), and, for a phone we write to first, the
    chat and its lead (no admin notification: we wrote). An `idempotency_key` already used
    gives the first row back."""

    tenant_id: str
    session_id: int
    to_jid: str
    chat_id: int | None = None  # a known chat; else the direct chat of `phone`
    phone: str | None = None
    kind: str
    payload: Mapping[str, Any]
    idempotency_key: str | None = None
    type: MessageType
    body: str | None = None
    media: Media | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendAccepted:
    """The provider took a claimed row (`attempts` fences it): SENT, and the message row gets
    the provider's id (an echo that got in first is merged, parked updates applied)."""

    outbox_id: int
    attempts: int
    tenant_id: str
    session_id: int
    chat_id: int | None
    message_id: int | None
    provider_message_id: str
    timestamp: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendFailed:
    """A claimed row will never be sent: FAILED, and its message's ack ERROR."""

    outbox_id: int
    attempts: int
    tenant_id: str
    session_id: int
    chat_id: int | None
    message_id: int | None
    error: str


ChatField = Literal["assigned_user_id", "status", "unread_count"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeChat:
    """An agent sets one field of a chat it may see (assign, open/close, mark read)."""

    actor: Principal
    chat_id: int
    field: ChatField
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadNotification:
    """An agent marks one of its notifications read."""

    actor: Principal
    notification_id: int


Command = SendQueued | SendAccepted | SendFailed | ChangeChat | ReadNotification
