"""Evolution API (v2.x, Baileys channel): provider JSON into wasync events.

Facts and section numbers cited below come from `evolution.md` (the shared provider notes);
issue numbers are `EvolutionAPI/evolution-api#n`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from wasync import phones
from wasync.errors import PayloadError, SendOutcomeUnknown
from wasync.events import (
    Ack,
    AckLevel,
    Address,
    Edit,
    Event,
    Message,
    MessageType,
    Reaction,
    Revoke,
    SessionStatus,
)
from wasync.providers.base import ChatHead, Page, SessionState, page_of, safe_parse
from wasync.providers.http import Http
from wasync.providers.parsing import (
    EPOCH,
    Content,
    JsonMap,
    as_int,
    as_list,
    as_map,
    as_str,
    compact,
    dig,
    edited_text,
    first_str,
    maybe_timestamp,
    message_content,
    parse_timestamp,
)
from wasync.providers.sending import NumberCheck, Outgoing, SendReceipt, post_once

# --- parsing (pure) ---

# Every key field that may name the chat, across 2.3.0-2.3.7 (evolution.md 4.2 and 7.2): Baileys 7
# `remoteJidAlt`, Baileys 6.7 `senderPn`/`senderLid`, Evolution 2.3.0-2.3.2 `previousRemoteJid`.
_CHAT_KEYS = ("remoteJid", "remoteJidAlt", "senderPn", "senderLid", "previousRemoteJid")
_AUTHOR_KEYS = ("participant", "participantAlt", "participantPn", "participantLid")
# `status` strings (src/utils/renderStatus.ts); `DELETED` is not a delivery state (#2010).
_STATUS: Mapping[str, AckLevel] = MappingProxyType(
    {
        "ERROR": AckLevel.ERROR,
        "PENDING": AckLevel.PENDING,
        "SERVER_ACK": AckLevel.SERVER,
        "DELIVERY_ACK": AckLevel.DEVICE,
        "READ": AckLevel.READ,
        "PLAYED": AckLevel.PLAYED,
    }
)
# Numeric statuses 0..5, same order as renderStatus and Baileys `WebMessageInfo.Status`.
_NUMBERED = tuple(_STATUS.values())
# protocolMessage types (Baileys `ProtocolMessage.Type`).
_REVOKE_TYPES = frozenset({0, "0", "REVOKE"})
_EDIT_TYPES = frozenset({14, "14", "MESSAGE_EDIT"})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Envelope:
    """What a webhook handler needs from the envelope around `data`."""

    session_id: int
    time: datetime | None


log = logging.getLogger(__name__)


def ack_from(value: Any) -> AckLevel | None:
    """An Evolution status (`SERVER_ACK`, `DELIVERY_ACK`, ..., or 0..5) as an AckLevel.

    None for `DELETED`, missing or unknown values: those are not delivery states.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _NUMBERED[value] if 0 <= value < len(_NUMBERED) else None
    if isinstance(value, str):
        text = value.strip().upper()
        return ack_from(int(text)) if text.isdigit() else _STATUS.get(text)
    return None


def _best_ack(*values: Any) -> AckLevel | None:
    """The highest AckLevel among `values` (acks only move forward)."""
    levels = [level for value in values if (level := ack_from(value)) is not None]
    return max(levels) if levels else None


def _address(source: JsonMap, keys: tuple[str, ...]) -> Address | None:
    """An Address from every jid form `source` carries under `keys` (first one decides kind)."""
    return phones.address(*[as_str(source.get(key)) for key in keys])


def _chat(key: JsonMap) -> Address | None:
    """The chat of a message key: `remoteJid` plus its alternates (evolution.md 4.2, 7.2; #1872)."""
    return _address(key, _CHAT_KEYS)


def _key_id(source: JsonMap) -> str | None:
    """WhatsApp's message id of a key-like object."""
    found = first_str(source.get("id"))
    return found.strip() if found else None


