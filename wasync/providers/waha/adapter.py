"""WAHA adapter: one session's I/O over HTTP (`X-Api-Key`), for the poller, backfill and sender.

Facts and section numbers cited below come from `waha.md` (the shared provider notes); issue
numbers are `devlikeapro/waha#n`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from wasync import phones
from wasync.errors import (
    FatalProviderError,
    ProviderError,
    SendOutcomeUnknown,
    SessionBlocked,
    TransientProviderError,
)
from wasync.events import Address, Event, Message, Reaction
from wasync.providers.base import (
    ChatHead,
    Endpoint,
    MediaFile,
    MediaSource,
    Page,
    SessionState,
    page_of,
    safe_parse,
)
from wasync.providers.http import Http
from wasync.providers.parsing import as_list, as_map, dig, maybe_timestamp
from wasync.providers.sending import NumberCheck, Outgoing, SendReceipt, post_once
from wasync.providers.waha.changes import row_changes
from wasync.providers.waha.ids import message_key
from wasync.providers.waha.media import fetch_media
from wasync.providers.waha.parse import parse_message
from wasync.providers.waha.send import cus_jid, receipt_of, send_request

# waha.md 2: NOWEB serves chats and messages only with its store on; the 400 names the key.
NOWEB_STORE_FIX = (
    "NOWEB store is off: WAHA answers 400 to every messages and overview call without "
    "config.noweb.store.enabled (and fullSync); `wasync sessions configure` turns it on "
    "(WAHA restarts the session)"
)

# How long a LID whose phone WAHA did not know is left alone before asking again.
LID_RETRY_S = 600.0


class WahaProvider:
    """One WAHA session over HTTP (`X-Api-Key`), for the poller, backfill and sender."""

    name = "waha"

    def __init__(
        self,
        http: Http,
        *,
        session: str,
        session_id: int,
        engine: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.http = http
        self.session = session
        self.session_id = session_id
        self.engine = engine.upper() if engine else None
        self.clock = clock
        self._lids: dict[str, str] = {}  # LID -> phone, once known it does not change
        self._lid_misses: dict[str, float] = {}  # LID -> when to ask again

    @property
    def _s(self) -> str:
        return quote(self.session, safe="")

    @property
    def requests(self) -> int:
        """HTTP requests made so far, retries included."""
        return self.http.requests

    async def state(self) -> SessionState:
        """`GET /api/sessions/{session}`: status, engine, and a NOWEB store left off."""
        data = await self.http.get(f"/api/sessions/{self._s}")
        status = str((data or {}).get("status") or "UNKNOWN")
        engine = (data or {}).get("engine")
        if isinstance(engine, Mapping) and engine.get("engine"):
            self.engine = self.engine or str(engine["engine"]).upper()
        config = (data or {}).get("config") if isinstance(data, Mapping) else None
        blocker = NOWEB_STORE_FIX if self.engine == "NOWEB" and not _store_on(config) else None
        return SessionState(
            status=status, working=status == "WORKING", engine=self.engine, blocker=blocker
        )

    @property
    def short_pages(self) -> bool:
        """Every engine may answer a page short before the end: GOWS and NOWEB apply `limit`
        in their database and then drop reactions, poll votes, protocol and call messages
        (`processIncomingMessage` in `session.gows.core.ts` / `session.noweb.core.ts`), WEBJS
        drops notification rows (waha.md 3)."""
        return True

    @property
    def deletes_revoked(self) -> bool:
        """NOWEB's store deletes a row revoked for everyone (`NowebPersistentStore`:
        "In case of revoked messages - remove it")."""
        return self.engine == "NOWEB"

    async def supports_all_chats(self) -> bool:
        """GOWS and NOWEB answer `chats/all/messages`; WEBJS does not (waha.md section 3)."""
        if self.engine is None:
            await self.state()
        return self.engine in ("GOWS", "NOWEB")

    async def chat_heads(self, *, limit: int, offset: int) -> list[ChatHead]:
        """`GET /api/{s}/chats/overview`: chats sorted by their last message, newest first."""
        data = await self.http.get(
            f"/api/{self._s}/chats/overview", params={"limit": limit, "offset": offset}
        )
        return [h for h in (_chat_head(item) for item in data or []) if h is not None]

    async def messages(
        self, chat_id: str | None, *, since: float, until: float | None, limit: int, page: int
    ) -> Page:
        """`GET /api/{s}/chats/{chat}/messages` with a timestamp window, without media."""
        params: dict[str, Any] = {
            "limit": limit,
            "offset": (page - 1) * limit,
            "downloadMedia": "false",
            "sortBy": "timestamp",
            "sortOrder": "asc",
            "filter.timestamp.gte": int(since),
        }
        if until is not None:
            params["filter.timestamp.lte"] = int(until)
        chat = quote(chat_id or "all", safe="")
        data = await self._read(f"/api/{self._s}/chats/{chat}/messages", params)
        rows = [row for row in data or [] if isinstance(row, Mapping)]
        events = await self._resolve([e for row in rows for e in self._row_events(row)])
        return page_of(events, size=len(rows))

    async def _read(self, path: str, params: dict[str, Any]) -> Any:
        """GET a listing; NOWEB's 400 for a store that is off is `SessionBlocked`."""
        try:
            return await self.http.get(path, params=params)
        except FatalProviderError as exc:
            if exc.status == 400 and "noweb store" in str(exc).lower():
                raise SessionBlocked(NOWEB_STORE_FIX, status=400) from None
            raise

    def _row_events(self, row: Mapping[str, Any]) -> list[Event]:
        """A listed message, plus the edit, revoke and reactions its row shows."""
        event = safe_parse(parse_message, row, self.session_id)
        if isinstance(event, Message):
            return [event, *row_changes(row, event)]
        return [event] if event is not None else []

    def head_events(self, head: ChatHead) -> list[Event]:
        """The overview's last message (acks, edits and revokes show without a fetch)."""
        if not isinstance(head.last_message, Mapping):
            return []
        return self._row_events(head.last_message)

    def chat_id(self, jid: str) -> str:
        """WAHA's `@c.us` form of a phone jid (waha.md 3, Id formats)."""
        return cus_jid(jid)

    async def gone(self, chat_id: str | None, message_id: str) -> bool:
        """`GET /api/{s}/chats/{chat}/messages/{id}` answers 404 (`chatId=all` with the raw
        id on GOWS/NOWEB, waha.md 3)."""
        chat = quote(chat_id or "all", safe="")
        path = f"/api/{self._s}/chats/{chat}/messages/{quote(message_id, safe='')}"
        try:
            await self.http.get(path, params={"downloadMedia": "false"})
        except FatalProviderError as exc:
            return exc.status == 404
        return False

    async def _resolve(self, events: list[Event]) -> list[Event]:
        """Give LID-only chats and group senders their phone via `GET /api/{s}/lids/{lid}`
        (cached): WAHA does not put the phone of a `@lid` party in messages (waha.md 8)."""
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, Message | Reaction):
                chat = await self._with_phone(ev.chat)
                sender = await self._with_phone(ev.sender) if ev.sender else None
                if chat is not ev.chat or sender is not ev.sender:
                    ev = replace(ev, chat=chat, sender=sender)
            out.append(ev)
        return out

    async def _with_phone(self, party: Address) -> Address:
        """`party` with its phone, when it is known only by LID and WAHA knows the phone."""
        if not party.lid or party.phone:
            return party
        phone = await self._lid_phone(party.lid)
        resolved = phones.address(party.lid, f"{phone}@c.us") if phone else None
        return resolved or party

    async def _lid_phone(self, lid: str) -> str | None:
        """The phone behind a LID, or None (the chat then stays LID-only for now).

        WAHA learns a mapping later (a contact saved, a group joined) and `pn` was null by a
        bug until 2026.3.1 (waha#1712): a miss is asked again after `LID_RETRY_S`. A
        transient error is not remembered at all; an old WAHA without the lids API (an
        error answer) counts as a miss.
        """
        if lid in self._lids:
            return self._lids[lid]
        if self._lid_misses.get(lid, 0.0) > self.clock():
            return None
        try:
            data = await self.http.get(f"/api/{self._s}/lids/{quote(lid, safe='')}")
        except TransientProviderError:
            return None
        except ProviderError:
            data = None
        pn = data.get("pn") if isinstance(data, Mapping) else None
        phone = phones.canonical_phone(pn) if isinstance(pn, str) else None
        if phone is None:
            self._lid_misses[lid] = self.clock() + LID_RETRY_S
            return None
        self._lids[lid] = phone
        self._lid_misses.pop(lid, None)
        return phone

    # --- sending (waha.md section 6) ---

    async def check_number(self, phone: str) -> NumberCheck:
        """`GET /api/contacts/check-exists`: Brazil resolves the ninth digit here; the 8-digit
        form is asked too when the 9-digit one is absent (waha.md 6)."""
        for variant in phones.phone_variants(phone):
            data = await self.http.get(
                "/api/contacts/check-exists", params={"phone": variant, "session": self.session}
            )
            jid = data.get("chatId") if isinstance(data, Mapping) else None
            if isinstance(data, Mapping) and data.get("numberExists") is True:
                return NumberCheck(
                    exists=True, jid=jid if isinstance(jid, str) else f"{variant}@c.us"
                )
        return NumberCheck(exists=False)

    async def send(self, outgoing: Outgoing) -> SendReceipt:
        """One `sendText` / `sendImage` / `sendVideo` / `sendVoice` / `sendFile` request."""
        path, body = send_request(outgoing, self.session)
        answer = await post_once(self.http, path, body)
        receipt = receipt_of(answer)
        if receipt is None:  # WEBJS 2025.6.5 answered an empty body (#1087)
            raise SendOutcomeUnknown(f"POST {path}: accepted without a message id")
        return receipt

    async def sent_messages(self, to_jid: str, *, since: float) -> list[Message]:
        """`GET /api/{s}/chats/{chat}/messages?filter.fromMe=true`, newest first."""
        params: dict[str, Any] = {
            "limit": 100,
            "downloadMedia": "false",
            "sortBy": "timestamp",
            "sortOrder": "desc",
            "filter.fromMe": "true",
            "filter.timestamp.gte": int(since),
        }
        chat = quote(cus_jid(to_jid), safe="")
        data = await self.http.get(f"/api/{self._s}/chats/{chat}/messages", params=params)
        rows = [row for row in data or [] if isinstance(row, Mapping)]
        parsed = [safe_parse(parse_message, row, self.session_id) for row in rows]
        return [e for e in parsed if isinstance(e, Message) and e.from_me]

    def fetch_media(
        self, source: MediaSource, *, convert_voice: bool = False
    ) -> AbstractAsyncContextManager[MediaFile]:
        """`media.url` with `X-Api-Key` while it lives, else a fresh one (waha.md 7);
        `convert_voice` is Evolution's and ignored here."""
        return fetch_media(self.http, self.session, source)


