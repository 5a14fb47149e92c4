"""What a simulated message carries (`Content` and its constructors), WhatsApp's protobuf message
JSON, and message ids in each device's format; shared by both simulators so one seed gives the
same conversations on WAHA (any engine) and on Evolution."""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

KINDS = (
    "text",
    "image",
    "video",
    "audio",
    "voice",
    "document",
    "sticker",
    "location",
    "contact",
    "reaction",
)
MEDIA_KINDS = frozenset({"image", "video", "audio", "voice", "document", "sticker"})
_MEDIA_DEFAULTS: dict[str, tuple[str, str | None]] = {
    "image": ("image/jpeg", None),
    "video": ("video/mp4", None),
    "audio": ("audio/mpeg", None),
    "voice": ("audio/ogg; codecs=opus", None),
    "document": ("application/pdf", "documento.pdf"),
    "sticker": ("image/webp", None),
}
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BASE36 = string.digits + string.ascii_lowercase


@dataclass(frozen=True, slots=True, kw_only=True)
class Content:
    """What a simulated message carries, before a simulator renders it in its provider's shape."""

    kind: str = "text"
    text: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    size: int = 0
    seconds: int = 0
    latitude: float = 0.0
    longitude: float = 0.0
    place: str | None = None
    contact_name: str | None = None
    vcard: str | None = None
    reaction_to: str | None = None
    reaction_to_from_me: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown content kind {self.kind!r}; expected one of {KINDS}")

    @property
    def has_media(self) -> bool:
        """True for kinds WhatsApp stores as a downloadable file."""
        return self.kind in MEDIA_KINDS


def text(body: str) -> Content:
    """A plain text message."""
    return Content(kind="text", text=body)


def media(
    kind: str = "image",
    *,
    caption: str | None = None,
    filename: str | None = None,
    mimetype: str | None = None,
    size: int = 48_213,
    seconds: int = 7,
) -> Content:
    """A media message; mimetype and (for documents) file name default per kind."""
    if kind not in MEDIA_KINDS:
        raise ValueError(f"{kind!r} is not a media kind; expected one of {sorted(MEDIA_KINDS)}")
    default_mime, default_name = _MEDIA_DEFAULTS[kind]
    return Content(
        kind=kind,
        text=caption,
        mimetype=mimetype or default_mime,
        filename=filename or default_name,
        size=size,
        seconds=seconds if kind in {"video", "audio", "voice"} else 0,
    )


def location(latitude: float, longitude: float, place: str | None = None) -> Content:
    """A pinned location."""
    return Content(kind="location", latitude=latitude, longitude=longitude, place=place)


def contact_card(name: str, phone: str) -> Content:
    """A shared contact (vCard)."""
    vcard = (
        "BEGIN:VCARD\nVERSION:3.0\n"
        f"N:;{name};;;\nFN:{name}\nTEL;type=CELL;waid={phone}:+{phone}\nEND:VCARD"
    )
    return Content(kind="contact", contact_name=name, vcard=vcard)


def reaction(emoji: str, target_raw_id: str, *, target_from_me: bool) -> Content:
    """An emoji reaction to the message whose raw WhatsApp id is `target_raw_id`."""
    return Content(
        kind="reaction", text=emoji, reaction_to=target_raw_id, reaction_to_from_me=target_from_me
    )


PROTO_KEYS = {
    "text": "conversation",
    "image": "imageMessage",
    "video": "videoMessage",
    "audio": "audioMessage",
    "voice": "audioMessage",
    "document": "documentMessage",
    "sticker": "stickerMessage",
    "location": "locationMessage",
    "contact": "contactMessage",
    "reaction": "reactionMessage",
}
_CDN_PATHS = {
    "image": "/o1/v/t62.7118-24/f1/m234/up-oil-image",
    "video": "/v/t62.7161-24/up-video",
    "audio": "/v/t62.7114-24/up-audio",
    "voice": "/v/t62.7117-24/up-ptt",
    "document": "/v/t62.7119-24/up-doc",
    "sticker": "/v/t62.15575-24/up-sticker",
}


