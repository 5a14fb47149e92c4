"""The one way untrusted values are read: JSON, numbers and text, and the parsers and
normalizer built on them. Pure functions, no I/O."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import msg
from wasync.errors import PayloadError
from wasync.events import Address, CursorUpdate, Message, Reaction
from wasync.ingest import normalize as normalize_module
from wasync.ingest.normalize import normalize, usable_cursors
from wasync.providers import evolution, waha
from wasync.providers.http import MAX_RETRY_AFTER_S, retry_after
from wasync.providers.parsing import as_int, as_number, maybe_timestamp, parse_timestamp
from wasync.untrusted import (
    clean_json,
    clean_text,
    json_problem,
    loads,
    parse_int,
    parse_number,
    storable,
    text_problem,
)

HOSTILE_NUMBERS = ["²", "٣", "1" * 5000, "1e999", "-1e999", "nan", "inf", " ", "", "0x10", "1_000"]


@pytest.mark.parametrize("value", HOSTILE_NUMBERS)
def test_numbers_nobody_can_represent_are_none(value: str) -> None:
    """`str.isdigit()` accepts "²" and `int()` refuses it; 5,000 digits pass the first and
    fail the second; none of these is a number here, and nothing raises."""
    assert parse_int(value) is None
    assert parse_number(value) is None
    assert as_int(value) is None


def test_numbers_that_are_numbers() -> None:
    """Digit strings, signs, blanks around, integral floats; ints past 64 bits are not ints."""
    assert parse_int(" 42 ") == 42 and parse_int("-7") == -7 and parse_int(3.0) == 3
    assert parse_int(2**63) is None and parse_int(2**63 - 1) == 2**63 - 1
    assert parse_int(True) is None and parse_int(1.5) is None and parse_int(float("inf")) is None
    assert parse_number("1.5") == 1.5 and parse_number("1e3") == 1000.0
    assert parse_number("99999999999999999999") == 99999999999999999999  # exact
    assert as_int({"low": 5, "high": 1, "unsigned": False}) == 2**32 + 5
    assert as_number({"low": 2**40, "high": 0}) is None  # not a 32-bit half: not a Long


@pytest.mark.parametrize(
    "value", [10**400, -(10**400), "9" * 39, 1e300, {"low": 0, "high": 2**31 - 1}]
)
def test_huge_timestamps_are_payload_errors(value: object) -> None:
    """A timestamp no datetime holds, in any unit, is a PayloadError (it was an OverflowError
    from the unit division outside the `try`)."""
    with pytest.raises(PayloadError):
        parse_timestamp(value)
    assert maybe_timestamp(value) is None


def test_timestamps_still_parse() -> None:
    """Seconds, milliseconds, numeric strings and ISO as before."""
    t = datetime(2026, 11, 1, 12, tzinfo=UTC)
    for value in (t.timestamp(), int(t.timestamp() * 1000), str(int(t.timestamp())), t.isoformat()):
        assert parse_timestamp(value) == t


@pytest.mark.parametrize("value", ["²", "1" * 5000, "٣", " -² "])
def test_acks_of_hostile_digits_are_no_ack(value: str) -> None:
    """Ack fields of both providers: a digit-looking string that is not a number is no ack."""
    assert waha.ack_from(value) is None
    assert evolution.ack_from(value) is None


def test_acks_still_parse() -> None:
    """Numbers as ints or strings, and names."""
    assert waha.ack_from("3") == waha.ack_from(3) == waha.ack_from("READ") == 3
    assert evolution.ack_from("3") == evolution.ack_from(3) == evolution.ack_from("DELIVERY_ACK")


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_deep_json_is_a_value_error(depth: int) -> None:
    """Deep enough for `RecursionError`, or merely deeper than anything real: ValueError."""
    with pytest.raises(ValueError, match="nested"):
        loads("[" * depth + "]" * depth)
    with pytest.raises(ValueError, match="nested"):
        loads('{"a":' * depth + "1" + "}" * depth)


def test_json_of_usual_depth_parses() -> None:
    """64 levels are fine; so is every kind of bad JSON a ValueError."""
    assert loads("[" * 64 + "]" * 64) is not None
    for bad in (b"\xff\xfe", b"{", b"[1,]", b"1" * 5000):
        with pytest.raises(ValueError):
            loads(bad)


def test_text_checks_and_cleaning() -> None:
    """NUL and lone surrogates are named and removed; everything else is kept."""
    assert text_problem("olá 😀 \u200b") is None
    assert text_problem("a\x00") == "contains NUL (U+0000)"
    assert text_problem("a\udc80") == "contains a lone surrogate U+DC80"
    assert clean_text("a\x00b\ud800c😀") == "abc😀"
    assert clean_json({"k\x00": ["v\ud800", 1, float("nan")]}) == {"k": ["v", 1, None]}


def test_normalize_refuses_bad_keys_and_cleans_text() -> None:
    """Keys too long for their column or holding NUL are refused with the reason; NUL in
    the body is removed ("clean") or refused ("quarantine"); good events are not copied."""
    good = msg(1, "OK", "5531988887777@s.whatsapp.net")
    long_id = msg(1, "X" * 129, "5531988887777@s.whatsapp.net")
    nul_body = msg(1, "N", "5531988887777@s.whatsapp.net", body="a\x00b")
    bad_jid = Reaction(
        session_id=1,
        provider_message_id="R",
        target_message_id="OK",
        emoji="👍",
        chat=Address(jid="x\x00@s.whatsapp.net"),
        from_me=False,
        timestamp=good.timestamp,
    )
    kept, refused = normalize([good, long_id, nul_body, bad_jid])
    assert kept[0] is good and len(kept) == 2 and kept[1].body == "ab"  # type: ignore[union-attr]
    assert [r.reason for r in refused] == [
        "provider_message_id is 129 characters long (the column holds 128)",
        "chat.jid contains NUL (U+0000)",
    ]
    kept, refused = normalize([nul_body], invalid_text="quarantine")
    assert not kept and refused[0].reason == "body contains NUL (U+0000)"


def test_cursors_a_row_cannot_hold_are_dropped() -> None:
    """A chat id longer than `cursors.scope` moves no cursor (it would fail its whole job)."""
    ok = CursorUpdate(session_id=1, scope="5531988887777@c.us", ts=1.0)
    long = CursorUpdate(session_id=1, scope="x" * 200, ts=1.0)
    nan = CursorUpdate(session_id=1, ts=float("nan"))
    assert usable_cursors([ok, long, nan]) == [ok]


@pytest.mark.parametrize("value", ["1e999", "nan", "9" * 30, "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_retry_after_is_finite_and_at_most_a_day(value: str) -> None:
    """A provider's Retry-After can be junk; the wait is bounded (it fed a date: overflow)."""
    resp = httpx.Response(429, headers={"retry-after": value})
    wait = retry_after(resp)
    assert 0 <= wait <= MAX_RETRY_AFTER_S


