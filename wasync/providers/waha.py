"""WAHA (WhatsApp HTTP API): provider JSON into wasync events.

Facts and section numbers cited below come from `waha.md` (the shared provider notes); issue
numbers are `devlikeapro/waha#n`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from wasync import phones
from wasync.errors import (
    PayloadError,
    ProviderError,
    SendOutcomeUnknown,
    TransientProviderError,
)
from wasync.events import (
    Ack,
    AckLevel,
    Address,
    ChatKind,
    Edit,
    Event,
    Media,
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
    MEDIA_TYPES,
    Content,
    JsonMap,
    as_int,
    as_list,
    as_map,
    as_number,
    as_str,
    compact,
    dig,
    first_str,
    maybe_timestamp,
    message_content,
)
from wasync.providers.sending import NumberCheck, Outgoing, SendReceipt, post_once

# --- parsing (pure) ---

# WEBJS `_data.type` (whatsapp-web.js MessageTypes) -> wasync type; anything else is `other`.
_WEBJS_TYPES: Mapping[str, MessageType] = MappingProxyType(
    {
        "chat": MessageType.TEXT,
        "image": MessageType.IMAGE,
        "video": MessageType.VIDEO,
        "gif": MessageType.VIDEO,
        "ptv": MessageType.VIDEO,
        "audio": MessageType.AUDIO,
        "ptt": MessageType.AUDIO,
        "document": MessageType.DOCUMENT,
        "sticker": MessageType.STICKER,
        "location": MessageType.LOCATION,
        "vcard": MessageType.CONTACT,
        "multi_vcard": MessageType.CONTACT,
    }
)
# Engines whose `from` is the sender (me when fromMe) and `to` the chat (waha.md 3).
_SENDER_FROM_ENGINES = frozenset({"WEBJS", "WPP"})
# Engines whose `from` is always the chat.
_CHAT_FROM_ENGINES = frozenset({"NOWEB", "GOWS"})


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageKey:
    """A WAHA message id split as `{fromMe}_{chat}_{id}[_{participant}]` (waha.md 3, Id formats).

    `bare` is WhatsApp's own id: the same for a message seen under `@lid` or `@c.us`.
    """

    bare: str
    chat: str | None = None
    from_me: bool | None = None
    participant: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Envelope:
    """What a webhook handler needs from the envelope around `payload`."""

    session_id: int
    engine: str | None
    time: datetime | None
    me: Any = None


log = logging.getLogger(__name__)
# How long a LID whose phone WAHA did not know is left alone before asking again.
LID_RETRY_S = 600.0


def message_key(value: Any) -> MessageKey | None:
    """Split a serialized id, a raw id (GOWS/NOWEB), or a WEBJS id object with `_serialized`."""
    if isinstance(value, Mapping):
        return _key_from_object(value)
    text = as_str(value)
    if text is None:
        return None
    text = text.strip()
    head, _, rest = text.partition("_")
    if head in ("true", "false"):
        chat, _, tail = rest.partition("_")
        bare, _, participant = tail.partition("_")
        if chat and bare:
            return MessageKey(
                bare=bare, chat=chat, from_me=head == "true", participant=participant or None
            )
    return MessageKey(bare=text)


def _key_from_object(value: JsonMap) -> MessageKey | None:
    """WEBJS `{fromMe, remote, id, _serialized}` (whatsapp-web.js MessageId)."""
    serialized = message_key(as_str(value.get("_serialized")))
    if serialized is not None and serialized.chat is not None:
        return serialized
    bare = as_str(value.get("id"))
    if bare is None:
        return serialized
    from_me = value.get("fromMe")
    return MessageKey(
        bare=bare.strip(),
        chat=_jid(value.get("remote")),
        from_me=from_me if isinstance(from_me, bool) else None,
        participant=_jid(value.get("participant")),
    )


def _jid(value: Any) -> str | None:
    """A jid string (`x@server`), also from a WEBJS `{_serialized}` wid object."""
    if isinstance(value, Mapping):
        value = value.get("_serialized")
    text = as_str(value)
    return text.strip() if text and "@" in text else None


def _first_jid(*values: Any) -> str | None:
    """The first of `values` that is a jid."""
    for value in values:
        if (jid := _jid(value)) is not None:
            return jid
    return None


def ack_from(value: Any) -> AckLevel | None:
    """A WAHA ack, an int -1..4 or a name ERROR/PENDING/SERVER/DEVICE/READ/PLAYED.

    None for null, `UNKNOWN` (GOWS sends `ack: null, ackName: "UNKNOWN"`, waha.md 4) and junk.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return AckLevel(value) if AckLevel.ERROR <= value <= AckLevel.PLAYED else None
    if isinstance(value, str):
        text = value.strip().upper()
        if text.lstrip("-").isdigit():
            return ack_from(int(text))
        return AckLevel.__members__.get(text)
    return None