def stored_changes(record: Mapping[str, Any], message: Message) -> list[Event]:
    """Edits and deletes a findMessages record shows, for a poller that missed their webhooks
    (evolution.md 9.1: the webhook stream is not complete).

    Evolution stores an edit by overwriting the row's `message` (and `messageTimestamp`) and
    adding a `MessageUpdate` row `EDITED` (4.3): the row's text is the edited one. An API
    delete keeps the row with `key.deleted: true` when DATABASE_DELETE_MESSAGE is on (4.4).
    A `DELETED` update status alone is not a delete: 2.3.5-2.3.6 give it to plain edits.
    """
    changes: list[Event] = []
    statuses = {str(s).upper() for s in _update_statuses(as_map(record)) if s}
    if "EDITED" in statuses:
        changes.append(
            Edit(
                session_id=message.session_id,
                provider_message_id=message.provider_message_id,
                body=message.body,
                chat=message.chat,
                timestamp=message.timestamp,
            )
        )
    if dig(record, "key", "deleted") is True:
        changes.append(
            Revoke(
                session_id=message.session_id,
                provider_message_id=message.provider_message_id,
                chat=message.chat,
            )
        )
    return changes


def _update_statuses(data: JsonMap) -> list[Any]:
    """`status` of every `MessageUpdate` row of a findMessages record (evolution.md 5.2).

    Not just the last row: Evolution selects them unordered, and an edit adds a row with
    status `EDITED`, which is no delivery state.
    """
    return [as_map(update).get("status") for update in as_list(data.get("MessageUpdate"))]


def _content(data: JsonMap) -> Content:
    """Content by `messageType` (never the first key of `message`), with the S3 `mediaUrl`."""
    message = as_map(data.get("message"))
    content = message_content(message, first_str(data.get("messageType")))
    media_url = first_str(message.get("mediaUrl"))
    if content.media is not None and media_url:
        content = replace(content, media=replace(content.media, url=media_url))
    return content


@dataclass(frozen=True, slots=True, kw_only=True)
class _Head:
    """Identity and time shared by a message and a reaction."""

    message_id: str
    chat: Address
    from_me: bool
    sender: Address | None
    timestamp: datetime
    missing_time: bool


def _head(data: JsonMap, received_at: datetime | None) -> _Head:
    """Key id, chat, direction, author and time; PayloadError without a key id or chat."""
    key = as_map(data.get("key"))
    message_id, chat = _key_id(key), _chat(key)
    if message_id is None or chat is None:
        raise PayloadError("Evolution message without key.id or key.remoteJid")
    found = maybe_timestamp(data.get("messageTimestamp")) or received_at
    return _Head(
        message_id=message_id,
        chat=chat,
        from_me=key.get("fromMe") is True,
        # `participant` at data level: findChats `lastMessage` (evolution.md 5.3).
        sender=_address(key, _AUTHOR_KEYS) or _address(data, ("participant",)),
        # Never the envelope's `date_time`: local time with a `Z` suffix (evolution.md 4.1).
        timestamp=found or EPOCH,
        missing_time=found is None,
    )


def parse_message(
    data: Mapping[str, Any], *, session_id: int, received_at: datetime | None = None
) -> Message | Reaction:
    """An Evolution message: `messages.upsert`/`send.message` data, a findMessages record or a
    findChats `lastMessage`. Odd content becomes `other` with `raw` kept; PayloadError only
    when there is no key id or chat. `received_at` stands in for a missing timestamp."""
    if not isinstance(data, Mapping):
        raise PayloadError("Evolution message is not an object")
    head = _head(data, received_at)
    content = _content(data)
    if content.type is MessageType.REACTION:
        reaction = _reaction(head, content, session_id)
        if reaction is not None:
            return reaction
        # A reaction without a target is odd content: kept as `other` below.
        content = replace(content, type=MessageType.OTHER)
    return _message(data, head, content, session_id)


def _reaction(head: _Head, content: Content, session_id: int) -> Reaction | None:
    """A `reactionMessage{key, text}`; empty text removes the reaction (evolution.md 4.2)."""
    target = _key_id(as_map(content.value.get("key")))
    if target is None:
        return None
    emoji = content.value.get("text")
    return Reaction(
        session_id=session_id,
        provider_message_id=head.message_id,
        target_message_id=target,
        emoji=emoji if isinstance(emoji, str) else "",
        chat=head.chat,
        from_me=head.from_me,
        timestamp=head.timestamp,
        sender=head.sender,
    )