def test_json_problem_reads_a_flat_portuguese_payload_as_clean() -> None:
    """The flat-object fast path takes non-ASCII text (the usual message) and still finds a
    NUL or a lone surrogate in it, in a value or a key, flat or nested."""
    assert not json_problem({"body": "olá, tudo bem? ção", "ack": 1, "fromMe": False})
    assert json_problem({"body": "olá\x00"})
    assert json_problem({"body": "olá\ud800"})
    assert json_problem({"olá\ud800": 1})
    assert json_problem({"_data": {"body": "ção\ud800"}})
    assert not json_problem({"_data": {"body": "ção"}, "list": ["é", 1]})


# Clean text with Portuguese and emoji; a key may also be exactly as long as its column.
_TEXT = st.text(alphabet="a1@ção😀 ", max_size=8)
_KEY_LIMITS = {
    "pmid": normalize_module.PMID,
    "reply_to": normalize_module.PMID,
    "chat.jid": normalize_module.JID,
    "chat.phone": normalize_module.PHONE,
    "chat.lid": normalize_module.LID,
    "sender.jid": normalize_module.JID,
    "sender.phone": normalize_module.PHONE,
    "sender.lid": normalize_module.LID,
}
_FIELDS = [*_KEY_LIMITS, "body", "push_name", "extra", "raw", "raw.nested", "raw.key"]
_POISONS = ["\x00", "\ud800", "\udfff", "too long", float("nan")]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def _messages(draw: st.DrawFn) -> Message:
    """A clean message, with at most one field poisoned: NUL, a lone surrogate, one
    character more than its column holds, or NaN in its JSON."""
    fields: dict[str, Any] = {}
    for name, limit in _KEY_LIMITS.items():
        optional = name not in ("pmid", "chat.jid", "sender.jid")
        choice = st.none() if optional else st.nothing()
        fields[name] = draw(choice | _TEXT | st.just("9" * limit))
    for name in ("body", "push_name"):
        fields[name] = draw(st.none() | _TEXT)
    fields["extra"] = draw(st.dictionaries(_TEXT, _JSON, max_size=3))
    fields["raw"] = draw(st.none() | st.dictionaries(_TEXT, _JSON, max_size=4))
    target, poison = draw(st.sampled_from([None, *_FIELDS])), draw(st.sampled_from(_POISONS))
    if target in _KEY_LIMITS and poison == "too long":
        fields[target] = "9" * (_KEY_LIMITS[target] + 1)
    elif target in _KEY_LIMITS or target in ("body", "push_name"):
        if isinstance(poison, str) and poison != "too long":
            fields[target] = (fields[target] or "") + poison
    elif target is not None:
        bad = poison if poison != "too long" else "x" * 10_000  # free text: no limit
        json_field = "extra" if target == "extra" else "raw"
        doc = dict(fields[json_field] or {})
        if target == "raw.key" and isinstance(bad, str):
            doc[f"k{bad}"] = 1
        elif target == "raw.nested":
            doc["_data"] = {"list": [1, bad]}
        else:
            doc["v"] = bad
        fields[json_field] = doc
    sender = (
        Address(jid=fields["sender.jid"], phone=fields["sender.phone"], lid=fields["sender.lid"])
        if draw(st.booleans())
        else None
    )
    return replace(
        msg(1, "x", "5531988887777@s.whatsapp.net"),
        provider_message_id=fields["pmid"],
        chat=Address(jid=fields["chat.jid"], phone=fields["chat.phone"], lid=fields["chat.lid"]),
        sender=sender,
        reply_to=fields["reply_to"],
        body=fields["body"],
        push_name=fields["push_name"],
        extra=fields["extra"],
        raw=fields["raw"],
    )


