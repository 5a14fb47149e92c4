"""WAHA message content (pure): type, text, media and extras of a `WAMessage`, from its own
fields and from what the engine's raw `_data` says.

Facts and section numbers cited below come from `waha.md` (the shared provider notes).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

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
from wasync.providers.proto import Content, message_content, poll_extra

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


def engine_hint(payload: JsonMap) -> Content | None:
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
    if webjs_type == "poll_creation":
        return _webjs_poll(data)
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


def _webjs_poll(data: JsonMap) -> Content:
    """A WEBJS poll: `pollName`, `pollOptions[].name`, `pollSelectableOptionsCount` (0: any
    number; whatsapp-web.js `Message`, type `poll_creation`). Without options it is odd
    content, kept as `other`."""
    names = (first_str(as_map(o).get("name")) for o in as_list(data.get("pollOptions")))
    options = [name for name in names if name]
    text = first_str(data.get("pollName"))
    if not options:
        return Content(key="poll_creation", type=MessageType.OTHER, text=text)
    extra = {"poll": poll_extra(options, as_int(data.get("pollSelectableOptionsCount")))}
    return Content(key="poll_creation", type=MessageType.POLL, text=text, extra=extra)


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


def classify(payload: JsonMap, hint: Content | None) -> Content:
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
