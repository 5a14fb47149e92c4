"""What `Pipeline.ingest()` consumes: inbound events and outbound commands.

Events (`Message`, `Ack`, `Revoke`, `Edit`, `Reaction`, `PollVote`, `SessionStatus`) are what
the providers said; adapters turn provider JSON into these frozen values with pure functions,
and nothing outside `wasync.providers` reads provider JSON. Commands are the changes wasync makes
itself (a send queued, accepted or failed; an agent's assignment, status change or read; a
lead edited): they run in the same transaction type as events, by the same rules (one writer,
one ack order, every event row scoped by its chat). `CursorUpdate` moves a poll cursor in that
transaction. The media commands (`MediaClaim`, `MediaStored`, `MediaFailed`, `MediaExpired`,
`MediaRequeue`) are how the media worker and the CLI move a message's `media_status`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from wasync.health import ObserveHealth, RecordPolls
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


MEDIA_TYPES = frozenset(
    {
        MessageType.IMAGE,
        MessageType.VIDEO,
        MessageType.AUDIO,
        MessageType.DOCUMENT,
        MessageType.STICKER,
    }
)


class MediaStatus(enum.StrEnum):
    """The `messages.media_status` column: where a message's file is."""

    NONE = "NONE"  # no file to keep (text, location, ...), or not tracked (history)
    PENDING = "PENDING"  # the media worker will fetch it
    STORED = "STORED"  # in the media store under `media_key`
    FAILED = "FAILED"  # given up after retries (`wasync media retry` queues it again)
    EXPIRED = "EXPIRED"  # the provider no longer has it (`media_reason` says why)


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """Media metadata as the provider gave it; the worker fetches the bytes later.

    `url` is a fetchable address when the provider gave one; `ref` is the provider's own
    locator of the file (kept in `media_ref`, read back by its `fetch_media`); `data` holds
    bytes the provider sent inline (Evolution `webhookBase64`), never written to the row.
    """

    mimetype: str | None = None
    filename: str | None = None
    url: str | None = None
    size: int | None = None
    voice: bool = False
    ref: Mapping[str, Any] | None = None
    data: bytes | None = field(default=None, repr=False)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Unparsed:
    """A listed row its parser refused: kept whole in `dead_letters` (`unparsed`), not lost."""

    session_id: int
    provider_message_id: str  # the row's own id when it shows one, else ""
    reason: str
    raw: Mapping[str, Any]


Event = Message | Ack | Revoke | Edit | Reaction | PollVote | SessionStatus | Unparsed


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
class ClaimRef:
    """An outbox row a sender holds: its outcome is fenced on `attempts`, so a sender whose
    lease was taken over cannot overwrite the new owner's work."""

    outbox_id: int
    attempts: int
    tenant_id: str
    session_id: int
    chat_id: int | None
    message_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendAccepted:
    """The provider took a claimed row: SENT, and the message row gets the provider's id (an
    echo that got in first is merged, parked updates applied)."""

    claim: ClaimRef
    provider_message_id: str
    timestamp: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendFailed:
    """A claimed row will never be sent: FAILED, and its message's ack ERROR."""

    claim: ClaimRef
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


LeadField = Literal["first_name", "last_name", "status"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateLead:
    """An agent edits a lead it may see through one of the lead's chats (name, status)."""

    actor: Principal
    lead_id: int
    changes: Mapping[LeadField, str]


# --- media commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaClaim:
    """Take PENDING media that are due for `lease_s` (bumping `media_attempts`, the fence of
    the outcome): at most `limit` rows, `per_session` per session, of `sessions` (None: every
    session) but not of `exclude`, or only `message_ids`. Answers the claimed jobs."""

    limit: int
    per_session: int
    lease_s: float
    sessions: frozenset[int] | None = None
    exclude: frozenset[int] = frozenset()
    message_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaStored:
    """A claimed message's file is in the media store: STORED, with its key (SHA-256), size,
    checked mimetype and file name. Answers whether the row changed."""

    message_id: int
    key: str
    size: int
    mimetype: str
    filename: str | None = None
    note: str | None = None  # e.g. the bytes are not the type the provider declared


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaFailed:
    """A claimed fetch did not work: PENDING again after `retry_in_s`, or FAILED when None.
    Fenced on the claim's `attempts`; answers whether the row changed."""

    message_id: int
    attempts: int
    reason: str
    retry_in_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaExpired:
    """The provider no longer has the file: EXPIRED with the reason. Fenced like MediaFailed."""

    message_id: int
    attempts: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaRequeue:
    """Media of `statuses` (FAILED for `wasync media retry`, NONE for `backfill --media`)
    back to PENDING, newest first, at most `limit`: of one tenant, `session_ids`, sent in
    `[since, until]`. Answers the message ids queued."""

    statuses: frozenset[MediaStatus]
    tenant_id: str | None = None
    session_ids: frozenset[int] | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None


MediaCommand = MediaClaim | MediaStored | MediaFailed | MediaExpired | MediaRequeue

AgentAction = ChangeChat | ReadNotification | UpdateLead  # what REST's agents do (`actions`)
HealthCommand = ObserveHealth | RecordPolls
Command = SendQueued | SendAccepted | SendFailed | AgentAction | MediaCommand | HealthCommand
