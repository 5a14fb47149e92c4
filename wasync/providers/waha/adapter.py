"""WAHA adapter: one session's I/O over HTTP (`X-Api-Key`), for the poller, backfill and sender.

Facts and section numbers cited below come from `waha.md` (the shared provider notes); issue
numbers are `devlikeapro/waha#n`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from wasync import phones
from wasync.errors import ProviderError, SendOutcomeUnknown, TransientProviderError
from wasync.events import Address, Event, Message, Reaction
from wasync.providers.base import ChatHead, Endpoint, Page, SessionState, page_of, safe_parse
from wasync.providers.http import Http
from wasync.providers.parsing import maybe_timestamp
from wasync.providers.sending import NumberCheck, Outgoing, SendReceipt, post_once
from wasync.providers.waha.ids import message_key
from wasync.providers.waha.parse import parse_message
from wasync.providers.waha.send import cus_jid, receipt_of, send_request

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
        """`GET /api/sessions/{session}`: status and engine."""
        data = await self.http.get(f"/api/sessions/{self._s}")
        status = str((data or {}).get("status") or "UNKNOWN")
        engine = (data or {}).get("engine")
        if isinstance(engine, Mapping) and engine.get("engine"):
            self.engine = self.engine or str(engine["engine"]).upper()
        return SessionState(status=status, working=status == "WORKING", engine=self.engine)

    @property
    def short_pages(self) -> bool:
        """WEBJS drops notification rows from a page after applying `limit` (waha.md 3), so a
        short page is not the end there; GOWS and NOWEB page a database."""
        return self.engine not in ("GOWS", "NOWEB")

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
        data = await self.http.get(f"/api/{self._s}/chats/{chat}/messages", params=params)
        rows = [row for row in data or [] if isinstance(row, Mapping)]
        parsed = [safe_parse(parse_message, row, self.session_id) for row in rows]
        events = await self._resolve([e for e in parsed if e is not None])
        return page_of(events, size=len(rows))

    def head_events(self, head: ChatHead) -> list[Event]:
        """The overview's last message (acks move without a fetch)."""
        if not isinstance(head.last_message, Mapping):
            return []
        event = safe_parse(parse_message, head.last_message, self.session_id)
        return [event] if event is not None else []

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


def _chat_head(item: Any) -> ChatHead | None:
    if not isinstance(item, Mapping):
        return None
    chat_id = item.get("id")
    if isinstance(chat_id, Mapping):
        chat_id = chat_id.get("_serialized")
    if not isinstance(chat_id, str):
        return None
    last = item.get("lastMessage")
    if not isinstance(last, Mapping):
        return ChatHead(chat_id=chat_id, last_ts=None, last_id=None)
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
    )


def make_adapter(http: Http, endpoint: Endpoint) -> WahaProvider:
    """The adapter of one session (the kind's `adapter`)."""
    return WahaProvider(
        http, session=endpoint.session, session_id=endpoint.session_id, engine=endpoint.engine
    )