def _message(data: JsonMap, head: _Head, content: Content, session_id: int) -> Message:
    """Assemble the Message; `status` or the last findMessages `MessageUpdate` gives the ack."""
    deleted = data.get("status") == "DELETED" or dig(data, "key", "deleted") is True
    # `source`: the device that made the message id (android | ios | web | desktop | unknown,
    # evolution.md 4.1); API sends show as web/unknown, the phone app as android/ios.
    flags = compact(
        deleted=deleted or None,
        timestamp_missing=head.missing_time or None,
        device=first_str(data.get("source")),
    )
    return Message(
        session_id=session_id,
        provider_message_id=head.message_id,
        chat=head.chat,
        from_me=head.from_me,
        type=content.type,
        timestamp=head.timestamp,
        body=content.text,
        sender=head.sender,
        ack=_best_ack(data.get("status"), *_update_statuses(data)),
        media=content.media,
        push_name=first_str(data.get("pushName")),
        reply_to=_reply_to(data, content),
        extra={**content.extra, **flags},
        raw=data if content.type is MessageType.OTHER else None,
    )


def _reply_to(data: JsonMap, content: Content) -> str | None:
    """Quoted message id: `contextInfo.stanzaId` at data level (2.x) or inside the content (v1)."""
    return first_str(
        dig(data, "contextInfo", "stanzaId"), dig(content.value, "contextInfo", "stanzaId")
    )


# --- webhooks ---


def _items(data: Any, event: str) -> list[JsonMap]:
    """`data` as a list of objects: one object, or a list of them (tolerated)."""
    if isinstance(data, Mapping):
        return [data]
    if isinstance(data, list) and all(isinstance(item, Mapping) for item in data):
        return data
    raise PayloadError(f"Evolution {event} data is not an object")


def _on_upsert(data: Any, env: _Envelope) -> list[Event]:
    """`messages.upsert`: `data` is one prepared message (evolution.md 4.2)."""
    return [
        parse_message(item, session_id=env.session_id, received_at=env.time)
        for item in _items(data, "messages.upsert")
    ]


def _on_send(data: Any, env: _Envelope) -> list[Event]:
    """`send.message`: our own API send, always `fromMe` (evolution.md 4.5)."""
    return [
        replace(parse_message(item, session_id=env.session_id, received_at=env.time), from_me=True)
        for item in _items(data, "send.message")
    ]


def _on_update(data: Any, env: _Envelope) -> list[Event]:
    """`messages.update`: an Ack by `keyId` + `status` (evolution.md 4.3). `DELETED` or a
    missing status is not a revoke (#2010, #1380); 2.3.7 may carry the edited text in `message`."""
    events: list[Event] = []
    for item in _items(data, "messages.update"):
        key_id = first_str(item.get("keyId"), dig(item, "key", "id"))
        if key_id is None:
            raise PayloadError("Evolution messages.update without keyId")
        chat = _chat(item) or _chat(as_map(item.get("key")))
        ack = ack_from(item.get("status"))
        if ack is not None:
            from_me = item.get("fromMe")
            events.append(
                Ack(
                    session_id=env.session_id,
                    provider_message_id=key_id,
                    ack=ack,
                    chat=chat,
                    from_me=from_me if isinstance(from_me, bool) else None,
                    timestamp=env.time,
                )
            )
        text = edited_text(item.get("message")) if item.get("message") else None
        if text is not None:
            events.append(_edit(env, key_id, text, chat, env.time))
    return events


def _edit(
    env: _Envelope, key_id: str, text: str | None, chat: Address | None, time: datetime | None
) -> Edit:
    """An Edit of message `key_id` with its new text."""
    return Edit(
        session_id=env.session_id, provider_message_id=key_id, body=text, chat=chat, timestamp=time
    )


def _on_delete(data: Any, env: _Envelope) -> list[Event]:
    """`messages.delete`, two shapes (evolution.md 4.4): the raw key `{remoteJid, fromMe, id}`
    with the WA id, or an API delete `{id: <db cuid>, key: {id: <WA id>, ...}}`."""
    events: list[Event] = []
    for item in _items(data, "messages.delete"):
        key = as_map(item.get("key")) or item
        key_id = _key_id(key)
        if key_id is None:
            raise PayloadError("Evolution messages.delete without a message id")
        events.append(
            Revoke(
                session_id=env.session_id,
                provider_message_id=key_id,
                chat=_chat(key),
                timestamp=env.time,
            )
        )
    return events


