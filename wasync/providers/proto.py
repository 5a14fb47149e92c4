"""The content of a WhatsApp `Message` proto (pure): which content key carries the message,
the wrappers around it, and the type, text, media and extras it gives.

WAHA's NOWEB (Baileys) and GOWS (whatsmeow) engines and Evolution (Baileys) all carry these
protos, so their content decoding lives here once. Field names are WAProto's
(`WhiskeySockets/Baileys` `WAProto/WAProto.proto`); what unwraps what follows Baileys
`normalizeMessageContent` / `extractMessageContent` (`src/Utils/messages.ts`) and whatsmeow
`events.Message.UnwrapRaw` (`types/events/events.go`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from wasync.events import MEDIA_TYPES, Media, MessageType
from wasync.providers.parsing import (
    JsonMap,
    as_int,
    as_list,
    as_map,
    as_number,
    as_str,
    compact,
    dig,
    first_str,
)

_MAX_WRAPPING = 6

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
# A poll's creation, in every proto version (WAProto `Message` fields 49, 60, 64, 111).
POLL_KEYS = frozenset(
    {
        "pollCreationMessage",
        "pollCreationMessageV2",
        "pollCreationMessageV3",
        "pollCreationMessageV5",
    }
)
# Business messages whose words are in their own fields: what Baileys' `extractMessageContent`
# reads (buttons `contentText`, templates `hydratedContentText`), and WAHA's `extractBody`
# (lists: title, description, footer; NOWEB `session.noweb.core.ts`).
BUSINESS_KEYS = ("templateMessage", "buttonsMessage", "listMessage", "interactiveMessage")
# Recognised content that wasync keeps as `other` (replies to buttons and lists, votes,
# protocol messages, ...), and polls that come without their options.
OTHER_CONTENT_KEYS = (
    *sorted(POLL_KEYS),
    "pollUpdateMessage",
    *BUSINESS_KEYS,
    "buttonsResponseMessage",
    "listResponseMessage",
    "templateButtonReplyMessage",
    "interactiveResponseMessage",
    "groupInviteMessage",
    "eventMessage",
    "protocolMessage",
)
# `{<wrapper>: {"message": {...}}}` envelopes around the real content (FutureProofMessage):
# Baileys `normalizeMessageContent` unwraps ephemeral, view-once, document-with-caption,
# edited (a NOWEB store row rewritten by an edit), motion photos (`associatedChildMessage`)
# and group statuses; whatsmeow `UnwrapRaw` also device-sent, bot-invoke and Lottie stickers.
WRAPPERS = frozenset(
    {
        "ephemeralMessage",
        "viewOnceMessage",
        "viewOnceMessageV2",
        "viewOnceMessageV2Extension",
        "documentWithCaptionMessage",
        "editedMessage",
        "associatedChildMessage",
        "groupStatusMessage",
        "groupStatusMessageV2",
        "lottieStickerMessage",
        "botInvokeMessage",
        "deviceSentMessage",
        "pollCreationMessageV4",
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
    # The (content key, proto) that holds the media's download fields when it is not the
    # message's own content: a business message's header (`imageMessage` of a template).
    media_proto: tuple[str, JsonMap] | None = None


def _whitelisted_key(message: JsonMap) -> str | None:
    """The first known content or wrapper key present in `message`."""
    for key in (*CONTENT_TYPES, *WRAPPERS, *OTHER_CONTENT_KEYS):
        if message.get(key) is not None:
            return key
    return None


def _locate(message: JsonMap, message_type: str | None) -> tuple[str | None, Any]:
    """(content key, content value) after unwrapping the FutureProof wrappers."""
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
    if key in BUSINESS_KEYS:
        return _business(key, as_map(value))
    kind = CONTENT_TYPES.get(key, MessageType.OTHER) if key else MessageType.OTHER
    body = as_str(value) if isinstance(value, str) else _text(key, kind, as_map(value))
    if key in POLL_KEYS and poll_options(as_map(value)):
        kind = MessageType.POLL
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
        **{key: (("name",),) for key in POLL_KEYS},
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
    """Type-specific fields kept in `Message.extra`: coordinates, vCards, durations, a poll's
    options."""
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
    if kind is MessageType.POLL:
        return {
            "poll": poll_extra(poll_options(value), as_int(value.get("selectableOptionsCount")))
        }
    return {}


def poll_options(value: JsonMap) -> list[str]:
    """The option names of a `PollCreationMessage` (`options[].optionName`)."""
    return [
        name for o in as_list(value.get("options")) if (name := first_str(dig(o, "optionName")))
    ]


def poll_extra(options: list[str], selectable: int | None) -> dict[str, Any]:
    """`extra["poll"]` of a poll message: its options and how many one may choose (0: any)."""
    return {"options": options, "selectable": selectable or 0}


# --- business messages (templates, buttons, lists, interactive) ---

_HEADER_MEDIA = ("imageMessage", "videoMessage", "documentMessage")


def _business(key: str, value: JsonMap) -> Content:
    """A business message: its words as text, a media header as the message's media."""
    body, header = _business_parts(key, value)
    extra = {"business": key.removesuffix("Message")}
    for media_key in _HEADER_MEDIA:
        media = as_map(header.get(media_key))
        if media:
            kind = CONTENT_TYPES[media_key]
            text = body or first_str(media.get("caption"))
            found = _media(media_key, media)
            return Content(
                key=key,
                type=kind,
                value=value,
                text=text,
                media=found,
                extra=extra,
                media_proto=(media_key, media),
            )
    kind = MessageType.TEXT if body else MessageType.OTHER
    return Content(key=key, type=kind, value=value, text=body, extra=extra)


def _business_parts(key: str, value: JsonMap) -> tuple[str | None, JsonMap]:
    """(text, the part that may hold a media header) of one business message."""
    if key == "templateMessage":
        template = as_map(value.get("hydratedTemplate")) or as_map(
            value.get("hydratedFourRowTemplate")
        )
        interactive = as_map(value.get("interactiveMessageTemplate"))
        if not template and interactive:
            return _business_parts("interactiveMessage", interactive)
        return first_str(template.get("hydratedContentText")), template
    if key == "buttonsMessage":
        return first_str(value.get("contentText"), value.get("text")), value
    if key == "listMessage":
        parts = [first_str(value.get(f)) for f in ("title", "description", "footerText")]
        return "\n".join(p for p in parts if p) or None, {}
    return first_str(dig(value, "body", "text")), as_map(value.get("header"))


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