@settings(max_examples=2000)
@given(ev=_messages(), mode=st.sampled_from(["clean", "quarantine"]))
def test_the_one_look_fast_path_agrees_with_the_field_by_field_check(
    ev: Message, mode: Literal["clean", "quarantine"]
) -> None:
    """A message the joined-text look (`_untouched`) lets through is one the field-by-field
    check keeps as it is; every other message gets exactly what that check gives it."""
    try:
        expected: Message | str = normalize_module._checked(ev, mode)
    except normalize_module._Refused as exc:
        expected = str(exc)
    if normalize_module._untouched(ev):
        assert expected is ev
    kept, refused = normalize([ev], invalid_text=mode)
    got = kept[0] if kept else refused[0].reason
    assert got == expected
    assert (got is ev) == (expected is ev)


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from("aç😀\x00\ud800\udbff\udc00\udfff\ud7ff\ue000")))
def test_storable_is_exactly_no_nul_and_no_lone_surrogate(text: str) -> None:
    """The encoder-based check says what the regex of the two bad characters says."""
    assert storable(text) == (re.search("[\x00\ud800-\udfff]", text) is None)


def _needs_cleaning(value: Any, depth: int) -> bool:
    """`json_problem`'s meaning, spelled out the slow way (the oracle)."""
    if isinstance(value, str):
        return re.search("[\x00\ud800-\udfff]", value) is not None
    if isinstance(value, dict | list) and depth <= 0:
        return True
    if isinstance(value, dict):
        return any(
            _needs_cleaning(str(k), depth) or _needs_cleaning(v, depth - 1)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_needs_cleaning(v, depth - 1) for v in value)
    return isinstance(value, float) and not math.isfinite(value)


_EDGY_TEXT = st.text(alphabet=st.sampled_from("aç😀\x00\ud800"), max_size=4)
_EDGY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _EDGY_TEXT,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(_EDGY_TEXT | st.integers(), inner, max_size=4)
    ),
    max_leaves=8,
)


@settings(max_examples=1000)
@given(doc=_EDGY_JSON, depth=st.integers(1, 4))
def test_json_problem_means_what_it_says_flat_or_nested(doc: Any, depth: int) -> None:
    """The flat-object fast path and the walk both answer as the spelled-out oracle does."""
    assert json_problem(doc, depth=depth) == _needs_cleaning(doc, depth)
