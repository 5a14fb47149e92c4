"""WAHA (WhatsApp HTTP API): one `WAMessage` into a wasync Message or Reaction (pure).

Facts and section numbers cited below come from `waha.md` (the shared provider notes); issue
numbers are `devlikeapro/waha#n`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from wasync import phones
from wasync.errors import PayloadError
from wasync.events import Address, ChatKind, Message, MessageType, Reaction
from wasync.providers.parsing import (
    EPOCH,
    JsonMap,
    as_map,
    as_str,
    compact,
    dig,
    first_str,
    maybe_timestamp,
)
from wasync.providers.proto import Content
from wasync.providers.waha.content import classify, engine_hint
from wasync.providers.waha.ids import MessageKey, ack_of, as_jid, first_jid, message_key
from wasync.providers.waha.media import media_ref

# Engines whose `from` is the sender (me when fromMe) and `to` the chat (waha.md 3).
_SENDER_FROM_ENGINES = frozenset({"WEBJS", "WPP"})
# Engines whose `from` is always the chat.
_CHAT_FROM_ENGINES = frozenset({"NOWEB", "GOWS"})


def engine_of(payload: JsonMap, engine: str | None) -> str | None:
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


def from_me_of(payload: JsonMap, key: MessageKey | None) -> bool:
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


def chat_of(
    payload: JsonMap, key: MessageKey | None, from_me: bool, engine: str | None
) -> Address | None:
    """The chat: 2nd id segment, else `from`/`to` by engine (waha.md 3), plus LID/PN hints."""
    data = as_map(payload.get("_data"))
    sender_from = engine in _SENDER_FROM_ENGINES
    jid = first_jid(
        key.chat if key else None,
        payload.get("to") if from_me and engine not in _CHAT_FROM_ENGINES else None,
        None if from_me and sender_from else payload.get("from"),
        dig(data, "key", "remoteJid"),
        dig(data, "Info", "Chat"),
        dig(data, "id", "remote"),
    )
    return phones.address(jid, *_chat_alts(data, from_me)) if jid else None


def _chat_alts(data: JsonMap, from_me: bool) -> list[str | None]:
    """Other address forms of a direct chat: NOWEB `key.remoteJidAlt` (from WAHA 2025.9.5;
    before, Baileys 6.7's `senderPn`/`senderLid` of the sender: not on our own messages),
    GOWS `Info.*Alt` (waha.md 8).

    GOWS `SenderAlt` is the other party only for incoming messages; for our own it is
    `RecipientAlt`. `phones.address` ignores these for group chats.
    """
    info, key = as_map(data.get("Info")), as_map(data.get("key"))
    gows_alt = info.get("RecipientAlt") if from_me else info.get("SenderAlt")
    sender = [] if from_me else [_pn(key.get("senderPn")), as_jid(key.get("senderLid"))]
    return [as_jid(key.get("remoteJidAlt")), *sender, as_jid(info.get("Chat")), as_jid(gows_alt)]


def _sender(payload: JsonMap, key: MessageKey | None, chat: Address) -> Address | None:
    """The author in a group or broadcast: `participant`, id suffix, WEBJS `author`, GOWS `Sender`,
    with NOWEB `participantAlt` (`participantPn`/`participantLid` before WAHA 2025.9.5) /
    GOWS `SenderAlt` as the other form (waha.md 8)."""
    data, info = as_map(payload.get("_data")), as_map(dig(payload, "_data", "Info"))
    grouped = chat.kind is not ChatKind.DIRECT
    raw_key = as_map(data.get("key"))
    jid = first_jid(
        payload.get("participant"),
        key.participant if key else None,
        data.get("author") if grouped else None,
        raw_key.get("participant"),
        info.get("Sender") if grouped else None,
    )
    if jid is None:
        return None
    alts = [
        as_jid(raw_key.get("participantAlt")),
        _pn(raw_key.get("participantPn")),
        as_jid(raw_key.get("participantLid")),
        as_jid(info.get("SenderAlt")) if grouped else None,
    ]
    return phones.address(jid, *alts)


def _pn(value: object) -> str | None:
    """A phone-number jid Baileys 6.7 may give as bare digits (WAHA's own store reads
    `123` as `123@s.whatsapp.net`, `NowebPersistentStore.ts`)."""
    text = value.strip() if isinstance(value, str) else None
    if text and text.isdigit():
        return f"{text}@s.whatsapp.net"
    return as_jid(value)


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


# Go's zero `time.Time`: GOWS has no time for the message (WAHA's `parseTimestamp` makes
# the payload's `timestamp` null then, and `Info.Timestamp` keeps it).
GO_ZERO_TIME = "0001-01-01"


def message_time(payload: JsonMap) -> datetime | None:
    """`timestamp` (seconds, maybe float), else the engine's raw time field."""
    data = as_map(payload.get("_data"))
    gows = dig(data, "Info", "Timestamp")
    if isinstance(gows, str) and gows.startswith(GO_ZERO_TIME):  # GOWS' null `timestamp`
        gows = None
    return maybe_timestamp(
        payload.get("timestamp"),
        data.get("messageTimestamp"),
        gows,
        data.get("t"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Head:
    """Identity and time shared by a message and a reaction, and the engine behind them."""

    key: MessageKey
    chat: Address
    from_me: bool
    sender: Address | None
    timestamp: datetime
    missing_time: bool
    engine: str | None


def _head(payload: JsonMap, engine: str | None, received_at: datetime | None) -> _Head:
    """Id, chat, direction, sender and time; PayloadError when there is no id or chat."""
    key = _payload_key(payload)
    if key is None:
        raise PayloadError("WAHA message without an id")
    from_me = from_me_of(payload, key)
    engine = engine_of(payload, engine)
    chat = chat_of(payload, key, from_me, engine)
    if chat is None:
        raise PayloadError(f"WAHA message {key.bare} without a chat id")
    timestamp = message_time(payload) or received_at
    return _Head(
        key=key,
        chat=chat,
        from_me=from_me,
        sender=_sender(payload, key, chat),
        timestamp=timestamp or EPOCH,
        missing_time=timestamp is None,
        engine=engine,
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
    return parse_with_engine(payload, session_id, None, received_at)


def parse_with_engine(
    payload: Any, session_id: int, engine: str | None, received_at: datetime | None
) -> Message | Reaction:
    """parse_message with the envelope's engine name (decides `from`/`to`, waha.md 3)."""
    if not isinstance(payload, Mapping):
        raise PayloadError("WAHA message payload is not an object")
    head = _head(payload, engine, received_at)
    hint = engine_hint(payload)
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
    return _message(payload, head, classify(payload, hint), hint, session_id)


def _message(
    payload: JsonMap, head: _Head, content: Content, hint: Content | None, session_id: int
) -> Message:
    """Assemble the Message from its parsed parts."""
    source = first_str(payload.get("source"))
    extra = {
        **content.extra,
        **compact(
            source=source,
            typed_on_phone=True
            if head.from_me and source == "app" and head.engine == "GOWS"
            else None,
            media_error=dig(payload, "media", "error") or None,
            timestamp_missing=True if head.missing_time else None,
        ),
    }
    media = content.media
    if media is not None:
        media = replace(media, ref=media_ref(payload, head.key.bare, head.key.chat))
    return Message(
        session_id=session_id,
        provider_message_id=head.key.bare,
        chat=head.chat,
        from_me=head.from_me,
        type=content.type,
        timestamp=head.timestamp,
        body=content.text,
        sender=head.sender,
        ack=ack_of(payload),
        media=media,
        push_name=_push_name(payload),
        reply_to=_reply_to(payload, hint),
        extra=extra,
        raw=payload if content.type is MessageType.OTHER else None,
        provider_type=hint.key if hint else None,
    )


def typed_on_phone(message: Message) -> bool:
    """WAHA proves the message was typed in a WhatsApp app, not sent through its API: GOWS
    says `source: "app"` by the device that sent it (`getSourceDeviceByMsg`). NOWEB and WEBJS
    say `api` only for the ids WAHA sent in the last 10 minutes, from a cache a restart empties
    (waha.md 3): their `app` is no proof, so a send reconciled after a WAHA restart (the usual
    cause of an unanswered send) or 10 minutes on is still found, never sent twice."""
    return message.extra.get("typed_on_phone") is True
