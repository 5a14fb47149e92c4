"""Reading request bodies as Evolution (JavaScript) does: numbers, dates, objects, media
sources, and a `sendMedia` body in its own order of checks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from wasync.sim.base import Json
from wasync.sim.content import Content, media
from wasync.sim.evolution.guard import bad

_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_MEDIA_TYPES = ("image", "video", "document", "audio")


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


def media_content(body: Json) -> Content:
    """sendMedia body checks in Evolution's order (evolution.md §6)."""
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
    if kind == "document" and not name and is_url(source):
        name = urlsplit(source).path.rsplit("/", 1)[-1] or "file"
    caption = body.get("caption")
    return media(
        str(kind),
        caption=str(caption) if caption else None,
        filename=str(name) if name else None,
        mimetype=str(body["mimetype"]) if body.get("mimetype") else None,
    )