def _ack(payload: JsonMap) -> AckLevel | None:
    """The ack of a WAMessage or ack body: `ack` when usable, else `ackName`."""
    level = ack_from(payload.get("ack"))
    return level if level is not None else ack_from(payload.get("ackName"))


def _engine(payload: JsonMap, engine: str | None) -> str | None:
    """The engine named by the envelope, else guessed from the shape of `_data`."""
    if engine:
        return engine.strip().upper()
    data = as_map(payload.get("_data"))
    if isinstance(data.get("key"), Mapping):
        return "NOWEB"
    if isinstance(data.get("Info"), Mapping):
        return "GOWS"
    if isinstance(data.get("id"), Mapping) or as_str(data.get("type")):
        return "WEBJS"
    return None


def _payload_key(payload: JsonMap) -> MessageKey | None:
    """The message id from `id`, WEBJS `_data.id`, NOWEB `_data.key` or GOWS `_data.Info`."""
    data = as_map(payload.get("_data"))
    key = message_key(payload.get("id")) or message_key(data.get("id"))
    if key is not None:
        return key
    noweb, gows = as_map(data.get("key")), as_map(data.get("Info"))
    bare = first_str(noweb.get("id"), gows.get("ID"))
    return MessageKey(bare=bare.strip()) if bare else None


def _from_me(payload: JsonMap, key: MessageKey | None) -> bool:
    """`fromMe`, else the id prefix, else the engine's raw flag."""
    data = as_map(payload.get("_data"))
    for value in (
        payload.get("fromMe"),
        key.from_me if key else None,
        dig(data, "key", "fromMe"),
        dig(data, "Info", "IsFromMe"),
    ):
        if isinstance(value, bool):
            return value
    return False


def _chat(
    payload: JsonMap, key: MessageKey | None, from_me: bool, engine: str | None
) -> Address | None:
    """The chat: 2nd id segment, else `from`/`to` by engine (waha.md 3), plus LID/PN hints."""
    data = as_map(payload.get("_data"))
    sender_from = engine in _SENDER_FROM_ENGINES
    jid = _first_jid(
        key.chat if key else None,
        payload.get("to") if from_me and engine not in _CHAT_FROM_ENGINES else None,
        None if from_me and sender_from else payload.get("from"),
        dig(data, "key", "remoteJid"),
        dig(data, "Info", "Chat"),
        dig(data, "id", "remote"),
    )
    return phones.address(jid, *_chat_alts(data, from_me)) if jid else None


def _chat_alts(data: JsonMap, from_me: bool) -> list[str | None]:
    """Other address forms of a direct chat: NOWEB `key.remoteJidAlt`, GOWS `Info.*Alt` (waha.md 8).

    GOWS `SenderAlt` is the other party only for incoming messages; for our own it is
    `RecipientAlt`. `phones.address` ignores these for group chats.
    """
    info = as_map(data.get("Info"))
    gows_alt = info.get("RecipientAlt") if from_me else info.get("SenderAlt")
    return [_jid(dig(data, "key", "remoteJidAlt")), _jid(info.get("Chat")), _jid(gows_alt)]


def _sender(payload: JsonMap, key: MessageKey | None, chat: Address) -> Address | None:
    """The author in a group or broadcast: `participant`, id suffix, WEBJS `author`, GOWS `Sender`,
    with NOWEB `participantAlt` / GOWS `SenderAlt` as the other form (waha.md 8)."""
    data, info = as_map(payload.get("_data")), as_map(dig(payload, "_data", "Info"))
    grouped = chat.kind is not ChatKind.DIRECT
    jid = _first_jid(
        payload.get("participant"),
        key.participant if key else None,
        data.get("author") if grouped else None,
        dig(data, "key", "participant"),
        info.get("Sender") if grouped else None,
    )
    if jid is None:
        return None
    alts = [dig(data, "key", "participantAlt"), info.get("SenderAlt") if grouped else None]
    return phones.address(jid, *[_jid(alt) for alt in alts])