def wa_proto(
    content: Content,
    *,
    ts: int,
    rng: random.Random,
    longs: bool = False,
    reaction_key: dict[str, object] | None = None,
) -> dict[str, object]:
    """`content` as WhatsApp's protobuf message in JSON (Baileys / whatsmeow field names).

    `longs=True` serialises Long and byte fields like Evolution 2.3.x (`{"low":N,"high":0,
    "unsigned":true}`, `{"0":12,...}`); otherwise as protobuf JSON strings (WAHA `_data`).
    """
    kind = content.kind
    if kind == "text":
        return {"conversation": content.text or ""}
    if kind == "location":
        return {
            "locationMessage": {
                "degreesLatitude": content.latitude,
                "degreesLongitude": content.longitude,
                "name": content.place,
                "address": content.place,
            }
        }
    if kind == "contact":
        return {"contactMessage": {"displayName": content.contact_name, "vcard": content.vcard}}
    if kind == "reaction":
        stamp = ts * 1000
        return {
            "reactionMessage": {
                "key": reaction_key or {},
                "text": content.text or "",
                "senderTimestampMs": _long(stamp) if longs else str(stamp),
            }
        }
    return {PROTO_KEYS[kind]: _media_proto(content, ts=ts, rng=rng, longs=longs)}


def _long(value: int) -> dict[str, object]:
    return {"low": value & 0xFFFFFFFF, "high": value >> 32, "unsigned": True}


def _bytes(rng: random.Random, n: int, longs: bool) -> object:
    raw = rng.getrandbits(8 * n).to_bytes(n, "big")
    if longs:
        return {str(i): b for i, b in enumerate(raw)}
    return base64.b64encode(raw).decode()


def _media_proto(
    content: Content, *, ts: int, rng: random.Random, longs: bool
) -> dict[str, object]:
    kind = content.kind
    path = f"{_CDN_PATHS[kind]}-{_hex(rng, 12).lower()}"
    out: dict[str, object] = {
        "url": f"https://mmg.whatsapp.net{path}?ccb=11-4&mms3=true",
        "mimetype": content.mimetype,
        "fileSha256": _bytes(rng, 8, longs),
        "fileLength": _long(content.size) if longs else str(content.size),
        "mediaKey": _bytes(rng, 8, longs),
        "fileEncSha256": _bytes(rng, 8, longs),
        "directPath": path,
        "mediaKeyTimestamp": _long(ts) if longs else str(ts),
    }
    if kind in ("image", "video"):
        out.update(height=1280, width=720, jpegThumbnail=_bytes(rng, 6, longs))
    if kind in ("image", "video", "document") and content.text:
        out["caption"] = content.text
    if kind in ("video", "audio", "voice"):
        out["seconds"] = content.seconds
    if kind in ("audio", "voice"):
        out["ptt"] = kind == "voice"
    if kind == "voice":
        out["waveform"] = _bytes(rng, 8, longs)
    if kind == "document":
        out.update(title=content.filename, fileName=content.filename, pageCount=1)
    if kind == "sticker":
        out.update(isAnimated=False, isAvatar=False)
    return out


# -- ids ---------------------------------------------------------------------------------------


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}X}"


def raw_message_id(rng: random.Random, device: str = "android") -> str:
    """A WhatsApp message id in the format the sending device uses.

    Baileys' `getDevice()` infers the device from this format (`3A`+18 iOS, `3E`+20 web,
    32 chars Android), which is what Evolution reports as `source`.
    """
    if device == "ios":
        return "3A" + _hex(rng, 18)
    if device == "web":
        return "3EB0" + _hex(rng, 18)
    if device == "desktop":
        return "3F" + _hex(rng, 16)
    return _hex(rng, 32)


def device_of(raw_id: str) -> str:
    """Baileys `getDevice()`: the device that produced a message id."""
    if raw_id.startswith("3A") and len(raw_id) == 20:
        return "ios"
    if raw_id.startswith("3E") and len(raw_id) == 22:
        return "web"
    if len(raw_id) in (21, 32):
        return "android"
    if raw_id.startswith("3F") or len(raw_id) == 18:
        return "desktop"
    return "unknown"


def ulid(rng: random.Random, ms: int) -> str:
    """A ULID (Crockford base32, 26 chars) for time `ms` with random bits from `rng`."""
    value = (ms << 80) | rng.getrandbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def cuid(rng: random.Random) -> str:
    """A Prisma-style cuid (`c` + 24 base36 chars), Evolution's row id."""
    return "c" + "".join(rng.choice(_BASE36) for _ in range(24))