def _protocol_message(data: JsonMap) -> JsonMap:
    """The protocolMessage `{key, type, editedMessage, timestampMs}`; also found nested in a
    full message (`message.protocolMessage`) for tolerance."""
    if "editedMessage" in data or "type" in data:
        return data
    nested = dig(data, "message", "protocolMessage") or data.get("protocolMessage")
    return as_map(nested) or data


def _on_edited(data: Any, env: _Envelope) -> list[Event]:
    """`messages.edited`: protocolMessage (evolution.md 4.2); type 0/REVOKE is a delete for
    everyone, an `editedMessage` an edit of `key.id`."""
    if not isinstance(data, Mapping):
        raise PayloadError("Evolution messages.edited data is not an object")
    proto = _protocol_message(data)
    key = as_map(proto.get("key"))
    key_id = _key_id(key)
    kind = proto.get("type")
    is_change = kind in _REVOKE_TYPES or kind in _EDIT_TYPES or bool(proto.get("editedMessage"))
    if key_id is None:
        if not is_change:
            # Every protocolMessage goes out as messages.edited: ephemeral settings, history
            # sync and key shares carry no key and change no message.
            return []
        raise PayloadError("Evolution messages.edited without key.id")
    time = maybe_timestamp(proto.get("timestampMs")) or env.time
    if kind in _REVOKE_TYPES:
        return [
            Revoke(
                session_id=env.session_id,
                provider_message_id=key_id,
                chat=_chat(key),
                timestamp=time,
            )
        ]
    if proto.get("editedMessage") or kind in _EDIT_TYPES:
        return [_edit(env, key_id, edited_text(proto), _chat(key), time)]
    return []


def _on_connection(data: Any, env: _Envelope) -> list[Event]:
    """`connection.update`: `{instance, state, statusReason, wuid?, profileName?}` (4.6)."""
    data = as_map(data)
    state = as_str(data.get("state"))
    if state is None:
        raise PayloadError("Evolution connection.update without state")
    detail = compact(
        statusReason=as_int(data.get("statusReason")),
        instance=first_str(data.get("instance")),
        wuid=first_str(data.get("wuid")),
        profileName=first_str(data.get("profileName")),
    )
    return [
        SessionStatus(
            session_id=env.session_id, status=state.strip(), timestamp=env.time, detail=detail
        )
    ]


_Handler = Callable[[Any, _Envelope], list[Event]]
_HANDLERS: Mapping[str, _Handler] = MappingProxyType(
    {
        "messages.upsert": _on_upsert,
        "send.message": _on_send,
        "messages.update": _on_update,
        "messages.delete": _on_delete,
        "messages.edited": _on_edited,
        "connection.update": _on_connection,
    }
)


def event_name(value: str) -> str:
    """The dotted lower-case event name from any form: `messages.upsert`, `MESSAGES_UPSERT`
    (subscription enum) or `messages-upsert` (byEvents URL suffix, evolution.md 3.1)."""
    return value.strip().lower().replace("_", ".").replace("-", ".")


def parse_webhook(
    body: Mapping[str, Any], *, session_id: int, received_at: datetime | None = None
) -> list[Event]:
    """Events in an Evolution envelope `{event, instance, data, ...}` (evolution.md 4.1).

    Unhandled events give `[]`; a body that is not an envelope, or a handled event whose `data`
    is unusable, raises PayloadError.
    """
    if not isinstance(body, Mapping):
        raise PayloadError("Evolution webhook body is not an object")
    event = as_str(body.get("event"))
    if event is None:
        raise PayloadError("Evolution webhook without an event name")
    handler = _HANDLERS.get(event_name(event))
    if handler is None:
        return []
    data = body.get("data")
    if data is None:
        raise PayloadError(f"Evolution {event} webhook without data")
    # Kafka envelopes add `timestamp` (epoch ms); `date_time` is local time, ignored (4.1).
    env = _Envelope(
        session_id=session_id, time=maybe_timestamp(body.get("timestamp")) or received_at
    )
    return handler(data, env)