def _engine_hint(payload: JsonMap) -> Content | None:
    """What the engine's raw `_data` says about the content: NOWEB `message` / GOWS `Message`
    protos, or the WEBJS `type` string. None when `_data` says nothing."""
    data = as_map(payload.get("_data"))
    proto = as_map(data.get("message")) or as_map(data.get("Message"))
    if proto:
        content = message_content(proto)
        return content if content.key else None
    webjs_type = as_str(data.get("type"))
    return _webjs_hint(webjs_type.strip().lower(), data) if webjs_type else None


def _webjs_hint(webjs_type: str, data: JsonMap) -> Content:
    """A WEBJS `_data.type` (`chat`, `image`, `ptt`, `revoked`, ...) as content."""
    kind = _WEBJS_TYPES.get(webjs_type, MessageType.OTHER)
    media = None
    if kind in MEDIA_TYPES:
        media = Media(
            mimetype=first_str(data.get("mimetype")),
            filename=first_str(data.get("filename")),
            size=as_int(data.get("size")),
            voice=webjs_type == "ptt",
        )
    extra = {"revoked": True} if webjs_type == "revoked" else {}
    return Content(key=webjs_type, type=kind, media=media, extra=extra)


def _mime_kind(mimetype: str | None) -> MessageType:
    """Type of a media message from its mimetype; `other` when it is not known."""
    if mimetype is None:
        return MessageType.OTHER
    major = mimetype.split("/", 1)[0].strip().lower()
    if mimetype.lower().startswith("image/webp"):
        return MessageType.STICKER
    kinds = {"image": MessageType.IMAGE, "video": MessageType.VIDEO, "audio": MessageType.AUDIO}
    return kinds.get(major, MessageType.DOCUMENT)


def _kind(payload: JsonMap, hint: Content | None) -> MessageType:
    """Type from the most specific evidence: a media/location/contact hint from `_data`, then
    `hasMedia` + `media.mimetype`, then text/other from the hint, then the body."""
    if hint is not None and hint.type not in (MessageType.TEXT, MessageType.OTHER):
        return hint.type
    if payload.get("hasMedia") is True:
        return _mime_kind(first_str(dig(payload, "media", "mimetype")))
    if hint is not None:
        return hint.type
    return MessageType.TEXT if as_str(payload.get("body")) else MessageType.OTHER


def _is_voice_mime(mimetype: str | None) -> bool:
    """`audio/ogg; codecs=opus` is what WhatsApp voice notes (ptt) use (waha.md 6, sendVoice)."""
    text = (mimetype or "").lower()
    return text.startswith("audio/ogg") and "opus" in text


def _media(payload: JsonMap, hint: Content | None, kind: MessageType) -> Media | None:
    """Media metadata: `media` (url, mimetype, filename) over the engine hint (size, ptt)."""
    if kind not in MEDIA_TYPES:
        return None
    media = as_map(payload.get("media"))
    base = hint.media if hint is not None and hint.media is not None else None
    mimetype = first_str(media.get("mimetype")) or (base.mimetype if base else None)
    voice = base.voice if base is not None else _is_voice_mime(mimetype)
    return Media(
        mimetype=mimetype,
        filename=first_str(media.get("filename")) or (base.filename if base else None),
        url=first_str(media.get("url")),
        size=base.size if base else None,
        voice=kind is MessageType.AUDIO and voice,
    )


def _location(location: JsonMap) -> Content:
    """A WAMessage `location` object; WEBJS puts a JPEG thumbnail in `body`, so it is not used."""
    extra = compact(
        latitude=as_number(location.get("latitude")),
        longitude=as_number(location.get("longitude")),
        name=first_str(location.get("name")),
        address=first_str(location.get("address")),
        live=True if location.get("live") is True else None,
    )
    text = first_str(location.get("description"))
    return Content(key="location", type=MessageType.LOCATION, text=text, extra=extra)


def _classify(payload: JsonMap, hint: Content | None) -> Content:
    """Type, body, media and extras of a WAMessage (waha.md 3, `WAMessage` shape)."""
    location = as_map(payload.get("location"))
    if location:
        return _location(location)
    body = as_str(payload.get("body"))
    vcards = [card for card in as_list(payload.get("vCards")) if as_str(card)]
    if vcards:
        return Content(key="vCards", type=MessageType.CONTACT, text=body, extra={"vcards": vcards})
    kind = _kind(payload, hint)
    return Content(
        key=hint.key if hint else None,
        type=kind,
        text=body or (hint.text if hint else None),
        media=_media(payload, hint, kind),
        extra=dict(hint.extra) if hint else {},
    )


