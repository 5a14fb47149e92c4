"""Normalize events before the store: what a column cannot hold never reaches a statement.

Pure, run by `Pipeline.ingest()` on the caller's task before the job is queued:

- keys (provider message ids, jids, phones, LIDs, reply targets) are checked against the
  length of the column that holds them (`wasync.store.models`) and for characters no text
  column stores (NUL, lone surrogates): a bad key is never cut or rewritten (it would become
  another message's key), the event is refused with the reason and quarantined instead;
- free text (body, push name, media fields, emoji, edits, session states) and the JSON kept
  beside it (`extra`, `raw`, status details) lose their NULs and lone surrogates (Postgres
  refuses U+0000 in text; no UTF-8 encoder takes a lone surrogate, on either backend), or,
  with `[database] invalid_text = "quarantine"`, the event is quarantined instead;

Numbers come from `wasync.untrusted.parse_int`, which already refuses what a 64-bit column
cannot hold; one that gets here anyway (a caller building events by hand) is refused by the
store, and the pipeline quarantines it then.

The common message passes with one look at its joined text (`_untouched`) and is not copied.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from wasync.events import (
    Ack,
    Address,
    CursorUpdate,
    Edit,
    Event,
    Media,
    Message,
    Reaction,
    Revoke,
    SessionStatus,
    Unparsed,
)
from wasync.store import models as m
from wasync.untrusted import clean_json, clean_text, json_problem, storable, text_problem

log = logging.getLogger(__name__)

InvalidText = Literal["clean", "quarantine"]
T = TypeVar("T")


def _limit(model: Any, column: str) -> int:
    length = model.__table__.c[column].type.length
    assert isinstance(length, int), f"{model.__name__}.{column} has no length"
    return length


PMID = _limit(m.Message, "provider_message_id")  # also pending_updates' and reply_to
JID = _limit(m.Chat, "jid")  # also messages.sender_jid
PHONE = _limit(m.Chat, "phone")  # also leads, identities, messages.sender_phone
LID = _limit(m.Identity, "lid")  # also chats.lid
SCOPE = _limit(m.Cursor, "scope")


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """An event that cannot be stored as it is, and why (a line a person can act on)."""

    event: Event
    reason: str


class _Refused(Exception):
    """Raised inside the checks: the event is refused with this reason."""


def normalize(
    events: Iterable[Event], *, invalid_text: InvalidText = "clean"
) -> tuple[list[Event], list[Refusal]]:
    """The events that can be stored (cleaned where needed), and the refused ones."""
    good: list[Event] = []
    refused: list[Refusal] = []
    for ev in events:
        try:
            good.append(_event(ev, invalid_text))
        except _Refused as exc:
            refused.append(Refusal(event=ev, reason=str(exc)))
    return good, refused


def usable_cursors(cursors: Iterable[CursorUpdate]) -> list[CursorUpdate]:
    """The cursor updates a `cursors` row can hold: a scope (a chat id from a provider's
    chat list) that is too long or not storable text is dropped, logged; that chat is then
    read again from the session cursor, which costs a request, not the session."""
    out = []
    for cur in cursors:
        try:
            _key("cursor scope", cur.scope, SCOPE)
        except _Refused as exc:
            log.warning("session %s: cursor not kept: %s", cur.session_id, exc)
            continue
        if math.isfinite(cur.ts):
            out.append(cur)
    return out


def _event(ev: Event, mode: InvalidText) -> Event:
    if isinstance(ev, Message):
        return _message(ev, mode)
    if isinstance(ev, Reaction):
        _keys(ev, ev.chat, ev.sender)
        _key("target_message_id", ev.target_message_id, PMID)
        return _replace(ev, emoji=_text("emoji", ev.emoji, mode), raw=_json("raw", ev.raw, mode))
    if isinstance(ev, Ack | Revoke):
        _key("provider_message_id", ev.provider_message_id, PMID)
        return ev
    if isinstance(ev, Edit):
        _key("provider_message_id", ev.provider_message_id, PMID)
        return _replace(ev, body=_text("body", ev.body, mode))
    if isinstance(ev, Unparsed):  # a listed row its parser refused: kept, not stored
        raise _Refused(ev.reason)
    if isinstance(ev, SessionStatus):
        status = _text("status", ev.status, mode)
        return _replace(ev, status=status, detail=_json("detail", ev.detail, mode))
    return ev


def _message(ev: Message, mode: InvalidText) -> Message:
    if _untouched(ev):
        return ev  # the common case: one look at all its text, no copy
    return _checked(ev, mode)


def _untouched(ev: Message) -> bool:
    """True when `_checked` would keep `ev` as it is: no media, every key within its column,
    and its keys, texts and JSON free of NUL and lone surrogates. The text is looked at once,
    joined (a bad character cannot hide in a join, nor can two good strings make one). False
    sends the event through `_checked`, which finds what, and says why."""
    chat, sender, reply_to = ev.chat, ev.sender, ev.reply_to
    if (
        ev.media is not None
        or len(ev.provider_message_id) > PMID
        or not _fits(chat)
        or (sender is not None and not _fits(sender))
        or (reply_to is not None and len(reply_to) > PMID)
    ):
        return False
    parts = [ev.provider_message_id, chat.jid, chat.phone, chat.lid, reply_to, ev.body]
    parts.append(ev.push_name)
    if sender is not None:
        parts += (sender.jid, sender.phone, sender.lid)
    try:
        text = "".join([p for p in parts if p is not None])
    except TypeError:  # a value that is not text: `_checked` decides
        return False
    if not storable(text):
        return False
    extra, raw = ev.extra, ev.raw
    return (not extra or not json_problem(extra)) and (not raw or not json_problem(raw))


def _fits(addr: Address) -> bool:
    return (
        len(addr.jid) <= JID
        and (addr.phone is None or len(addr.phone) <= PHONE)
        and (addr.lid is None or len(addr.lid) <= LID)
    )


def _checked(ev: Message, mode: InvalidText) -> Message:
    """`ev` checked field by field: refused with the reason, cleaned, or itself."""
    _keys(ev, ev.chat, ev.sender)
    if ev.reply_to is not None:
        _key("reply_to", ev.reply_to, PMID)
    body = _text("body", ev.body, mode)
    push_name = _text("push_name", ev.push_name, mode)
    media = _media(ev.media, mode)
    extra = _json("extra", ev.extra, mode)
    raw = _json("raw", ev.raw, mode)
    if (
        body is ev.body
        and push_name is ev.push_name
        and media is ev.media
        and extra is ev.extra
        and raw is ev.raw
    ):
        return ev  # the common case: nothing to clean, no copy
    return dataclasses.replace(
        ev, body=body, push_name=push_name, media=media, extra=extra, raw=raw
    )


def _keys(ev: Message | Reaction, chat: Address, sender: Address | None) -> None:
    _key("provider_message_id", ev.provider_message_id, PMID)
    _address("chat", chat)
    if sender is not None:
        _address("sender", sender)


def _address(name: str, addr: Address) -> None:
    _key(f"{name}.jid", addr.jid, JID)
    if addr.phone is not None:
        _key(f"{name}.phone", addr.phone, PHONE)
    if addr.lid is not None:
        _key(f"{name}.lid", addr.lid, LID)


def _key(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise _Refused(f"{name} is {len(value)} characters long (the column holds {limit})")
    if not storable(value):
        raise _Refused(f"{name} {text_problem(value)}")


def _text(name: str, value: Any, mode: InvalidText) -> Any:
    if not isinstance(value, str) or storable(value):
        return value
    if mode == "quarantine":
        raise _Refused(f"{name} {text_problem(value)}")
    return clean_text(value)


def _json(name: str, value: Any, mode: InvalidText) -> Any:
    if not value or not json_problem(value):
        return value
    if mode == "quarantine":
        raise _Refused(f"{name} holds text that cannot be stored (NUL or a lone surrogate)")
    return clean_json(value)


def _media(media: Media | None, mode: InvalidText) -> Media | None:
    if media is None:
        return None
    return _replace(
        media,
        mimetype=_text("media.mimetype", media.mimetype, mode),
        filename=_text("media.filename", media.filename, mode),
        url=_text("media.url", media.url, mode),
    )


def _replace(obj: T, **values: Any) -> T:
    """`obj` itself when nothing changed (the common case: no copy), else a copy."""
    changed = {k: v for k, v in values.items() if v is not getattr(obj, k)}
    return dataclasses.replace(obj, **changed) if changed else obj  # type: ignore[type-var]
