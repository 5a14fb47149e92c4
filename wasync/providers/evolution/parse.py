"""Evolution API (v2.x, Baileys channel): one stored or delivered message into a wasync
Message or Reaction (pure).

Facts and section numbers cited below come from `evolution.md` (the shared provider notes);
issue numbers are `EvolutionAPI/evolution-api#n`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from wasync import phones
from wasync.ackrank import ACK_RANK
from wasync.errors import PayloadError
from wasync.events import (
    AckLevel,
    Address,
    Event,
    Media,
    Message,
    MessageType,
    PollVote,
    Reaction,
)
from wasync.providers.base import edit_of, revoke_of
from wasync.providers.evolution.media import inline_bytes, media_ref
from wasync.providers.evolution.version import Version, deleted_means_delete
from wasync.providers.parsing import (
    EPOCH,
    JsonMap,
    as_list,
    as_map,
    as_str,
    compact,
    dig,
    first_str,
    maybe_timestamp,
)
from wasync.providers.proto import Content, message_content
from wasync.untrusted import parse_int

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


def ack_from(value: Any) -> AckLevel | None:
    """An Evolution status (`SERVER_ACK`, `DELIVERY_ACK`, ..., or 0..5) as an AckLevel.

    None for `DELETED`, missing or unknown values: those are not delivery states.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _NUMBERED[value] if 0 <= value < len(_NUMBERED) else None
    if isinstance(value, str):
        number = parse_int(value, lo=0, hi=len(_NUMBERED) - 1)
        return _NUMBERED[number] if number is not None else _STATUS.get(value.strip().upper())
    return None


def _best_ack(*values: Any) -> AckLevel | None:
    """The furthest AckLevel among `values` by the one ack rule (`ACK_RANK`: ERROR stands
    above PENDING, though its number is lower)."""
    levels = [level for value in values if (level := ack_from(value)) is not None]
    return max(levels, key=ACK_RANK.__getitem__) if levels else None


def _address(source: JsonMap, keys: tuple[str, ...]) -> Address | None:
    """An Address from every jid form `source` carries under `keys` (first one decides kind)."""
    return phones.address(*[as_str(source.get(key)) for key in keys])


def chat_of(key: JsonMap) -> Address | None:
    """The chat of a message key: `remoteJid` plus its alternates (evolution.md 4.2, 7.2; #1872)."""
    return _address(key, _CHAT_KEYS)


def key_id_of(source: JsonMap) -> str | None:
    """WhatsApp's message id of a key-like object."""
    found = first_str(source.get("id"))
    return found.strip() if found else None


def stored_changes(
    record: Mapping[str, Any], message: Message, *, version: Version | None = None
) -> list[Event]:
    """Edits and deletes a findMessages record shows, for a poller that missed their webhooks
    (evolution.md 9.1: the webhook stream is not complete).

    Evolution stores an edit by overwriting the row's `message` (and `messageTimestamp`) and
    adding a `MessageUpdate` row `EDITED` (4.3): the row's text is the edited one. An API
    delete keeps the row with `key.deleted: true` when DATABASE_DELETE_MESSAGE is on (4.4).
    A delete from WhatsApp adds a `DELETED` row, which 2.3.0-2.3.4 also add to an edit, a
    star or a poll vote (`wasync.providers.evolution.version`): a delete only where the
    server's `version` says so.
    """
    changes: list[Event] = []
    statuses = _marks(record)
    edited, deleted = "EDITED" in statuses, "DELETED" in statuses
    revoked = dig(record, "key", "deleted") is True or (deleted and deleted_means_delete(version))
    if edited and not (revoked and not message.body):  # a deleted row may have lost its text
        changes.append(edit_of(message))
    if revoked:
        changes.append(revoke_of(message))
    return changes


def needs_version(record: Mapping[str, Any]) -> bool:
    """Whether what a record shows depends on the server's version (`stored_changes`)."""
    return "DELETED" in _marks(record)


def _marks(record: Mapping[str, Any]) -> set[str]:
    return {str(s).upper() for s in _update_statuses(as_map(record)) if s}


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
    message_id, chat = key_id_of(key), chat_of(key)
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
    target = key_id_of(as_map(content.value.get("key")))
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


def _media(data: JsonMap, content: Content) -> Media | None:
    """The content's media, with what the media worker needs: the download ref and, with
    `webhookBase64`, the file itself (evolution.md 3.1)."""
    if content.media is None:
        return None
    return replace(content.media, ref=media_ref(data, content), data=inline_bytes(data))


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
        media=_media(data, content),
        push_name=first_str(data.get("pushName")),
        reply_to=_reply_to(data, content),
        extra={**content.extra, **flags},
        raw=data if content.type is MessageType.OTHER else None,
        provider_type=first_str(data.get("messageType")) or content.key,
    )


def poll_vote_of(
    data: Mapping[str, Any], *, session_id: int, received_at: datetime | None = None
) -> PollVote | None:
    """A `pollUpdateMessage` whose vote Evolution decrypted (2.3.7 puts the chosen option
    names in `message.pollUpdateMessage.vote.selectedOptions`, in the webhook and in the row
    it stores: `whatsapp.baileys.service.ts` messages.upsert), as a vote on its poll; None
    for anything else (an older Evolution's encrypted vote stays an `other` message)."""
    update = as_map(dig(data, "message", "pollUpdateMessage"))
    target = key_id_of(as_map(update.get("pollCreationMessageKey")))
    chosen = as_list(dig(update, "vote", "selectedOptions"))
    if target is None or not all(isinstance(o, str) for o in chosen):
        return None
    try:
        head = _head(data, received_at)
    except PayloadError:
        return None
    voter = "me" if head.from_me else (head.sender or head.chat).jid
    return PollVote(
        session_id=session_id,
        provider_message_id=target,
        voter=voter,
        options=tuple(chosen),
        chat=head.chat,
        timestamp=head.timestamp,
        vote_id=head.message_id,
    )


def _reply_to(data: JsonMap, content: Content) -> str | None:
    """Quoted message id: `contextInfo.stanzaId` at data level (2.x) or inside the content (v1)."""
    return first_str(
        dig(data, "contextInfo", "stanzaId"), dig(content.value, "contextInfo", "stanzaId")
    )


# Evolution's `source` (the device behind a message id) for the phone apps: an agent typing
# on the phone, never an API send (those show as web or unknown; evolution.md 4.5).
PHONE_DEVICES = frozenset({"android", "ios"})


def typed_on_phone(message: Message) -> bool:
    """`source: android|ios` (kept as `extra["device"]`): typed on the phone app."""
    return message.extra.get("device") in PHONE_DEVICES