def _reply_to(payload: JsonMap, hint: Content | None) -> str | None:
    """Bare id of the quoted message: `replyTo.id`, else the proto's `contextInfo.stanzaId`."""
    quoted = message_key(dig(payload, "replyTo", "id"))
    if quoted is not None:
        return quoted.bare
    stanza = dig(hint.value, "contextInfo", "stanzaId") if hint else None
    return first_str(stanza, dig(payload, "_data", "quotedStanzaID"))


def _push_name(payload: JsonMap) -> str | None:
    """Sender's push name from NOWEB `pushName`, WEBJS `notifyName` or GOWS `Info.PushName`."""
    data = as_map(payload.get("_data"))
    return first_str(data.get("pushName"), data.get("notifyName"), dig(data, "Info", "PushName"))


def _message_time(payload: JsonMap) -> datetime | None:
    """`timestamp` (seconds, maybe float), else the engine's raw time field."""
    data = as_map(payload.get("_data"))
    return maybe_timestamp(
        payload.get("timestamp"),
        data.get("messageTimestamp"),
        dig(data, "Info", "Timestamp"),
        data.get("t"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Head:
    """Identity and time shared by a message and a reaction."""

    key: MessageKey
    chat: Address
    from_me: bool
    sender: Address | None
    timestamp: datetime
    missing_time: bool


def _head(payload: JsonMap, engine: str | None, received_at: datetime | None) -> _Head:
    """Id, chat, direction, sender and time; PayloadError when there is no id or chat."""
    key = _payload_key(payload)
    if key is None:
        raise PayloadError("WAHA message without an id")
    from_me = _from_me(payload, key)
    chat = _chat(payload, key, from_me, _engine(payload, engine))
    if chat is None:
        raise PayloadError(f"WAHA message {key.bare} without a chat id")
    timestamp = _message_time(payload) or received_at
    return _Head(
        key=key,
        chat=chat,
        from_me=from_me,
        sender=_sender(payload, key, chat),
        timestamp=timestamp or EPOCH,
        missing_time=timestamp is None,
    )


def _reaction_target(payload: JsonMap, hint: Content | None) -> tuple[str, str] | None:
    """(target bare id, emoji) of a `message.reaction` payload or a NOWEB `reactionMessage`."""
    reaction = as_map(payload.get("reaction"))
    if reaction:
        target, emoji = message_key(reaction.get("messageId")), reaction.get("text")
    elif hint is not None and hint.type is MessageType.REACTION:
        target, emoji = message_key(dig(hint.value, "key", "id")), hint.value.get("text")
    else:
        return None
    if target is None:
        return None
    return target.bare, emoji if isinstance(emoji, str) else ""


def parse_message(
    payload: Mapping[str, Any], *, session_id: int, received_at: datetime | None = None
) -> Message | Reaction:
    """A WAHA `WAMessage` (polling or `message`/`message.any`/`message.reaction` payload).

    Odd content becomes type `other` with `raw` kept; PayloadError only without id or chat.
    `received_at` stands in for a missing timestamp (else 1970, flagged `timestamp_missing`).
    """
    return _parse_message(payload, session_id, None, received_at)


def _parse_message(
    payload: Any, session_id: int, engine: str | None, received_at: datetime | None
) -> Message | Reaction:
    """parse_message with the envelope's engine name (decides `from`/`to`, waha.md 3)."""
    if not isinstance(payload, Mapping):
        raise PayloadError("WAHA message payload is not an object")
    head = _head(payload, engine, received_at)
    hint = _engine_hint(payload)
    reaction = _reaction_target(payload, hint)
    if reaction is not None:
        return Reaction(
            session_id=session_id,
            provider_message_id=head.key.bare,
            target_message_id=reaction[0],
            emoji=reaction[1],
            chat=head.chat,
            from_me=head.from_me,
            timestamp=head.timestamp,
            sender=head.sender,
        )
    return _message(payload, head, _classify(payload, hint), hint, session_id)


def _message(
    payload: JsonMap, head: _Head, content: Content, hint: Content | None, session_id: int
) -> Message:
    """Assemble the Message from its parsed parts."""
    extra = {
        **content.extra,
        **compact(
            source=first_str(payload.get("source")),
            media_error=dig(payload, "media", "error") or None,
            timestamp_missing=True if head.missing_time else None,
        ),
    }
    return Message(
        session_id=session_id,
        provider_message_id=head.key.bare,
        chat=head.chat,
        from_me=head.from_me,
        type=content.type,
        timestamp=head.timestamp,
        body=content.text,
        sender=head.sender,
        ack=_ack(payload),
        media=content.media,
        push_name=_push_name(payload),
        reply_to=_reply_to(payload, hint),
        extra=extra,
        raw=payload if content.type is MessageType.OTHER else None,
    )


# --- webhooks ---


def _on_message(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`message`, `message.any`, `message.reaction`: one Message or Reaction."""
    return [_parse_message(payload, env.session_id, env.engine, env.time)]


def _on_ack(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`message.ack` / `message.ack.group`: group ids end in `_<participant>`, the bare id is
    still the 3rd segment. `ack: null` + `UNKNOWN` is GOWS's ERROR for our own message
    (waha.md 3-4: "GOWS maps ERROR → null"); anywhere else it carries no level: no event."""
    key = message_key(payload.get("id"))
    if key is None:
        raise PayloadError("WAHA ack without an id")
    # The id's own `true_`/`false_` first: WEBJS flips `fromMe` in group receipts (it reports
    # the receipt's direction, not the message's: TagReceiptToMessageAck).
    from_me = key.from_me if key.from_me is not None else _from_me(payload, key)
    engine = _engine(payload, env.engine)
    ack = _ack(payload)
    if ack is None and from_me and engine == "GOWS" and _gows_error(payload):
        ack = AckLevel.ERROR  # the pipeline lets ERROR replace only "no ack yet" or PENDING
    if ack is None:
        return []
    chat = _chat(payload, key, from_me, engine)
    return [
        Ack(
            session_id=env.session_id,
            provider_message_id=key.bare,
            ack=ack,
            chat=chat,
            from_me=from_me,
            timestamp=env.time,
        )
    ]


def _gows_error(payload: JsonMap) -> bool:
    """GOWS's failed-send ack: `ack` present and null, `ackName` UNKNOWN (or absent)."""
    return (
        "ack" in payload and payload["ack"] is None and payload.get("ackName") in (None, "UNKNOWN")
    )


def _on_revoked(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`message.revoked`: `{after, before, revokedMessageId}`; `revokedMessageId` is the bare id
    of the deleted message and `after` the revoke action in the same chat (waha.md 4)."""
    after, before = as_map(payload.get("after")), as_map(payload.get("before"))
    target = (
        message_key(payload.get("revokedMessageId"))
        or message_key(dig(after, "_data", "message", "protocolMessage", "key", "id"))
        or message_key(before.get("id"))
    )
    if target is None:
        raise PayloadError("WAHA message.revoked without revokedMessageId")
    source = after or before
    source_key = message_key(source.get("id"))
    chat = _chat(source, source_key, _from_me(source, source_key), _engine(source, env.engine))
    return [
        Revoke(
            session_id=env.session_id,
            provider_message_id=target.bare,
            chat=chat,
            timestamp=_message_time(after) or env.time,
        )
    ]


def _on_edited(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`message.edited`: WAMessage of the edit action + `editedMessageId` (bare) + new `body`."""
    target = message_key(payload.get("editedMessageId")) or message_key(
        dig(payload, "_data", "message", "protocolMessage", "key", "id")
    )
    if target is None:
        raise PayloadError("WAHA message.edited without editedMessageId")
    key = message_key(payload.get("id"))
    chat = _chat(payload, key, _from_me(payload, key), _engine(payload, env.engine))
    body = payload.get("body")
    return [
        Edit(
            session_id=env.session_id,
            provider_message_id=target.bare,
            body=body if isinstance(body, str) else None,
            chat=chat,
            timestamp=_message_time(payload) or env.time,
        )
    ]


def _on_status(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`session.status`: `{name, status, statuses?}` (waha.md 2 lists the statuses)."""
    status = as_str(payload.get("status"))
    if status is None:
        raise PayloadError("WAHA session.status without status")
    detail = compact(
        name=payload.get("name"),
        statuses=payload.get("statuses"),
        data=payload.get("data"),  # extra info of this status: a pairing code, a time lock
        me=env.me,
        engine=env.engine,
    )
    return [
        SessionStatus(
            session_id=env.session_id, status=status.strip(), timestamp=env.time, detail=detail
        )
    ]


_Handler = Callable[[JsonMap, _Envelope], list[Event]]
_HANDLERS: Mapping[str, _Handler] = MappingProxyType(
    {
        "message": _on_message,
        "message.any": _on_message,
        "message.reaction": _on_message,
        "message.ack": _on_ack,
        "message.ack.group": _on_ack,
        "message.revoked": _on_revoked,
        "message.edited": _on_edited,
        "session.status": _on_status,
    }
)


def parse_webhook(
    body: Mapping[str, Any], *, session_id: int, received_at: datetime | None = None
) -> list[Event]:
    """Events in a WAHA webhook envelope `{event, session, payload, ...}` (waha.md 4).

    Unhandled events give `[]`; a body that is not an envelope, or a handled event without a
    usable payload, raises PayloadError.
    """
    if not isinstance(body, Mapping):
        raise PayloadError("WAHA webhook body is not an object")
    event = as_str(body.get("event"))
    if event is None:
        raise PayloadError("WAHA webhook without an event name")
    handler = _HANDLERS.get(event.strip().lower())
    if handler is None:
        return []
    payload = body.get("payload")
    if not isinstance(payload, Mapping):
        raise PayloadError(f"WAHA {event} webhook without a payload object")
    env = _Envelope(
        session_id=session_id,
        engine=first_str(body.get("engine"), dig(body, "environment", "engine")),
        time=maybe_timestamp(body.get("timestamp")) or received_at,
        me=body.get("me"),
    )
    return handler(payload, env)


# --- adapter (I/O) ---------------------------------------------------------------------------


class WahaProvider:
    """One WAHA session over HTTP (`X-Api-Key`), for the poller and backfill."""

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
        path, body = _send_request(outgoing, self.session)
        answer = await post_once(self.http, path, body)
        receipt = _receipt(answer)
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
        chat = quote(_cus_jid(to_jid), safe="")
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
    # The bare stanza id, as messages are stored and as the poller remembers them: the
    # overview gives `true_<chat>_<id>` (or a WEBJS id object).
    key = message_key(last.get("id"))
    return ChatHead(
        chat_id=chat_id,
        last_ts=float(ts) if isinstance(ts, int | float) else None,
        last_id=key.bare if key is not None else None,
        last_ack=last.get("ack") if isinstance(last.get("ack"), int) else None,
        last_message=last,
    )


# --- send bodies and answers (pure) ---

_SEND_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "text": "/api/sendText",
        "image": "/api/sendImage",
        "video": "/api/sendVideo",
        "voice": "/api/sendVoice",
        "audio": "/api/sendFile",  # WAHA has no plain-audio send: it goes as a file
        "document": "/api/sendFile",
    }
)


def _cus_jid(jid: str) -> str:
    """WAHA addresses people as `<digits>@c.us`; groups and LIDs keep their server."""
    user, _, server = jid.partition("@")
    return f"{user}@c.us" if server in ("s.whatsapp.net", "") else jid


def _send_request(out: Outgoing, session: str) -> tuple[str, dict[str, Any]]:
    """Path and JSON body of a send (waha.md 6): `file` is a RemoteFile (`url`) or a
    BinaryFile (`data`); voice is converted to opus by WAHA (`convert: true`)."""
    body: dict[str, Any] = {"session": session, "chatId": _cus_jid(out.to_jid)}
    if out.kind == "text":
        body["text"] = out.text or ""
        return _SEND_PATHS["text"], body
    file: dict[str, Any] = {"mimetype": out.mimetype or "application/octet-stream"}
    file.update(compact(url=out.url, data=out.data, filename=out.filename))
    body["file"] = file
    if out.kind == "voice":
        body["convert"] = True
    elif out.kind == "video":
        body["convert"] = (out.mimetype or "") != "video/mp4"
    if out.text and out.kind != "voice":
        body["caption"] = out.text
    return _SEND_PATHS[out.kind], body


def _receipt(answer: Any) -> SendReceipt | None:
    """The message id of a send answer, whatever the engine (waha.md 6, #760): NOWEB `key.id`,
    GOWS `id` string, WEBJS `id` object."""
    if not isinstance(answer, Mapping):
        return None
    key = message_key(answer.get("id")) or message_key(dig(answer, "key", "id"))
    if key is None:
        return None
    stamp = maybe_timestamp(answer.get("timestamp"), answer.get("messageTimestamp"))
    return SendReceipt(provider_message_id=key.bare, timestamp=stamp.timestamp() if stamp else None)