def _store_on(config: Any) -> bool:
    """`config.noweb.store.enabled` (waha.md 2)."""
    return dig(config, "noweb", "store", "enabled") is True


def _chat_head(item: Any) -> ChatHead | None:
    if not isinstance(item, Mapping):
        return None
    chat_id = item.get("id")
    if isinstance(chat_id, Mapping):
        chat_id = chat_id.get("_serialized")
    if not isinstance(chat_id, str):
        return None
    raw_chat = item.get("_chat")
    unread = raw_chat.get("unreadCount") if isinstance(raw_chat, Mapping) else None
    unread = unread if isinstance(unread, int) and not isinstance(unread, bool) else None
    last = item.get("lastMessage")
    if not isinstance(last, Mapping):
        # No last message (WEBJS has not loaded it; NOWEB/GOWS when the newest row is one
        # they do not list): the chat's own time of activity, so the chat is still read
        # when it moves (WEBJS `timestamp`, NOWEB/GOWS `conversationTimestamp`).
        raw = raw_chat if isinstance(raw_chat, Mapping) else {}
        active = maybe_timestamp(raw.get("timestamp"), raw.get("conversationTimestamp"))
        ts = active.timestamp() if active is not None else None
        return ChatHead(chat_id=chat_id, last_ts=ts, last_id=None, unread=unread)
    ts = last.get("timestamp")
    stamp = maybe_timestamp(ts) if isinstance(ts, int | float) else None  # 1e400: no time
    # The bare stanza id, as messages are stored and as the poller remembers them: the
    # overview gives `true_<chat>_<id>` (or a WEBJS id object).
    key = message_key(last.get("id"))
    return ChatHead(
        chat_id=chat_id,
        last_ts=stamp.timestamp() if stamp is not None else None,
        last_id=key.bare if key is not None else None,
        last_ack=last.get("ack") if isinstance(last.get("ack"), int) else None,
        last_message=last,
        unread=unread,
        last_rev=_revision(last),
    )


def _revision(last: Mapping[str, Any]) -> str:
    """What an edit, a revoke or a reaction in place changes in the shown message: its text,
    its WEBJS type and edit mark, its NOWEB reactions."""
    data = as_map(last.get("_data"))
    reactions = [as_map(r).get("text") for r in as_list(data.get("reactions"))]
    marks = (last.get("body"), data.get("type"), data.get("latestEditSenderTimestampMs"))
    return repr((marks, reactions))


def make_adapter(http: Http, endpoint: Endpoint) -> WahaProvider:
    """The adapter of one session (the kind's `adapter`)."""
    return WahaProvider(
        http, session=endpoint.session, session_id=endpoint.session_id, engine=endpoint.engine
    )
