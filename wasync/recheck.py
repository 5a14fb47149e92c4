"""The ack check: recent messages read again on a slower cadence, for what polling the newest
messages cannot see.

A poll cycle reads what is new. Delivery ticks, edits, revokes and reactions change messages
that are not new: WAHA NOWEB/GOWS are read as one stream by message time, so a READ on an
older message never shows; Evolution's `findChats` head keeps its `status` column for our
own messages, which Evolution never updates (`if (!key.fromMe)` in its messages.update
handler); WhatsApp Web keeps an edit's original time. So every `poll.ack_interval_s`, for
the messages we sent within `poll.ack_window_h` that are still below READ, each provider is
asked again for what it holds now:

- a provider that lists every chat at once (WAHA GOWS, NOWEB) in one walk of the session's
  messages since the oldest such message (and, once after the newest second moved, its
  overlap window, for rows of that second that came late);
- a chat-list provider (WAHA WEBJS, Evolution) chat by chat: its recent page (newest first)
  since that chat's oldest one;
  a chat whose newest waiting message is older than ten checks is asked again only after a
  tenth of that age (a customer who has not opened a chat for hours rarely does so in the
  next two minutes), which bounds the cost of many unread chats.

Everything read goes through the poller's ingest, which forwards only what changed; ingest's
one ack rule then announces each real step once. Where the provider deletes a revoked
message (NOWEB), a message the poller had seen listed that is gone from a complete walk, and
that the provider confirms it no longer holds, is a revoke. Nothing is due, and nothing is
asked, when no message waits.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BindParameter, Select, and_, bindparam, func, or_, select

from wasync import phones
from wasync.config import PollConfig
from wasync.events import AckLevel, Event, MessageType, Revoke
from wasync.paging import window_pages
from wasync.providers.base import Provider
from wasync.seen import Seen
from wasync.store import Store
from wasync.store import models as m

T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]
T_SESSIONS = m.Session.__table__  # type: ignore[attr-defined]
PLACEHOLDER = "wasync-"  # the provider id of a send not accepted yet (`wasync.outbox`)
# A message must have been listed this long before it can be missed: the provider's store
# may not hold a message sent a moment ago yet.
VANISH_GRACE_S = 60.0
# A chat is asked again after `ack_interval_s`, or this share of its newest waiting
# message's age when that is longer.
AGE_SHARE = 0.1
# Types a store that deletes revoked rows never lists anyway (NOWEB keeps reactions on their
# target, `isRealMessage`): their absence says nothing.
UNLISTED = (MessageType.REACTION.value,)

Ingest = Callable[[Sequence[Event]], Awaitable[None]]
SPREAD_STEP = 0.6180339887498949  # the golden ratio's fraction: consecutive ids spread evenly


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiting:
    """A chat with messages we sent that are still below READ, and the oldest one's time."""

    jid: str
    phone: str | None
    lid: str | None
    since: float
    newest: float