# --- adapter (I/O) ---------------------------------------------------------------------------


class EvolutionProvider:
    """One Evolution API instance over HTTP (`apikey` header), for the poller and backfill."""

    name = "evolution"
    # findMessages pages a database and gives `total`: a short page is the end.
    short_pages = False

    def __init__(self, http: Http, *, session: str, session_id: int, engine: str | None = None):
        self.http = http
        self.session = session
        self.session_id = session_id
        self.engine = engine

    @property
    def _i(self) -> str:
        return quote(self.session, safe="")

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
        hi = until if until is not None else time.time() + 86_400
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
        events = [ev for r in records for ev in self._record_events(r)]
        total = box.get("total") if isinstance(box, Mapping) else None
        return page_of(events, size=len(records), total=total if isinstance(total, int) else None)

    def _record_events(self, record: Mapping[str, Any]) -> list[Event]:
        """A stored message, plus what Evolution changed on its row (`stored_changes`)."""
        event = safe_parse(parse_message, record, self.session_id)
        if event is None:
            return []
        if isinstance(event, Message):
            return [event, *stored_changes(record, event)]
        return [event]

    def head_events(self, head: ChatHead) -> list[Event]:
        """The chat list's last message (acks move without a fetch)."""
        if not isinstance(head.last_message, Mapping):
            return []
        return self._record_events(head.last_message)

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
        route, body = _send_request(outgoing)
        path = f"/message/{route}/{self._i}"
        receipt = _receipt(await post_once(self.http, path, body))
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


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _chat_head(item: Any) -> ChatHead | None:
    if not isinstance(item, Mapping) or not isinstance(item.get("remoteJid"), str):
        return None
    last = item.get("lastMessage")
    ts: float | None = None
    last_id: str | None = None
    ack: int | None = None
    if isinstance(last, Mapping):
        raw_ts = last.get("messageTimestamp")
        ts = parse_timestamp(raw_ts).timestamp() if raw_ts is not None else None
        key = last.get("key")
        last_id = str(key.get("id")) if isinstance(key, Mapping) and key.get("id") else None
        level = ack_from(last.get("status"))
        ack = int(level) if level is not None else None
    if ts is None and isinstance(item.get("updatedAt"), str):
        ts = parse_timestamp(item["updatedAt"]).timestamp()
    return ChatHead(
        chat_id=item["remoteJid"], last_ts=ts, last_id=last_id, last_ack=ack, last_message=last
    )


# --- send bodies and answers (pure) ---


def _number(jid: str) -> str:
    """Evolution takes digits or a full jid; `@c.us` is WAHA's spelling of a phone jid."""
    user, _, server = jid.partition("@")
    return f"{user}@s.whatsapp.net" if server == "c.us" else jid


def _send_request(out: Outgoing) -> tuple[str, dict[str, Any]]:
    """Route and JSON body (evolution.md 6): media is a URL or RAW base64 (no `data:` prefix);
    a base64 document needs `fileName`; a voice note is `sendWhatsAppAudio` (PTT)."""
    number = _number(out.to_jid)
    if out.kind == "text":
        return "sendText", {"number": number, "text": out.text or ""}
    media = out.url or out.data or ""
    if out.kind == "voice":
        return "sendWhatsAppAudio", {"number": number, "audio": media}
    body: dict[str, Any] = {"number": number, "mediatype": out.kind, "media": media}
    body.update(compact(mimetype=out.mimetype, caption=out.text, fileName=out.filename))
    return "sendMedia", body


def _receipt(answer: Any) -> SendReceipt | None:
    """`key.id` and `messageTimestamp` (a number or a string) of a send answer."""
    if not isinstance(answer, Mapping):
        return None
    key_id = dig(answer, "key", "id")
    if not isinstance(key_id, str) or not key_id:
        return None
    stamp = maybe_timestamp(answer.get("messageTimestamp"))
    return SendReceipt(provider_message_id=key_id, timestamp=stamp.timestamp() if stamp else None)
