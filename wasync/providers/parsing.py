"""Pure helpers shared by the provider parsers: JSON access, timestamps, protobuf Longs and the
content of Baileys / whatsmeow message protos.

WAHA's NOWEB and GOWS engines and Evolution all carry WhatsApp `Message` protos, so their content
decoding (content key whitelist, wrappers, media fields, location, contacts) lives here once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from wasync.errors import PayloadError
from wasync.events import Media, MessageType
from wasync.untrusted import parse_int, parse_number

JsonMap = Mapping[str, Any]
EMPTY: JsonMap = MappingProxyType({})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Stand-in timestamp for a message whose provider gave none (flagged `timestamp_missing`)."""

_NUMERIC = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_MS_ABOVE = 1e12  # epoch seconds stay below this until the year 33658
_US_ABOVE = 1e15
_MAX_WRAPPING = 4

# --- JSON access ---


def as_map(value: Any) -> JsonMap:
    """`value` when it is a JSON object, else an empty mapping."""
    return value if isinstance(value, Mapping) else EMPTY


def as_list(value: Any) -> list[Any]:
    """`value` as a list when it is a JSON array, else an empty list."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return []


def as_str(value: Any) -> str | None:
    """`value` when it is a non-blank string (returned unchanged), else None."""
    return value if isinstance(value, str) and value.strip() else None


def dig(value: Any, *path: str) -> Any:
    """Follow `path` through nested JSON objects; None as soon as a step is missing."""
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def name_in_raw(raw: bytes, key: str) -> str | None:
    """The string value of the first `"<key>": "..."` in a raw body, found by pattern, so a
    body cut short or otherwise not JSON still says which session sent it (the webhook then
    verifies that session's signature before keeping it). Escaped or odd names: None."""
    found = re.search(rb'"' + re.escape(key.encode()) + rb'"\s*:\s*"([^"\\]{1,100})"', raw[:65536])
    if found is None:
        return None
    try:
        name = found.group(1).decode()
    except UnicodeDecodeError:
        return None
    return name.strip() or None


def first_str(*values: Any) -> str | None:
    """The first non-blank string among `values`."""
    for value in values:
        if (text := as_str(value)) is not None:
            return text
    return None


def compact(**values: Any) -> dict[str, Any]:
    """A dict of the given keyword values without the None ones (for `extra`/`detail`)."""
    return {key: value for key, value in values.items() if value is not None}


# --- numbers and time ---


def _long(value: JsonMap) -> int | None:
    """A protobuf.js `Long` serialised as `{"low": N, "high": M, "unsigned": bool}`."""
    low, high = value.get("low"), value.get("high", 0)
    if not isinstance(low, int) or not isinstance(high, int) or isinstance(low, bool):
        return None
    if isinstance(high, bool) or not -(2**31) <= high < 2**32 or not -(2**31) <= low < 2**32:
        return None  # not 32-bit halves: not a Long
    high = high & 0xFFFFFFFF if value.get("unsigned") else high
    return high * 2**32 + (low & 0xFFFFFFFF)


def as_number(value: Any) -> int | float | None:
    """A finite number from an int, float, numeric string or protobuf Long; None otherwise
    (`wasync.untrusted.parse_number`: ASCII digits only, bounded length, no NaN/infinity).

    Evolution 2.3.x sends Longs as `{"low","high","unsigned"}`, v1 as strings (evolution.md 4.2).
    """
    if isinstance(value, Mapping):
        return _long(value)
    return parse_number(value)


def as_int(value: Any) -> int | None:
    """An integer from an int, integral float, numeric string or Long (`fileLength`) that a
    64-bit column can hold; else None."""
    number = as_number(value)
    if number is None or (isinstance(number, float) and not number.is_integer()):
        return None
    return parse_int(int(number))


def parse_timestamp(value: Any) -> datetime:
    """A UTC-aware datetime from epoch seconds (int, float, numeric string or Long), epoch
    milliseconds/microseconds (by magnitude) or an ISO-8601 string; naive ISO counts as UTC.

    Raises PayloadError when `value` is none of these, or names no time a datetime can hold
    (before year 1 or after 9999, whatever the unit).
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and not _NUMERIC.match(value.strip()):
        return _parse_iso(value)
    number = as_number(value)
    if number is None:
        raise PayloadError(f"not a timestamp: {_short(value)}")
    try:
        if abs(number) > _US_ABOVE:
            number = number / 1_000_000
        elif abs(number) > _MS_ABOVE:
            number = number / 1000
        return datetime.fromtimestamp(number, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise PayloadError(f"timestamp out of range: {_short(value)}") from exc


def _short(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for error messages about hostile values."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_iso(text: str) -> datetime:
    """An ISO-8601 string as an aware datetime (GOWS `Info.Timestamp`, API `updatedAt`)."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise PayloadError(f"not a timestamp: {_short(text)}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def maybe_timestamp(*values: Any) -> datetime | None:
    """The first of `values` that parses as a timestamp, or None (never raises)."""
    for value in values:
        if value is None or value == "":
            continue
        try:
            return parse_timestamp(value)
        except PayloadError:
            continue
    return None


# --- Baileys / whatsmeow message content ---

# Content keys that carry a message, in fallback priority order. Never take the first key of
# `message`: metadata such as `messageContextInfo` may come first (evolution.md 4.2).
CONTENT_TYPES: Mapping[str, MessageType] = MappingProxyType(
    {
        "conversation": MessageType.TEXT,
        "extendedTextMessage": MessageType.TEXT,
        "imageMessage": MessageType.IMAGE,
        "videoMessage": MessageType.VIDEO,
        "ptvMessage": MessageType.VIDEO,
        "audioMessage": MessageType.AUDIO,
        "documentMessage": MessageType.DOCUMENT,
        "stickerMessage": MessageType.STICKER,
        "locationMessage": MessageType.LOCATION,
        "liveLocationMessage": MessageType.LOCATION,
        "contactMessage": MessageType.CONTACT,
        "contactsArrayMessage": MessageType.CONTACT,
        "reactionMessage": MessageType.REACTION,
    }
)
# Recognised content that wasync keeps as `other` (polls, buttons, lists, protocol messages).
OTHER_CONTENT_KEYS = (
    "pollCreationMessage",
    "pollCreationMessageV2",
    "pollCreationMessageV3",
    "pollUpdateMessage",
    "buttonsMessage",
    "buttonsResponseMessage",
    "listMessage",
    "listResponseMessage",
    "templateMessage",
    "templateButtonReplyMessage",
    "interactiveMessage",
    "interactiveResponseMessage",
    "groupInviteMessage",
    "eventMessage",
    "protocolMessage",
)
# `{<wrapper>: {"message": {...}}}` envelopes around the real content (evolution.md 4.2).
WRAPPERS = frozenset(
    {
        "ephemeralMessage",
        "viewOnceMessage",
        "viewOnceMessageV2",
        "viewOnceMessageV2Extension",
        "documentWithCaptionMessage",
    }
)
MEDIA_TYPES = frozenset(
    {
        MessageType.IMAGE,
        MessageType.VIDEO,
        MessageType.AUDIO,
        MessageType.DOCUMENT,
        MessageType.STICKER,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Content:
    """What a message proto says: its content key, wasync type, text, media and extras."""

    key: str | None
    type: MessageType
    value: JsonMap = field(default_factory=dict)
    text: str | None = None
    media: Media | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _whitelisted_key(message: JsonMap) -> str | None:
    """The first known content or wrapper key present in `message`."""
    for key in (*CONTENT_TYPES, *WRAPPERS, *OTHER_CONTENT_KEYS):
        if message.get(key) is not None:
            return key
    return None


def _locate(message: JsonMap, message_type: str | None) -> tuple[str | None, Any]:
    """(content key, content value) after unwrapping ephemeral/viewOnce/documentWithCaption."""
    key = message_type
    for _ in range(_MAX_WRAPPING):
        if key is None or key not in message:
            # A type naming absent content: Evolution keeps `messageType` when it overwrites
            # an edited row's `message` (evolution.md 4.3).
            key = _whitelisted_key(message) or (None if key in WRAPPERS else key)
        if key in WRAPPERS:
            message, key = as_map(dig(message, key, "message")), None
            continue
        return key, message.get(key) if key else None
    return None, None


def message_content(message: Any, message_type: str | None = None) -> Content:
    """Decode a Baileys/whatsmeow `message` proto; `message_type` (Evolution `messageType`)
    takes precedence over the key whitelist. Unknown content gives type OTHER."""
    key, value = _locate(as_map(message), message_type)
    kind = CONTENT_TYPES.get(key, MessageType.OTHER) if key else MessageType.OTHER
    body = as_str(value) if isinstance(value, str) else _text(key, kind, as_map(value))
    return Content(
        key=key,
        type=kind,
        value=as_map(value),
        text=body,
        media=_media(key, as_map(value)) if kind in MEDIA_TYPES else None,
        extra=_extra(key, kind, as_map(value)),
    )


# Where the words are in content kept as `other`: what a customer chose in a button or list
# reply (the CRM's agent must see the answer), a poll's question (evolution.md 4.2).
_OTHER_TEXT: Mapping[str, tuple[tuple[str, ...], ...]] = MappingProxyType(
    {
        "buttonsResponseMessage": (("selectedDisplayText",), ("selectedButtonId",)),
        "templateButtonReplyMessage": (("selectedDisplayText",), ("selectedId",)),
        "listResponseMessage": (("title",), ("singleSelectReply", "selectedRowId")),
        "interactiveResponseMessage": (("body", "text"),),
        "pollCreationMessage": (("name",),),
        "pollCreationMessageV2": (("name",),),
        "pollCreationMessageV3": (("name",),),
    }
)


def _text(key: str | None, kind: MessageType, value: JsonMap) -> str | None:
    """Text or caption of a content value (reactions carry an emoji, not a body)."""
    if kind is MessageType.REACTION:
        return None
    if kind is MessageType.CONTACT:
        return first_str(value.get("displayName"))
    paths = _OTHER_TEXT.get(key or "")
    if paths is not None:
        return first_str(*(dig(value, *path) for path in paths))
    return first_str(value.get("text"), value.get("caption"), value.get("comment"))


def _media(key: str | None, value: JsonMap) -> Media:
    """Media metadata of an image/video/audio/document/sticker content value.

    The `url` of a proto is WhatsApp's encrypted CDN blob, useless without the media key, so it
    is not copied; providers set `Media.url` to a fetchable address themselves.
    """
    filename = first_str(value.get("fileName"))
    if filename is None and key == "documentMessage":
        filename = first_str(value.get("title"))
    ptt = value.get("ptt", value.get("PTT"))
    return Media(
        mimetype=first_str(value.get("mimetype")),
        filename=filename,
        size=as_int(value.get("fileLength")),
        voice=key == "audioMessage" and ptt is True,
    )


def _extra(key: str | None, kind: MessageType, value: JsonMap) -> dict[str, Any]:
    """Type-specific fields kept in `Message.extra`: coordinates, vCards, durations."""
    if kind is MessageType.LOCATION:
        return compact(
            latitude=as_number(value.get("degreesLatitude")),
            longitude=as_number(value.get("degreesLongitude")),
            name=first_str(value.get("name")),
            address=first_str(value.get("address")),
            live=True if key == "liveLocationMessage" else None,
        )
    if key == "contactMessage":
        return compact(vcards=[v for v in [first_str(value.get("vcard"))] if v])
    if key == "contactsArrayMessage":
        contacts = [as_map(c) for c in as_list(value.get("contacts"))]
        return compact(vcards=[v for c in contacts if (v := first_str(c.get("vcard")))])
    if kind in (MessageType.AUDIO, MessageType.VIDEO):
        return compact(seconds=as_int(value.get("seconds")))
    return {}


def edited_text(message: Any) -> str | None:
    """The new text of an edit, from a protocolMessage `{key, type, editedMessage}`, a message
    holding `protocolMessage`/`editedMessage` (FutureProof wrapper), or plain content."""
    current = as_map(message)
    for _ in range(_MAX_WRAPPING):
        proto = as_map(current.get("protocolMessage"))
        edited = as_map(proto.get("editedMessage") or current.get("editedMessage"))
        if not edited:
            break
        current = as_map(edited.get("message")) or edited
    return message_content(current).text