class Recheck:
    """One session's ack check (see the module docstring); `run()` when `due()`."""

    def __init__(
        self,
        provider: Provider,
        store: Store,
        poll: PollConfig,
        *,
        ingest: Ingest,
        seen: Seen,
        chat_ids: Callable[[], Iterable[str]],
        session_cursor: Callable[[], float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.store = store
        self.poll = poll
        self.ingest = ingest
        self.seen = seen
        self.chat_ids = chat_ids
        self.session_cursor = session_cursor
        self.clock = clock
        # The first check comes within one interval, at a point of it the session sets: the
        # checks of sessions started together (every one, at start-up) would otherwise fall
        # in the same cycle for ever, a thousand reads of the messages table at once.
        offset = (provider.session_id * SPREAD_STEP) % 1.0
        self.next_at = clock() + poll.ack_interval_s * (1.0 - offset)
        self._swept: float | None = None  # the session cursor the last stream sweep covered
        self._next: dict[str, float] = {}  # chat jid -> when it is due again (chat lists)
        self.runs = 0

    def due(self) -> bool:
        """True when a check is due (every `ack_interval_s`; never with `ack_window_h = 0`)."""
        return self.poll.ack_window_h > 0 and self.clock() >= self.next_at

    async def run(self) -> int:
        """One check; returns how many rows were read again."""
        self.next_at = self.clock() + self.poll.ack_interval_s
        self.runs += 1
        waiting = await self.waiting()
        if await self.provider.supports_all_chats():
            return await self._sweep(waiting)
        read, now = 0, self.clock()
        ids = self._provider_ids()
        self._next = {w.jid: self._next.get(w.jid, now) for w in waiting}
        for chat in waiting:
            if now < self._next[chat.jid]:
                continue
            read += await self._read(self._chat_id(chat, ids), chat.since)
            wait = max(self.poll.ack_interval_s, (now - chat.newest) * AGE_SHARE)
            self._next[chat.jid] = now + wait
        return read

    async def waiting(self) -> list[Waiting]:
        """Chats of this session with our messages of the window still below READ."""
        start = datetime.fromtimestamp(self.clock() - self.poll.ack_window_h * 3600, UTC)
        params = {"start": start, "session_id": self.provider.session_id}
        async with self.store.read() as conn:
            rows = (await conn.execute(_waiting_query(), params)).all()
        return [
            Waiting(
                jid=r.jid, phone=r.phone, lid=r.lid, since=_epoch(r.since), newest=_epoch(r.newest)
            )
            for r in rows
        ]

    async def _read(self, chat_id: str | None, since: float) -> int:
        """The chat's recent page (its newest `page_size` messages from `since` on: WAHA WEBJS
        and Evolution list newest first) into the poller's ingest; returns the rows read."""
        read = 0
        pages = window_pages(
            self.provider,
            chat_id,
            since=since,
            until=None,
            page_size=self.poll.page_size,
            max_pages=1,
        )
        async for page in pages:
            read += page.size
            await self.ingest(page.events)
        return read

    async def _sweep(self, waiting: Sequence[Waiting]) -> int:
        """The one walk of a stream provider: since the oldest waiting message, or the
        overlap window when the newest second moved since the last sweep."""
        cursor = self.session_cursor()
        starts = [w.since for w in waiting]
        if self._swept != cursor:
            starts.append(cursor - self.poll.overlap_s)
        if not starts:
            return 0
        floor = self.clock() - self.poll.ack_window_h * 3600
        since = max(min(starts), floor)
        listed: set[str] = set()
        read = 0
        pages = window_pages(
            self.provider, None, since=since, until=None, page_size=self.poll.page_size
        )
        async for page in pages:
            read += page.size
            listed.update(page.ids)
            await self.ingest(page.events)
        self._swept = cursor
        if self.provider.deletes_revoked:
            await self.ingest(await self._vanished(since, listed))
        return read

    async def _vanished(self, since: float, listed: set[str]) -> list[Event]:
        """Revokes for messages this poller saw listed, now missing from a complete walk from
        `since`, that the provider confirms it no longer holds."""
        c = T_MESSAGES.c
        start = datetime.fromtimestamp(since, UTC)
        end = datetime.fromtimestamp(self.clock() - VANISH_GRACE_S, UTC)
        query = select(c.provider_message_id).where(
            c.chat_id.in_(_recent_chats(start, self.provider.session_id)),
            c.session_id == self.provider.session_id,
            c.revoked.is_(False),
            c.sent_at >= start,
            c.sent_at <= end,
            c.type.not_in(UNLISTED),
        )
        async with self.store.read() as conn:
            stored = [r[0] for r in (await conn.execute(query)).all()]
        missing = [pmid for pmid in stored if pmid not in listed and pmid in self.seen]
        gone: list[Event] = []
        for pmid in missing:
            if await self.provider.gone(None, pmid):
                revoke = Revoke(session_id=self.provider.session_id, provider_message_id=pmid)
                gone.append(revoke)
        return gone

    def _provider_ids(self) -> dict[str, str]:
        """The provider's own chat ids the poller has read, by every key of their address."""
        index: dict[str, str] = {}
        for chat_id in self.chat_ids():
            address = phones.address(chat_id)
            if address is None:
                continue
            for key in (address.jid, address.phone, address.lid):
                if key:
                    index.setdefault(key, chat_id)
        return index

    def _chat_id(self, chat: Waiting, ids: dict[str, str]) -> str:
        for key in (chat.jid, chat.phone, chat.lid):
            if key and key in ids:
                return ids[key]
        return self.provider.chat_id(chat.jid)


def _epoch(value: datetime | str | None) -> float:
    """A stored time as epoch seconds (aware; SQLite gives text for an aggregate)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is None:
        return math.inf
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@functools.cache
def _waiting_query() -> Select[Any]:
    """`Recheck.waiting()`'s query, built once for every session (`start` and `session_id`
    bound): building it cost more than running it, and a thousand sessions built it each."""
    c, ch = T_MESSAGES.c, T_CHATS.c
    start = bindparam("start", type_=c.sent_at.type)
    session_id = bindparam("session_id", type_=c.session_id.type)
    return (
        select(
            ch.jid,
            ch.phone,
            ch.lid,
            func.min(c.sent_at).label("since"),
            func.max(c.sent_at).label("newest"),
        )
        .join(T_CHATS, ch.id == c.chat_id)
        .where(
            c.chat_id.in_(_recent_chats(start, session_id)),
            c.session_id == session_id,
            c.from_me.is_(True),
            c.revoked.is_(False),
            c.sent_at >= start,
            or_(c.ack.is_(None), and_(c.ack >= 0, c.ack < int(AckLevel.READ))),
            ~c.provider_message_id.startswith(PLACEHOLDER),
        )
        .group_by(ch.jid, ch.phone, ch.lid)
    )


def _recent_chats(
    start: datetime | BindParameter[Any], session_id: int | BindParameter[Any]
) -> Any:
    """The session's tenant's chats with a message since `start` (by
    `ix_chats_tenant_last_message`: the messages are then found by chat and time, never by
    scanning the session)."""
    ch, s = T_CHATS.c, T_SESSIONS.c
    return (
        select(ch.id)
        .join(T_SESSIONS, s.tenant_id == ch.tenant_id)
        .where(s.id == session_id, ch.last_message_at >= start)
    )
