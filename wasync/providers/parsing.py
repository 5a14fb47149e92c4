"""Pure helpers shared by the provider parsers: JSON access, numbers, protobuf Longs and
timestamps. The content of WhatsApp message protos is `wasync.providers.proto`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from wasync.errors import PayloadError
from wasync.untrusted import parse_int, parse_number

JsonMap = Mapping[str, Any]
EMPTY: JsonMap = MappingProxyType({})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Stand-in timestamp for a message whose provider gave none (flagged `timestamp_missing`)."""

_NUMERIC = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_MS_ABOVE = 1e12  # epoch seconds stay below this until the year 33658
_US_ABOVE = 1e15

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
