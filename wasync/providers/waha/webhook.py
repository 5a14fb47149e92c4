"""WAHA webhooks: who sent a body (detection, session, HMAC signature) and the events in it.

Facts and section numbers cited below come from `waha.md` (the shared provider notes); issue
numbers are `devlikeapro/waha#n`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from wasync import phones
from wasync.errors import PayloadError
from wasync.events import (
    Ack,
    AckLevel,
    Address,
    ChatKind,
    Edit,
    Event,
    PollVote,
    Revoke,
    SessionStatus,
)
from wasync.providers.parsing import (
    JsonMap,
    as_list,
    as_map,
    as_str,
    compact,
    dig,
    first_str,
    maybe_timestamp,
    name_in_raw,
)
from wasync.providers.waha.ids import MessageKey, ack_of, first_jid, message_key
from wasync.providers.waha.parse import (
    chat_of,
    engine_of,
    from_me_of,
    message_time,
    parse_with_engine,
)


def detect(body: Any) -> bool:
    """A WAHA envelope `{event, session, payload, ...}` (waha.md 4): `payload` and not `data`
    (Evolution's key), with `event` or `session` (captures are sometimes trimmed)."""
    if not isinstance(body, Mapping) or "payload" not in body or "data" in body:
        return False
    return "event" in body or "session" in body


def session_name(body: Mapping[str, Any]) -> str | None:
    """The envelope's `session`, else the name inside `payload` (a `session.status` body)."""
    name = first_str(body.get("session"), dig(body, "payload", "name"))
    return name.strip() if name else None


def session_in_raw(raw: bytes) -> str | None:
    """The envelope `session` of a body that does not parse (cut short, bad JSON)."""
    return name_in_raw(raw, "session")


def verify(secret: str, headers: Mapping[str, str], raw_body: bytes) -> bool:
    """`X-Webhook-Hmac` = hex HMAC-SHA512 of the raw body (waha.md section 5), compared in
    constant time; `headers` is case-insensitive (Starlette's) or keyed in lower case."""
    algorithm = headers.get("x-webhook-hmac-algorithm", "sha512").lower()
    given = headers.get("x-webhook-hmac", "")
    if algorithm != "sha512" or not given:
        return False
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha512).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


@dataclass(frozen=True, slots=True, kw_only=True)
class _Envelope:
    """What a webhook handler needs from the envelope around `payload`."""

    session_id: int
    engine: str | None
    time: datetime | None
    me: Any = None


