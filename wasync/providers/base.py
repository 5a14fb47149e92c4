"""The provider seam: a `ProviderKind` describes each provider, a small `Provider` Protocol is
one session's I/O.

A provider adapter owns the I/O with one WAHA session or Evolution instance through an
injected `httpx.AsyncClient`; turning JSON into events is left to the pure `parse_*` functions
of its package. Everything else wasync needs to know about a provider (auth header, webhook
detection and signature, admin calls) is a field of its kind, so nothing outside `providers/`
branches on a provider's name. Nothing here reads the config or the database: a session is
reached through plain values (`Endpoint`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from wasync.errors import PayloadError
from wasync.events import Edit, Event, Message, PollVote, Reaction, Revoke, Unparsed
from wasync.providers.http import Http
from wasync.providers.sending import NumberCheck, Outgoing, SendReceipt

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatHead:
    """What a chat list says about one chat: its id and its newest message.

    A hint, never proof of "nothing new": the newest message need not be the one shown when
    several share its second (Evolution orders by second only, evolution.md 5.3), so the
    chat's unread count (a new incoming message raises it) and a fingerprint of the shown
    message's content (`last_rev`: an edit or a revoke in place changes it) come along.
    """

    chat_id: str
    last_ts: float | None
    last_id: str | None
    last_ack: int | None = None
    last_message: Any = None
    unread: int | None = None
    last_rev: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """One page of messages: parsed events plus what paging needs."""

    events: Sequence[Event]
    ids: Sequence[str]
    min_ts: float | None
    max_ts: float | None
    size: int
    total: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionState:
    """A provider session's state, verbatim (`WORKING`, `open`, ...) and whether it can serve."""

    status: str
    working: bool
    engine: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # Why polling cannot work although the session is up, with the fix (WAHA NOWEB without
    # its store answers 400 to every messages and overview call, waha.md 2).
    blocker: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where and as whom to reach one provider session: plain values (the glue from a
    configured session is `wasync.registry.provider_for`)."""

    base_url: str
    api_key: str | None
    session: str  # the WAHA session / Evolution instance name
    session_id: int  # its database id, stamped on every parsed event
    engine: str | None = None  # WAHA's engine when configured (else asked)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSource:
    """One message's file as wasync knows it, for `Provider.fetch_media`: `url` is a URL the
    provider gave (None once it may have expired), `ref` the provider's locator (`Media.ref`,
    kept in `media_ref`)."""

    provider_message_id: str
    chat_jid: str
    from_me: bool
    url: str | None = None
    ref: Mapping[str, Any] = field(default_factory=dict)
    voice: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaFile:
    """A file a provider hands over: its bytes in chunks, and what the provider says of it
    (`size` is checked against the bytes; None when the provider does not say)."""

    chunks: AsyncIterator[bytes]
    mimetype: str | None = None
    filename: str | None = None
    size: int | None = None


class Provider(Protocol):
    """A WAHA session or an Evolution instance, as the poller, backfill and sender see it."""

    name: str
    session_id: int

    @property
    def requests(self) -> int:
        """HTTP requests made so far (retries included): the poller and backfill report it."""
        ...

    @property
    def short_pages(self) -> bool:
        """True when a page may hold fewer rows than asked before the end (only an empty page
        ends a walk then)."""
        ...

    @property
    def deletes_revoked(self) -> bool:
        """True when a message revoked for everyone disappears from what the provider lists
        (WAHA NOWEB's store deletes the row): a listed message that vanished was revoked."""
        ...

    async def state(self) -> SessionState:
        """Ask the provider for the session state."""
        ...

    async def supports_all_chats(self) -> bool:
        """True when one request can list recent messages of every chat (WAHA GOWS/NOWEB)."""
        ...

    async def chat_heads(self, *, limit: int, offset: int) -> list[ChatHead]:
        """Chats, newest activity first."""
        ...

    async def messages(
        self, chat_id: str | None, *, since: float, until: float | None, limit: int, page: int
    ) -> Page:
        """Messages of one chat (or every chat when `chat_id` is None) in `[since, until]`."""
        ...

    def head_events(self, head: ChatHead) -> list[Event]:
        """Events carried by a chat head's newest message (free: no request)."""
        ...

    def chat_id(self, jid: str) -> str:
        """The provider's chat id for a canonical jid (`<phone>@s.whatsapp.net`, `…@lid`,
        `…@g.us`), where the poller has not learned the provider's own."""
        ...

    async def gone(self, chat_id: str | None, message_id: str) -> bool:
        """True when the provider answers that it does not hold the message (any more)."""
        ...

    async def check_number(self, phone: str) -> NumberCheck:
        """Is this canonical phone on WhatsApp, and under which jid (Brazil: 12 or 13 digits)?"""
        ...

    async def send(self, outgoing: Outgoing) -> SendReceipt:
        """Send one message with exactly one request (`sending.post_once` semantics)."""
        ...

    async def sent_messages(self, to_jid: str, *, since: float) -> list[Message]:
        """Our own (fromMe) messages in the chat of `to_jid` since `since`: for reconciling a
        send whose outcome is unknown."""
        ...

    def fetch_media(
        self, source: MediaSource, *, convert_voice: bool = False
    ) -> AbstractAsyncContextManager[MediaFile]:
        """Open a message's file: its URL while fresh, else the provider's re-download path.
        MediaGone when the provider lost it; TransientProviderError / RateLimited (also while
        reading the chunks) are worth another try; the rest is final."""
        ...


def page_of(events: Sequence[Event], *, size: int, total: int | None = None) -> Page:
    """A Page from parsed events; `size` counts the rows the provider returned."""
    ids: list[str] = []
    stamps: list[float] = []
    for ev in events:
        ids.append(_row_id(ev))
        ts = getattr(ev, "timestamp", None)
        if ts is not None:
            stamps.append(ts.timestamp())
    return Page(
        events=list(events),
        ids=[i for i in ids if i],
        min_ts=min(stamps) if stamps else None,
        max_ts=max(stamps) if stamps else None,
        size=size,
        total=total,
    )


def edit_of(message: Message, at: datetime | None = None) -> Edit:
    """The edit a listed row shows: the message's text now is the edited one."""
    return Edit(
        session_id=message.session_id,
        provider_message_id=message.provider_message_id,
        body=message.body,
        chat=message.chat,
        timestamp=at or message.timestamp,
    )


def revoke_of(message: Message) -> Revoke:
    """The revoke a listed row shows (deleted for everyone, still listed)."""
    return Revoke(
        session_id=message.session_id,
        provider_message_id=message.provider_message_id,
        chat=message.chat,
    )


def _row_id(ev: Event) -> str:
    """The id of the provider row an event came from (a vote's own id, not its poll's)."""
    if isinstance(ev, PollVote) and ev.vote_id:
        return ev.vote_id
    return getattr(ev, "provider_message_id", "") or ""


def safe_parse(parse: Callable[..., Event], row: Any, session_id: int) -> Event | None:
    """`parse(row)`; for a row that cannot be parsed, an `Unparsed` event that ingest keeps in
    `dead_letters` (one bad message never stops a page, and is not lost); None for a row
    that is not even an object."""
    if not isinstance(row, Mapping):
        return None
    try:
        return parse(row, session_id=session_id)
    except PayloadError as exc:
        reason = f"the provider's message could not be read: {exc}"
    except Exception as exc:  # a parser bug must cost one row, not the session's polling
        log.exception("provider message kept unparsed: the parser failed on it")
        reason = f"the parser failed on the provider's message: {type(exc).__name__}: {exc}"
    return Unparsed(
        session_id=session_id, provider_message_id=_listed_id(row), reason=reason, raw=row
    )


def _listed_id(row: Mapping[str, Any]) -> str:
    """The id a listed row shows (Evolution `key.id`: its row's own `id` is a database id;
    WAHA `id`, `id._serialized`), or ""."""
    key = row.get("key")
    found = key.get("id") if isinstance(key, Mapping) else row.get("id")
    if isinstance(found, Mapping):
        found = found.get("_serialized")
    return found if isinstance(found, str) else ""


# --- the description of a provider ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookState:
    """What one provider session has registered, for `status` and `register` output."""

    session: str  # the label the caller named it by (`tenant/session`)
    url: str | None
    events: list[str]
    signed: bool
    changed: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSetup:
    """What `wasync sessions configure` did to one provider session."""

    session: str  # the label the caller named it by (`tenant/session`)
    changed: bool
    note: str = ""


class WebhookAdmin(Protocol):
    """A provider's admin calls (`wasync webhooks register|status`, `wasync sessions
    configure`, `wasync doctor`)."""

    async def register(
        self, http: Http, session: str, url: str, secret: str | None, *, label: str
    ) -> WebhookState:
        """Make the provider deliver `session`'s events to `url`, signed with `secret`;
        idempotent: nothing is sent when the provider already has it."""
        ...

    async def status(self, http: Http, session: str, *, label: str) -> WebhookState:
        """What the provider has registered for `session`."""
        ...

    async def prepare_polling(self, http: Http, session: str, *, label: str) -> SessionSetup:
        """Turn on what polling `session` needs (idempotent: nothing is sent when it is on)."""
        ...

    async def polling_gaps(self, http: Http, session: str) -> str | None:
        """What polling `session` cannot see that its webhooks carry (`wasync doctor` warns
        when webhooks are off); None when polling sees it all."""
        ...


class WebhookParser(Protocol):
    """A provider's pure webhook parser: an envelope into events (PayloadError when it is not
    one, `[]` for events wasync does not handle)."""

    def __call__(
        self, body: Mapping[str, Any], /, *, session_id: int, received_at: datetime | None = None
    ) -> list[Event]: ...


class MessageParser(Protocol):
    """A provider's pure message parser: one message as the provider lists it into an event."""

    def __call__(
        self, data: Mapping[str, Any], /, *, session_id: int, received_at: datetime | None = None
    ) -> Message | Reaction: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderKind:
    """Everything wasync knows about one provider, as one frozen value (`wasync.providers.KINDS`
    holds one per provider): consumers call these instead of branching on a provider's name."""

    name: str  # config `provider`, `/api/webhooks/{name}`, the `provider` column
    auth_header: str  # the header that carries the API key
    secret_headers: frozenset[str]  # request headers (lower case) never kept in dead_letters
    detect: Callable[[Any], bool]  # is this webhook body one of ours?
    session_name: Callable[[Mapping[str, Any]], str | None]  # the session a body names
    session_in_raw: Callable[[bytes], str | None]  # ... found in a body that is not JSON
    # (secret, headers, raw body) -> authentic? Constant time; headers case-insensitive.
    verify: Callable[[str, Mapping[str, str], bytes], bool]
    parse_webhook: WebhookParser
    parse_message: MessageParser
    adapter: Callable[[Http, Endpoint], Provider]  # one session's I/O
    admin: WebhookAdmin
    # A message an agent typed on the phone app, never an API send (reconciling a send).
    typed_on_phone: Callable[[Message], bool]
    # The provider may append `/<event>` to the webhook URL (Evolution `byEvents`), so the
    # app serves `/api/webhooks/{name}/{event}` and `/api/webhooks/whatsapp/{event}` for it.
    event_suffix: bool = False
