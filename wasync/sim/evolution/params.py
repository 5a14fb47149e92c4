"""Reading request bodies as Evolution (JavaScript) does: numbers, dates, objects, media
sources, and a `sendMedia` body in its own order of checks."""

from __future__ import annotations

import mimetypes
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from wasync.sim.base import Json, SimError
from wasync.sim.content import Content, media
from wasync.sim.evolution.guard import bad, envelope

_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_MEDIA_TYPES = ("image", "video", "document", "audio")
# The names Evolution gives media sent without one (2.3.7 l.2799-2805).
_DEFAULT_NAMES = {"image": "image.jpg", "video": "video.mp4"}
_OGG = frozenset({"oga", "ogg", "spx", "opus"})


def as_object(value: Any) -> Json:
    """`value` when it is a JSON object, else `{}`."""
    return value if isinstance(value, dict) else {}


def js_int(value: Any) -> int:
    """A JSON number or numeric string as int; anything else is 0 (falsy, like JS)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return 0


def js_date_s(value: Any, tz_offset_s: int) -> float | None:
    """`new Date(value).getTime() / 1000`: numbers are epoch milliseconds, strings ISO-8601
    (without an offset, a date-time is server local time); None stands for NaN."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000
    if not isinstance(value, str):
        return None
    raw = value.strip()
    if not re.match(r"^\d{4}-\d{2}-\d{2}", raw):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if moment.tzinfo is None:
        local = len(raw) > 10
        zone = timezone(timedelta(seconds=tz_offset_s)) if local else UTC
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


def is_url(value: str) -> bool:
    """An http(s) or ftp URL with a host, as Evolution accepts media by URL."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https", "ftp") and bool(parts.netloc)


def is_base64(value: str) -> bool:
    """Padded base64, as Evolution accepts media inline."""
    return bool(value) and len(value) % 4 == 0 and bool(_BASE64.match(value))


def media_content(body: Json, *, typed_by_name: bool = True) -> Content:
    """sendMedia body checks in Evolution's order (evolution.md §6), and the stored message's
    file name and mimetype as `prepareMediaMessage` makes them; `typed_by_name`: 2.3.3 on."""
    kind = body.get("mediatype")
    if kind not in _MEDIA_TYPES:
        raise bad(f"mediatype is not one of enum values: {','.join(_MEDIA_TYPES)}")
    source = body.get("media")
    if not isinstance(source, str):
        raise bad('instance requires property "media"')
    name = body.get("fileName")
    if is_base64(source) and not name and kind == "document":
        raise bad("For base64 the file name must be informed.")
    if not (is_url(source) or is_base64(source)):
        raise bad("Owned media must be a url or base64")
    if kind == "document" and not name:
        name = _name_in_url(source)
    mimetype = str(body["mimetype"]) if body.get("mimetype") else None
    if typed_by_name and (name or kind in _DEFAULT_NAMES):
        # Since 2.3.3 (09ee2e62) the name overrides the mimetype given, with `.toString()` of
        # `false` for an extension mime-types does not know (whatsapp.baileys.service.ts 2.3.7
        # l.2870-2875).
        mimetype = mime_lookup(str(name or _DEFAULT_NAMES[str(kind)])) or "false"
    caption = body.get("caption")
    return media(
        str(kind),
        caption=str(caption) if caption else None,
        filename=str(name) if name else None,
        mimetype=mimetype,
    )


def _name_in_url(source: str) -> str:
    r"""A URL document's `fileName` when none is given: `/.*\/(.+?)\./.exec(media)[1]`, the
    text between a slash and the next dot, with no extension (2.3.7 l.2793-2797); a URL with
    no such text makes it throw (`arrayMatch` is null), answered 500."""
    found = re.search(r".*/(.+?)\.", source)
    if found is None:
        message = "TypeError: Cannot read properties of null (reading '1')"
        raise SimError(500, envelope(500, "Internal Server Error", [message]))
    return found.group(1)


def mime_lookup(name: str) -> str | None:
    """`mimeTypes.lookup(name)` (the `mime-types` package): the type of the name's extension,
    a bare extension counting as one (`pdf`), None (JavaScript's `false`) when unknown.
    Python's table stands in for mime-db, with mime-db's one type for the Ogg family."""
    extension = ("x." + name.rsplit("/", 1)[-1]).rsplit(".", 1)[1].lower()
    if extension in _OGG:
        return "audio/ogg"
    return mimetypes.guess_type("x." + extension, strict=False)[0] if extension else None
