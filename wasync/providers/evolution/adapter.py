"""Evolution adapter: one instance's I/O over HTTP (`apikey` header), for the poller, backfill
and sender.

Facts and section numbers cited below come from `evolution.md` (the shared provider notes);
issue numbers are `EvolutionAPI/evolution-api#n`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from wasync.errors import SendOutcomeUnknown
from wasync.events import Event, Message
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
from wasync.providers.evolution.media import fetch_media
from wasync.providers.evolution.parse import (
    ack_from,
    needs_version,
    parse_message,
    poll_vote_of,
    stored_changes,
)
from wasync.providers.evolution.send import receipt_of, send_request
from wasync.providers.evolution.version import Version, server_version
from wasync.providers.http import Http
from wasync.providers.parsing import dig, maybe_timestamp
from wasync.providers.sending import NumberCheck, Outgoing, SendReceipt, post_once

# findMessages needs an upper bound, and `messageTimestamp` is a 32-bit column (`Int
# @db.Integer`): a bound past 2038-01-19T03:14:07Z is a 500 (Prisma cannot bind it).
END_OF_TIME = 2_147_483_647.0
VERSION_TTL_S = 3600.0  # the server's version is asked again after this (an upgrade)
VERSION_RETRY_S = 60.0  # ... or after this when it could not be had


class EvolutionProvider:
    """One Evolution API instance over HTTP (`apikey` header), for the poller, backfill and
    sender."""

    name = "evolution"
    # findMessages pages a database and gives `total`: a short page is the end.
    short_pages = False
    # A revoke from WhatsApp keeps the row (it only adds MessageUpdate rows: `version`).
    deletes_revoked = False

    def __init__(self, http: Http, *, session: str, session_id: int, engine: str | None = None):
        self.http = http
        self.session = session
        self.session_id = session_id
        self.engine = engine
        self._version: Version | None = None
        self._version_at = float("-inf")

    @property
    def _i(self) -> str:
        return quote(self.session, safe="")

    @property
    def requests(self) -> int:
        """HTTP requests made so far, retries included."""
        return self.http.requests

    async def state(self) -> SessionState:
        """`GET /instance/connectionState/{instance}`: `open`, `connecting` or `close`."""
        data = await self.http.get(f"/instance/connectionState/{self._i}")
        inst = data.get("instance") if isinstance(data, Mapping) else None
        state = str(inst.get("state") if isinstance(inst, Mapping) else "unknown")
        return SessionState(status=state, working=state == "open")

    async def supports_all_chats(self) -> bool:
        """Never: an instance-wide findMessages may silently return nothing (evolution.md 5.2)."""
        return False

    async def chat_heads(self, *, limit: int, offset: int) -> list[ChatHead]:
        """`POST /chat/findChats/{instance}` (`take`/`skip`), newest activity first."""
        data = await self.http.post(f"/chat/findChats/{self._i}", {"take": limit, "skip": offset})
        return [h for h in (_chat_head(item) for item in data or []) if h is not None]

    async def messages(
        self, chat_id: str | None, *, since: float, until: float | None, limit: int, page: int
    ) -> Page:
        """`POST /chat/findMessages/{instance}`: both timestamp bounds as ISO strings (the filter
        is ignored unless both are present), `page` 1-based, `offset` = page size."""
        if chat_id is None:
            raise ValueError("Evolution needs a chat to list messages")
        # No upper bound is "the end of time": a row dated ahead by a broken phone clock is
        # still listed (the poller keeps it out of its cursors).
        hi = until if until is not None else END_OF_TIME
        where = {
            # Rows of LID-addressed chats keep the raw @lid remoteJid; ask for both forms.
            "key": {"remoteJid": chat_id, "remoteJidAlt": chat_id},
            "messageTimestamp": {"gte": _iso(since), "lte": _iso(hi)},
        }
        body = {"where": where, "page": page, "offset": limit}
        data = await self.http.post(f"/chat/findMessages/{self._i}", body)
        box = data.get("messages") if isinstance(data, Mapping) else None
        rows = box.get("records") if isinstance(box, Mapping) else None
        records = [r for r in rows or [] if isinstance(r, Mapping)]
        if any(needs_version(r) for r in records):
            await self.version()
        events = [ev for r in records for ev in self._record_events(r)]
        total = box.get("total") if isinstance(box, Mapping) else None
        return page_of(events, size=len(records), total=total if isinstance(total, int) else None)

    def _record_events(self, record: Mapping[str, Any]) -> list[Event]:
        """A stored message, plus what Evolution changed on its row (`stored_changes`); a
        stored poll vote is an update of its poll."""
        vote = poll_vote_of(record, session_id=self.session_id)
        if vote is not None:
            return [vote]
        event = safe_parse(parse_message, record, self.session_id)
        if event is None:
            return []
        if isinstance(event, Message):
            return [event, *stored_changes(record, event, version=self._version)]
        return [event]

    async def version(self) -> Version | None:
        """The server's version (`GET /`), asked at most once per `VERSION_TTL_S` (per
        `VERSION_RETRY_S` while it cannot be had; the last one known stands meanwhile)."""
        now = time.monotonic()
        if now - self._version_at >= VERSION_TTL_S:
            found = await server_version(self.http)
            self._version_at = now if found else now - VERSION_TTL_S + VERSION_RETRY_S
            self._version = found or self._version
        return self._version

    def head_events(self, head: ChatHead) -> list[Event]:
        """The chat list's last message (acks move without a fetch)."""
        if not isinstance(head.last_message, Mapping):
            return []
        return self._record_events(head.last_message)

    def chat_id(self, jid: str) -> str:
        """Evolution keys chats by the WhatsApp jid itself (`…@s.whatsapp.net`, `…@lid`)."""
        return jid

    async def gone(self, chat_id: str | None, message_id: str) -> bool:
        """findMessages by `key.id` finds no row."""
        key: dict[str, Any] = {"id": message_id}
        if chat_id is not None:
            key.update(remoteJid=chat_id, remoteJidAlt=chat_id)
        body = {"where": {"key": key}, "page": 1, "offset": 1}
        data = await self.http.post(f"/chat/findMessages/{self._i}", body)
        box = data.get("messages") if isinstance(data, Mapping) else None
        rows = box.get("records") if isinstance(box, Mapping) else None
        return isinstance(rows, list) and not rows

    # --- sending (evolution.md section 6) ---

    async def check_number(self, phone: str) -> NumberCheck:
        """`POST /chat/whatsappNumbers/{instance}`: Evolution tries both Brazilian forms and
        answers the `jid` WhatsApp registered (evolution.md 7.1)."""
        data = await self.http.post(f"/chat/whatsappNumbers/{self._i}", {"numbers": [phone]})
        for item in data if isinstance(data, list) else []:
            if isinstance(item, Mapping) and item.get("exists") is True:
                jid = item.get("jid")
                return NumberCheck(exists=True, jid=jid if isinstance(jid, str) else None)
        return NumberCheck(exists=False)

    async def send(self, outgoing: Outgoing) -> SendReceipt:
        """One `sendText` / `sendMedia` / `sendWhatsAppAudio` request."""
        route, body = send_request(outgoing)
        path = f"/message/{route}/{self._i}"
        receipt = receipt_of(await post_once(self.http, path, body))
        if receipt is None:
            raise SendOutcomeUnknown(f"POST {path}: accepted without a message id")
        return receipt

    async def sent_messages(self, to_jid: str, *, since: float) -> list[Message]:
        """`POST /chat/findMessages/{instance}` with `key.fromMe: true`; both time bounds are
        needed or the window is ignored (evolution.md 5.2)."""
        where = {
            "key": {"remoteJid": to_jid, "remoteJidAlt": to_jid, "fromMe": True},
            "messageTimestamp": {"gte": _iso(since), "lte": _iso(time.time() + 86_400)},
        }
        body = {"where": where, "page": 1, "offset": 100}
        data = await self.http.post(f"/chat/findMessages/{self._i}", body)
        box = data.get("messages") if isinstance(data, Mapping) else None
        rows = box.get("records") if isinstance(box, Mapping) else None
        parsed = [safe_parse(parse_message, r, self.session_id) for r in rows or []]
        return [e for e in parsed if isinstance(e, Message) and e.from_me]

    def fetch_media(
        self, source: MediaSource, *, convert_voice: bool = False
    ) -> AbstractAsyncContextManager[MediaFile]:
        """`getBase64FromMediaMessage` (or the S3 `mediaUrl`); `convert_voice` asks for a
        voice note as `audio/mp4` (evolution.md 6)."""
        return fetch_media(self.http, self.session, source, convert_voice=convert_voice)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _chat_head(item: Any) -> ChatHead | None:
    if not isinstance(item, Mapping):
        return None
    last = item.get("lastMessage")
    # 2.3.0 reads its own quoted `"remoteJid"` alias back lower-cased: the item has none,
    # its last message's key has it (`channel.service.ts` fetchChats, fixed in 2.3.1).
    jid = item.get("remoteJid") or dig(last, "key", "remoteJid")
    if not isinstance(jid, str) or not jid:
        return None
    ts: float | None = None
    last_id: str | None = None
    ack: int | None = None
    if isinstance(last, Mapping):
        stamp = maybe_timestamp(last.get("messageTimestamp"))  # junk: no time (not a crash)
        ts = stamp.timestamp() if stamp is not None else None
        key = last.get("key")
        last_id = str(key.get("id")) if isinstance(key, Mapping) and key.get("id") else None
        level = ack_from(last.get("status"))
        ack = int(level) if level is not None else None
    if ts is None and (updated := maybe_timestamp(item.get("updatedAt"))) is not None:
        ts = updated.timestamp()
    # Evolution's count of stored incoming DELIVERY_ACK rows (evolution.md 5.3): a new
    # customer message raises it even when the head shows another row of its second.
    unread = item.get("unreadCount")
    return ChatHead(
        chat_id=jid,
        last_ts=ts,
        last_id=last_id,
        last_ack=ack,
        last_message=last,
        unread=unread if isinstance(unread, int) and not isinstance(unread, bool) else None,
    )


def make_adapter(http: Http, endpoint: Endpoint) -> EvolutionProvider:
    """The adapter of one instance (the kind's `adapter`)."""
    return EvolutionProvider(
        http, session=endpoint.session, session_id=endpoint.session_id, engine=endpoint.engine
    )
