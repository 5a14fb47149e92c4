"""The provider seam: one small Protocol, implementations picked by name.

A provider adapter owns the I/O with one WAHA session or Evolution instance through an
injected `httpx.AsyncClient`; turning JSON into events is left to the pure `parse_*` functions
of its module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from wasync.errors import PayloadError
from wasync.events import Event, Message
from wasync.providers.sending import NumberCheck, Outgoing, SendReceipt

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatHead:
    """What a chat list says about one chat: its id and its newest message."""

    chat_id: str
    last_ts: float | None
    last_id: str | None
    last_ack: int | None = None
    last_message: Any = None


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


class Provider(Protocol):
    """A WAHA session or an Evolution instance, as the poller and backfill see it."""

    name: str
    session_id: int

    @property
    def short_pages(self) -> bool:
        """True when a page may hold fewer rows than asked before the end (only an empty page
        ends a walk then)."""
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


def page_of(events: Sequence[Event], *, size: int, total: int | None = None) -> Page:
    """A Page from parsed events; `size` counts the rows the provider returned."""
    ids: list[str] = []
    stamps: list[float] = []
    for ev in events:
        ids.append(ev.provider_message_id if hasattr(ev, "provider_message_id") else "")
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


def safe_parse(parse: Callable[..., Event], row: Any, session_id: int) -> Event | None:
    """`parse(row)`, or None (logged) for a row that cannot be parsed: one bad message never
    stops a page."""
    if not isinstance(row, Mapping):
        return None
    try:
        return parse(row, session_id=session_id)
    except PayloadError as exc:
        log.warning("provider message skipped: %s", exc)
        return None
