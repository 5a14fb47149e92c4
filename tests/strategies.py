"""Hypothesis strategies for hostile input: provider webhook bodies mutated from the real
samples (`tests/samples/`, the same files as the shared provider notes), hostile JSON values,
garbage bytes, and REST / WebSocket parameters.

Used by `tests/test_fuzz.py` (a bounded number of examples in every `./scripts/test`) and by
`scripts/fuzz_webhooks.py` (long runs against a real daemon).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SAMPLES = Path(__file__).parent / "samples"


def load_bodies(provider: str) -> list[dict[str, Any]]:
    """Every sample of `provider` that is a webhook envelope (WAHA `payload`, Evolution `data`)."""
    key = "payload" if provider == "waha" else "data"
    out = []
    for path in sorted((SAMPLES / provider).glob("*.json")):
        body = json.loads(path.read_text())
        if isinstance(body, dict) and key in body and "event" in body:
            out.append(body)
    return out


WAHA_BODIES = load_bodies("waha")
EVOLUTION_BODIES = load_bodies("evolution")

# What hostile senders and broken providers put where a value should be.
HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "bom dia\x00",
    "\ud800",
    "a\udfffb",
    "²",
    "٣",
    "1" * 5000,
    "9" * 40,
    "-1",
    "1e999",
    "NaN",
    "Infinity",
    "x" * 300,
    "🙂" * 200,
    "@c.us",
    "@lid",
    "false_@c.us_",
    "true_5511988887777@c.us_3EB0ABC_5511977776666@c.us",
    "5511988887777@s.whatsapp.net",
    "0" * 25 + "@c.us",
    "2026-13-45T99:99:99",
    "9999-12-31T23:59:59-14:00",
]
HOSTILE_NUMBERS = [10**400, -(10**400), 2**63, 2**64, -(2**63) - 1, 1e308, -1e308, -0.0, 10**20]


def nested(depth: int, leaf: Any = 1) -> Any:
    """A list nested `depth` deep."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def hostile_values() -> st.SearchStrategy[Any]:
    """A value for any place in a JSON body: hostile text and numbers, other types, deep
    nesting, and plain random JSON."""
    scalars = st.one_of(
        st.sampled_from(HOSTILE_TEXT),
        st.sampled_from(HOSTILE_NUMBERS),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.text(max_size=40),
    )
    json_values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    )
    return st.one_of(scalars, json_values, st.integers(60, 120).map(nested))


HOSTILE_VALUES = hostile_values()  # built once: a strategy is validated when first drawn
ACTIONS = st.sampled_from(["replace", "replace", "delete", "wrap", "stringify"])


def _slots(value: Any, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) of a JSON value, for picking a place to mutate."""
    if depth > 12:
        return
    if isinstance(value, dict):
        for key in list(value):
            yield value, key
            yield from _slots(value[key], depth + 1)
    elif isinstance(value, list):
        for index in range(len(value)):
            yield value, index
            yield from _slots(value[index], depth + 1)


@st.composite
def mutated(draw: st.DrawFn, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """A real sample body with one to four places replaced, deleted or retyped."""
    body = copy.deepcopy(draw(st.sampled_from(bodies)))
    for _ in range(draw(st.integers(1, 4))):
        slots = list(_slots(body))
        if not slots:
            break
        container, key = slots[draw(st.integers(0, len(slots) - 1))]
        action = draw(ACTIONS)
        if action == "delete" and isinstance(container, dict):
            del container[key]
        elif action == "wrap":
            container[key] = [container[key]]
        elif action == "stringify":
            container[key] = json.dumps(container[key])[:200]
        else:
            container[key] = draw(HOSTILE_VALUES)
    return body


def webhook_bodies() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(provider, mutated webhook body) from either provider's samples."""
    return st.one_of(
        mutated(WAHA_BODIES).map(lambda b: ("waha", b)),
        mutated(EVOLUTION_BODIES).map(lambda b: ("evolution", b)),
    )


def garbage() -> st.SearchStrategy[bytes]:
    """Bytes that are not a webhook: random, cut JSON, deep JSON, JSON of the wrong shape."""
    cut = mutated(WAHA_BODIES + EVOLUTION_BODIES).flatmap(
        lambda b: st.integers(0, len(_dumps(b))).map(lambda n: _dumps(b)[:n])
    )
    shapes = st.one_of(
        st.just(b"[" * 100_000 + b"]" * 100_000),
        st.just(b'{"a":' * 5000 + b"1" + b"}" * 5000),
        st.just(b"1" * 5000),
        HOSTILE_VALUES.map(_dumps),
    )
    return st.one_of(st.binary(max_size=300), cut, shapes)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def dumps(value: Any) -> bytes:
    """A body as a provider would send it (NaN and infinities as JSON's extensions)."""
    return _dumps(value)


def waha_signature(key: str, raw: bytes) -> dict[str, str]:
    """WAHA's HMAC headers for `raw` (waha.md 5)."""
    return {
        "x-webhook-hmac": hmac.new(key.encode(), raw, hashlib.sha512).hexdigest(),
        "x-webhook-hmac-algorithm": "sha512",
    }


def query_values() -> st.SearchStrategy[str]:
    """A REST or WebSocket query / path value: hostile digits, long digit runs, random text."""
    return st.one_of(
        st.sampled_from(HOSTILE_TEXT),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.text(max_size=30),
        st.text(alphabet="0123456789", min_size=1, max_size=5000),
    )
