"""WAHA message ids and acks (pure): the serialized id split into its parts, and ack levels.

Facts and section numbers cited below come from `waha.md` (the shared provider notes); issue
numbers are `devlikeapro/waha#n`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wasync.events import AckLevel
from wasync.providers.parsing import JsonMap, as_str
from wasync.untrusted import parse_int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageKey:
    """A WAHA message id split as `{fromMe}_{chat}_{id}[_{participant}]` (waha.md 3, Id formats).

    `bare` is WhatsApp's own id: the same for a message seen under `@lid` or `@c.us`.
    """

    bare: str
    chat: str | None = None
    from_me: bool | None = None
    participant: str | None = None


def message_key(value: Any) -> MessageKey | None:
    """Split a serialized id, a raw id (GOWS/NOWEB), or a WEBJS id object with `_serialized`."""
    if isinstance(value, Mapping):
        return _key_from_object(value)
    text = as_str(value)
    if text is None:
        return None
    text = text.strip()
    head, _, rest = text.partition("_")
    if head in ("true", "false"):
        chat, _, tail = rest.partition("_")
        bare, _, participant = tail.partition("_")
        if chat and bare:
            return MessageKey(
                bare=bare, chat=chat, from_me=head == "true", participant=participant or None
            )
    return MessageKey(bare=text)


def _key_from_object(value: JsonMap) -> MessageKey | None:
    """WEBJS `{fromMe, remote, id, _serialized}` (whatsapp-web.js MessageId)."""
    serialized = message_key(as_str(value.get("_serialized")))
    if serialized is not None and serialized.chat is not None:
        return serialized
    bare = as_str(value.get("id"))
    if bare is None:
        return serialized
    from_me = value.get("fromMe")
    return MessageKey(
        bare=bare.strip(),
        chat=as_jid(value.get("remote")),
        from_me=from_me if isinstance(from_me, bool) else None,
        participant=as_jid(value.get("participant")),
    )


def as_jid(value: Any) -> str | None:
    """A jid string (`x@server`), also from a WEBJS `{_serialized}` wid object."""
    if isinstance(value, Mapping):
        value = value.get("_serialized")
    text = as_str(value)
    return text.strip() if text and "@" in text else None


def first_jid(*values: Any) -> str | None:
    """The first of `values` that is a jid."""
    for value in values:
        if (jid := as_jid(value)) is not None:
            return jid
    return None


def ack_from(value: Any) -> AckLevel | None:
    """A WAHA ack, an int -1..4 or a name ERROR/PENDING/SERVER/DEVICE/READ/PLAYED.

    None for null, `UNKNOWN` (GOWS sends `ack: null, ackName: "UNKNOWN"`, waha.md 4) and junk.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return AckLevel(value) if AckLevel.ERROR <= value <= AckLevel.PLAYED else None
    if isinstance(value, str):
        number = parse_int(value, lo=AckLevel.ERROR, hi=AckLevel.PLAYED)
        if number is not None:
            return AckLevel(number)
        return AckLevel.__members__.get(value.strip().upper())
    return None


def ack_of(payload: JsonMap) -> AckLevel | None:
    """The ack of a WAMessage or ack body: `ack` when usable, else `ackName`."""
    level = ack_from(payload.get("ack"))
    return level if level is not None else ack_from(payload.get("ackName"))