def _on_message(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`message`, `message.any`, `message.reaction`: one Message or Reaction."""
    return [parse_with_engine(payload, env.session_id, env.engine, env.time)]


def _on_ack(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`message.ack` / `message.ack.group`: group ids end in `_<participant>`, the bare id is
    still the 3rd segment. `ack: null` + `UNKNOWN` is GOWS's ERROR for our own message
    (waha.md 3-4: "GOWS maps ERROR → null"); anywhere else it carries no level: no event."""
    key = message_key(payload.get("id"))
    if key is None:
        raise PayloadError("WAHA ack without an id")
    # The id's own `true_`/`false_` first: WEBJS flips `fromMe` in group receipts (it reports
    # the receipt's direction, not the message's: TagReceiptToMessageAck).
    from_me = key.from_me if key.from_me is not None else from_me_of(payload, key)
    engine = engine_of(payload, env.engine)
    ack = ack_of(payload)
    if ack is None and from_me and engine == "GOWS" and _gows_error(payload):
        ack = AckLevel.ERROR  # the pipeline lets ERROR replace only "no ack yet" or PENDING
    if ack is None:
        return []
    chat = chat_of(payload, key, from_me, engine)
    if _one_members(payload, chat) and ack in (AckLevel.READ, AckLevel.PLAYED):
        ack = AckLevel.DEVICE
    return [
        Ack(
            session_id=env.session_id,
            provider_message_id=key.bare,
            ack=ack,
            chat=chat,
            from_me=from_me,
            timestamp=env.time,
        )
    ]


def _one_members(payload: JsonMap, chat: Address | None) -> bool:
    """A group receipt names the member it is from (`participant`: NOWEB `receipt.userJid`,
    GOWS and WEBJS one ack per receipt): one member reading is not the group reading, so it
    says no more than that the message reached a device. (WAHA's own Chatwoot app ignores
    group reads too: `ShouldMarkAsReadInChatWoot`.)"""
    grouped = chat is not None and chat.kind is not ChatKind.DIRECT
    return grouped and first_jid(payload.get("participant")) is not None


def _gows_error(payload: JsonMap) -> bool:
    """GOWS's failed-send ack: `ack` present and null, `ackName` UNKNOWN (or absent)."""
    return (
        "ack" in payload and payload["ack"] is None and payload.get("ackName") in (None, "UNKNOWN")
    )


def revoked_target(payload: JsonMap) -> MessageKey | None:
    """The deleted message of a `message.revoked` payload, in every shape WAHA sent.

    `revokedMessageId` exists since 2025.6.3 (commit 6dcdd15b "message.revoked - add
    revokedMessageId"); before it, the target is in the revoke action `after`: NOWEB
    `_data.message.protocolMessage.key.id`, GOWS `_data.Message.protocolMessage.key.ID`, WEBJS
    `_data.protocolMessageKey.id` (2026.2.1 reads it from there); or `before`, the message as
    it was (often null). whatsapp-web.js emits `message_revoke_everyone(after, before)` with
    `after` the revoked message itself, type `revoked` and its original id.
    """
    after, before = as_map(payload.get("after")), as_map(payload.get("before"))
    data = as_map(after.get("_data"))
    found = (
        message_key(payload.get("revokedMessageId"))
        or message_key(dig(data, "message", "protocolMessage", "key", "id"))
        or message_key(dig(data, "Message", "protocolMessage", "key", "ID"))
        or message_key(dig(data, "protocolMessageKey", "id"))
        or message_key(before.get("id"))
    )
    if found is None and str(data.get("type") or "").lower() == "revoked":
        found = message_key(after.get("id"))
    return found


def _on_revoked(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`message.revoked`: `{after, before, revokedMessageId}`; `revokedMessageId` is the bare id
    of the deleted message and `after` the revoke action in the same chat (waha.md 4); older
    shapes in `revoked_target`."""
    after, before = as_map(payload.get("after")), as_map(payload.get("before"))
    target = revoked_target(payload)
    if target is None:
        raise PayloadError("WAHA message.revoked without revokedMessageId")
    source = after or before
    source_key = message_key(source.get("id"))
    engine = engine_of(source, env.engine)
    chat = chat_of(source, source_key, from_me_of(source, source_key), engine)
    # WEBJS' `after` is the revoked message itself (whatsapp-web.js `message_revoke_everyone`
    # hands it "in its current state"), dated when it was sent: as for an edit, the revoke's
    # time is the envelope's. NOWEB and GOWS give the revoke action's own.
    at = env.time if engine == "WEBJS" else message_time(after) or env.time
    return [
        Revoke(session_id=env.session_id, provider_message_id=target.bare, chat=chat, timestamp=at)
    ]


def _on_edited(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`message.edited`: WAMessage of the edit action + `editedMessageId` (bare) + new `body`."""
    target = message_key(payload.get("editedMessageId")) or message_key(
        dig(payload, "_data", "message", "protocolMessage", "key", "id")
    )
    if target is None:
        raise PayloadError("WAHA message.edited without editedMessageId")
    key = message_key(payload.get("id"))
    engine = engine_of(payload, env.engine)
    chat = chat_of(payload, key, from_me_of(payload, key), engine)
    body = payload.get("body")
    # WEBJS builds the payload from the edited message itself (`toWAMessage(event.message)`,
    # `_data: {message, newBody, prevBody}`): its time is the original's, so the edit's is the
    # envelope's. NOWEB and GOWS give the edit action's own.
    # (An envelope without a time, WAHA 2024: None, and ingest takes its own clock.)
    webjs = engine == "WEBJS" or "newBody" in as_map(payload.get("_data"))
    at = env.time if webjs else message_time(payload) or env.time
    return [
        Edit(
            session_id=env.session_id,
            provider_message_id=target.bare,
            body=body if isinstance(body, str) else None,
            chat=chat,
            timestamp=at,
        )
    ]


def _on_status(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`session.status`: `{name, status, statuses?}` (waha.md 2 lists the statuses)."""
    status = as_str(payload.get("status"))
    if status is None:
        raise PayloadError("WAHA session.status without status")
    detail = compact(
        name=payload.get("name"),
        statuses=payload.get("statuses"),
        data=payload.get("data"),  # extra info of this status: a pairing code, a time lock
        me=env.me,
        engine=env.engine,
    )
    return [
        SessionStatus(
            session_id=env.session_id, status=status.strip(), timestamp=env.time, detail=detail
        )
    ]


def _on_poll_vote(payload: JsonMap, env: _Envelope) -> list[Event]:
    """`poll.vote`: `{vote: {id, from, fromMe, selectedOptions, timestamp}, poll: {id, ...}}`
    (waha.md 4; the docs' `poll.vote.json` / `poll.vote.group.json`): the voter's whole
    current choice, an update of the poll (`ingest/polls.py`), never a message of its own.
    `poll.vote.failed` (a vote WAHA could not decrypt) is not handled: it names no option."""
    vote, poll = as_map(payload.get("vote")), as_map(payload.get("poll"))
    key = message_key(poll.get("id"))
    chosen = as_list(vote.get("selectedOptions"))
    if key is None or not all(isinstance(o, str) for o in chosen):
        raise PayloadError("WAHA poll.vote without its poll id or its options")
    voter_address = phones.address(as_str(vote.get("from")))
    if vote.get("fromMe") is True:
        voter = "me"
    elif voter_address is not None:
        voter = voter_address.jid
    else:
        raise PayloadError("WAHA poll.vote without its voter")
    vote_key = message_key(vote.get("id"))
    return [
        PollVote(
            session_id=env.session_id,
            provider_message_id=key.bare,
            voter=voter,
            options=tuple(chosen),
            chat=phones.address(key.chat) if key.chat else None,
            timestamp=maybe_timestamp(vote.get("timestamp")) or env.time,
            vote_id=vote_key.bare if vote_key is not None else None,
        )
    ]


_Handler = Callable[[JsonMap, _Envelope], list[Event]]
_HANDLERS: Mapping[str, _Handler] = MappingProxyType(
    {
        "message": _on_message,
        "message.any": _on_message,
        "message.reaction": _on_message,
        "message.ack": _on_ack,
        "message.ack.group": _on_ack,
        "message.revoked": _on_revoked,
        "message.edited": _on_edited,
        "session.status": _on_status,
        "poll.vote": _on_poll_vote,
    }
)


def parse_webhook(
    body: Mapping[str, Any], *, session_id: int, received_at: datetime | None = None
) -> list[Event]:
    """Events in a WAHA webhook envelope `{event, session, payload, ...}` (waha.md 4).

    Unhandled events give `[]`; a body that is not an envelope, or a handled event without a
    usable payload, raises PayloadError.
    """
    if not isinstance(body, Mapping):
        raise PayloadError("WAHA webhook body is not an object")
    event = as_str(body.get("event"))
    if event is None:
        raise PayloadError("WAHA webhook without an event name")
    handler = _HANDLERS.get(event.strip().lower())
    if handler is None:
        return []
    payload = body.get("payload")
    if not isinstance(payload, Mapping):
        raise PayloadError(f"WAHA {event} webhook without a payload object")
    env = _Envelope(
        session_id=session_id,
        engine=first_str(body.get("engine"), dig(body, "environment", "engine")),
        time=maybe_timestamp(body.get("timestamp")) or received_at,
        me=body.get("me"),
    )
    return handler(payload, env)
