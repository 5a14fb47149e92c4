"""Reading untrusted input: JSON, numbers and text, refusing what cannot be represented.

Every parser of outside data (webhook bodies, provider answers, REST and WebSocket
parameters, captured files) goes through these, so a hostile value gets one clear error or
`None`, never an exception nobody expected:

- `loads`: JSON, with `RecursionError` (deeply nested arrays) and over-deep documents turned
  into `ValueError` like any other bad JSON;
- `parse_int` / `parse_number`: ASCII digits only (`str.isdigit()` accepts `"²"`, which
  `int()` refuses), a bounded digit count (`int()` refuses more than 4,300 digits), finite
  floats, and a range (by default what a 64-bit integer column holds);
- `clean_text` / `text_problem`: what Postgres cannot store in a text column (U+0000) and
  what no UTF-8 encoder accepts (lone surrogates, which `json.loads` produces from `"\\ud800"`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 64  # real WAHA / Evolution bodies nest about 10 deep
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1  # an INTEGER column on Postgres (most ids): asyncpg refuses more
MAX_DIGITS = 40  # far beyond int64 and any timestamp in any unit; int() is quadratic in digits

_INT = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?")
# Lone surrogates (not valid Unicode scalar values) and NUL.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


# --- JSON ---------------------------------------------------------------------------------------


def loads(raw: str | bytes | bytearray) -> Any:
    """`json.loads`, but every way a document can be unusable is a `ValueError`: bad syntax,
    bad UTF-8, more than 4,300 digits in a number, nesting deeper than `MAX_DEPTH` (which
    would exhaust the stack of whatever walks it next), or deep enough for `RecursionError`."""
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if depth_over(doc, MAX_DEPTH):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return doc


def depth_over(doc: Any, limit: int) -> bool:
    """True when `doc` nests arrays/objects more than `limit` deep (iterative: no recursion)."""
    containers = (dict, list)
    level = [doc] if isinstance(doc, containers) else []
    depth = 0
    while level:  # one nesting level at a time: no tuple per node
        depth += 1
        if depth > limit:
            return True
        below = []
        for node in level:
            for child in node.values() if isinstance(node, dict) else node:
                if isinstance(child, containers):
                    below.append(child)
        level = below
    return False


# --- numbers ------------------------------------------------------------------------------------


def parse_int(value: Any, *, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int | None:
    """An integer in `[lo, hi]` from an int, an integral finite float or a string of ASCII
    digits (sign allowed, surrounding blanks ignored); None for anything else, never raises."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_DIGITS or not _INT.fullmatch(text):
            return None
        value = int(text)
    if not isinstance(value, int):
        return None
    return value if lo <= value <= hi else None


def parse_number(value: Any) -> int | float | None:
    """A finite number from an int, a float or an ASCII numeric string (`"1.5"`, `"1e3"`);
    integer strings stay exact ints. None for anything else (`"²"`, `"nan"`, 5,000 digits,
    `1e999`); never raises. Ints are returned whatever their size: range is the caller's."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > MAX_DIGITS or not _NUMBER.fullmatch(text):
        return None
    if _INT.fullmatch(text):
        return int(text)
    number = float(text)
    return number if math.isfinite(number) else None


# --- text ---------------------------------------------------------------------------------------


def storable(text: str) -> bool:
    """True when every text column can hold `text`: no NUL, no lone surrogate.

    The check every event's text goes through, so it is the fast one: `in` is a memchr,
    `isascii()` reads a flag, and the strict UTF-8 encoder (C, several times faster than the
    regex over Portuguese text) refuses exactly the lone surrogates."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored as it is (a NUL, a lone surrogate), or None."""
    if storable(text):
        return None
    found = _BAD_TEXT.search(text)
    if found is None:
        return None
    char = found.group()
    return (
        "contains NUL (U+0000)"
        if char == "\x00"
        else f"contains a lone surrogate U+{ord(char):04X}"
    )


def clean_text(text: str) -> str:
    """`text` without NUL and lone surrogates (everything else kept as it is)."""
    return text if storable(text) else _BAD_TEXT.sub("", text)


def clean_json(value: Any, *, depth: int = MAX_DEPTH) -> Any:
    """A JSON value with `clean_text` applied to every string, keys included; values nested
    deeper than `depth` are dropped (None)."""
    if isinstance(value, str):
        return clean_text(value)
    if depth <= 0:
        return None
    if isinstance(value, Mapping):
        return {clean_text(str(k)): clean_json(v, depth=depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v, depth=depth - 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_problem(value: Any, *, depth: int = MAX_DEPTH) -> bool:
    """True when some string (or key) of a JSON value needs `clean_json`, or it nests too deep
    or holds a non-finite float: the cheap check before copying."""
    if value.__class__ is dict and _flat_and_plain(value):
        return False  # the common case: one flat object of plain values
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        node, left = stack.pop()
        if isinstance(node, str):
            if not storable(node):
                return True
        elif isinstance(node, Mapping):
            if left <= 0:
                return True
            for k, v in node.items():
                stack.append((str(k), left))
                stack.append((v, left - 1))
        elif isinstance(node, list | tuple):
            if left <= 0:
                return True
            stack.extend((v, left - 1) for v in node)
        elif isinstance(node, float) and not math.isfinite(node):
            return True
    return False


_PLAIN_TYPES = frozenset((str, int, bool, type(None)))


def _flat_and_plain(value: dict[Any, Any]) -> bool:
    """True for a dict of text keys whose values are strings, ints, bools or None, none of
    them holding NUL or a lone surrogate: nothing to clean. Its text is joined and looked at
    once, so the usual message payload costs a few C calls, not one Python call per field."""
    values = value.values()
    if not _PLAIN_TYPES.issuperset(map(type, values)):
        return False
    try:
        text = "".join(value)  # the keys: a key that is not text raises
    except TypeError:
        return False
    return storable(text + "".join([v for v in values if v.__class__ is str]))
