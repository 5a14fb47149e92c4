"""Evolution webhooks: who sent a body (detection, instance, JWT or static token) and the events
in it.

Facts and section numbers cited below come from `evolution.md` (the shared provider notes);
issue numbers are `EvolutionAPI/evolution-api#n`.
"""

from __future__ import annotations

import hmac
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from wasync.errors import PayloadError
from wasync.events import Ack, Address, Edit, Event, Revoke, SessionStatus
from wasync.providers.evolution.parse import (
    ack_from,
    chat_of,
    key_id_of,
    parse_message,
    poll_vote_of,
)
from wasync.providers.parsing import (
    JsonMap,
    as_int,
    as_map,
    as_str,
    compact,
    dig,
    first_str,
    maybe_timestamp,
    name_in_raw,
)
from wasync.providers.proto import edited_text

# protocolMessage types (Baileys `ProtocolMessage.Type`).
_REVOKE_TYPES = frozenset({0, "0", "REVOKE"})
_EDIT_TYPES = frozenset({14, "14", "MESSAGE_EDIT"})


def detect(body: Any) -> bool:
    """An Evolution envelope `{event, instance, data, ...}` (evolution.md 4.1): `data` and not
    `payload` (WAHA's key), with `event` or `instance` (captures are sometimes trimmed)."""
    if not isinstance(body, Mapping) or "data" not in body or "payload" in body:
        return False
    return "event" in body or "instance" in body


def session_name(body: Mapping[str, Any]) -> str | None:
    """The envelope's `instance`, else the one inside `data` (a `connection.update` body)."""
    name = first_str(body.get("instance"), dig(body, "data", "instance"))
    return name.strip() if name else None


def session_in_raw(raw: bytes) -> str | None:
    """The envelope `instance` of a body that does not parse (cut short, bad JSON)."""
    return name_in_raw(raw, "instance")


# Evolution mints the JWT (exp = iat + 600 s) once per event and sends the same one with every
# retry, and retries for 20-30 minutes (evolution.md 3.3); a 401 is not retried. Accept tokens
# up to 35 minutes past `exp`, and an `iat` up to as far ahead (the two hosts' clocks differ).
# A replay inside that window is harmless: ingest is idempotent.
EVOLUTION_JWT_LEEWAY_S = 35 * 60


def verify(secret: str, headers: Mapping[str, str], raw_body: bytes) -> bool:
    """Evolution does not sign the body: a HS256 JWT it mints from `headers.jwt_key` (checked
    with `exp`, see `EVOLUTION_JWT_LEEWAY_S`), or a static token in `Authorization: Bearer` /
    `X-Wasync-Token`, compared in constant time. `headers` is case-insensitive (Starlette's)
    or keyed in lower case."""
    auth = headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    static = headers.get("x-wasync-token", "")
    if static and hmac.compare_digest(static.encode(), secret.encode()):
        return True
    if not token:
        return False
    if hmac.compare_digest(token.encode(), secret.encode()):
        return True
    try:
        with warnings.catch_warnings():  # a short jwt_key is the operator's choice, warned at start
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                options={"require": ["exp"]},
                leeway=EVOLUTION_JWT_LEEWAY_S,
            )
    except jwt.PyJWTError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class _Envelope:
    """What a webhook handler needs from the envelope around `data`."""

    session_id: int
    time: datetime | None


def _items(data: Any, event: str) -> list[JsonMap]:
    """`data` as a list of objects: one object, or a list of them (tolerated)."""
    if isinstance(data, Mapping):
        return [data]
    if isinstance(data, list) and all(isinstance(item, Mapping) for item in data):
        return data
    raise PayloadError(f"Evolution {event} data is not an object")


def _on_upsert(data: Any, env: _Envelope) -> list[Event]:
    """`messages.upsert`: `data` is one prepared message (evolution.md 4.2); a decrypted poll
    vote is an update of its poll, not a message."""
    events: list[Event] = []
    for item in _items(data, "messages.upsert"):
        vote = poll_vote_of(item, session_id=env.session_id, received_at=env.time)
        events.append(vote or parse_message(item, session_id=env.session_id, received_at=env.time))
    return events


def _on_send(data: Any, env: _Envelope) -> list[Event]:
    """`send.message`: our own API send, always `fromMe` (evolution.md 4.5)."""
    return [
        replace(parse_message(item, session_id=env.session_id, received_at=env.time), from_me=True)
        for item in _items(data, "send.message")
    ]


def _on_update(data: Any, env: _Envelope) -> list[Event]:
    """`messages.update`: an Ack by `keyId` + `status` (evolution.md 4.3). `DELETED` or a
    missing status is not a revoke (2.3.0-2.3.4 send `DELETED` for an edit, #2010, #1380; a
    delete comes as `messages.delete`); 2.3.7 may carry the edited text in `message`."""
    events: list[Event] = []
    for item in _items(data, "messages.update"):
        key_id = first_str(item.get("keyId"), dig(item, "key", "id"))
        if key_id is None:
            raise PayloadError("Evolution messages.update without keyId")
        chat = chat_of(item) or chat_of(as_map(item.get("key")))
        ack = ack_from(item.get("status"))
        if ack is not None:
            from_me = item.get("fromMe")
            events.append(
                Ack(
                    session_id=env.session_id,
                    provider_message_id=key_id,
                    ack=ack,
                    chat=chat,
                    from_me=from_me if isinstance(from_me, bool) else None,
                    timestamp=env.time,
                )
            )
        text = edited_text(item.get("message")) if item.get("message") else None
        if text is not None:
            events.append(_edit(env, key_id, text, chat, env.time))
    return events


def _edit(
    env: _Envelope, key_id: str, text: str | None, chat: Address | None, time: datetime | None
) -> Edit:
    """An Edit of message `key_id` with its new text."""
    return Edit(
        session_id=env.session_id, provider_message_id=key_id, body=text, chat=chat, timestamp=time
    )


def _on_delete(data: Any, env: _Envelope) -> list[Event]:
    """`messages.delete`, two shapes (evolution.md 4.4): the raw key `{remoteJid, fromMe, id}`
    with the WA id, or an API delete `{id: <db cuid>, key: {id: <WA id>, ...}}`."""
    events: list[Event] = []
    for item in _items(data, "messages.delete"):
        key = as_map(item.get("key")) or item
        key_id = key_id_of(key)
        if key_id is None:
            raise PayloadError("Evolution messages.delete without a message id")
        events.append(
            Revoke(
                session_id=env.session_id,
                provider_message_id=key_id,
                chat=chat_of(key),
                timestamp=env.time,
            )
        )
    return events


def _protocol_message(data: JsonMap) -> JsonMap:
    """The protocolMessage `{key, type, editedMessage, timestampMs}`; also found nested in a
    full message (`message.protocolMessage`) for tolerance."""
    if "editedMessage" in data or "type" in data:
        return data
    nested = dig(data, "message", "protocolMessage") or data.get("protocolMessage")
    return as_map(nested) or data


def _on_edited(data: Any, env: _Envelope) -> list[Event]:
    """`messages.edited`: protocolMessage (evolution.md 4.2); type 0/REVOKE is a delete for
    everyone, an `editedMessage` an edit of `key.id`."""
    if not isinstance(data, Mapping):
        raise PayloadError("Evolution messages.edited data is not an object")
    proto = _protocol_message(data)
    key = as_map(proto.get("key"))
    key_id = key_id_of(key)
    kind = proto.get("type")
    is_change = kind in _REVOKE_TYPES or kind in _EDIT_TYPES or bool(proto.get("editedMessage"))
    if key_id is None:
        if not is_change:
            # Every protocolMessage goes out as messages.edited: ephemeral settings, history
            # sync and key shares carry no key and change no message.
            return []
        raise PayloadError("Evolution messages.edited without key.id")
    time = maybe_timestamp(proto.get("timestampMs")) or env.time
    if kind in _REVOKE_TYPES:
        return [
            Revoke(
                session_id=env.session_id,
                provider_message_id=key_id,
                chat=chat_of(key),
                timestamp=time,
            )
        ]
    if proto.get("editedMessage") or kind in _EDIT_TYPES:
        return [_edit(env, key_id, edited_text(proto), chat_of(key), time)]
    return []


def _on_connection(data: Any, env: _Envelope) -> list[Event]:
    """`connection.update`: `{instance, state, statusReason, wuid?, profileName?}` (4.6)."""
    data = as_map(data)
    state = as_str(data.get("state"))
    if state is None:
        raise PayloadError("Evolution connection.update without state")
    detail = compact(
        statusReason=as_int(data.get("statusReason")),
        instance=first_str(data.get("instance")),
        wuid=first_str(data.get("wuid")),
        profileName=first_str(data.get("profileName")),
    )
    return [
        SessionStatus(
            session_id=env.session_id, status=state.strip(), timestamp=env.time, detail=detail
        )
    ]


_Handler = Callable[[Any, _Envelope], list[Event]]
_HANDLERS: Mapping[str, _Handler] = MappingProxyType(
    {
        "messages.upsert": _on_upsert,
        "send.message": _on_send,
        "messages.update": _on_update,
        "messages.delete": _on_delete,
        "messages.edited": _on_edited,
        # An edit made through Evolution's own API (`updateMessage`): the same protocolMessage
        # as messages.edited (whatsapp.baileys.service.ts, Events.SEND_MESSAGE_UPDATE).
        "send.message.update": _on_edited,
        "connection.update": _on_connection,
    }
)


def event_name(value: str) -> str:
    """The dotted lower-case event name from any form: `messages.upsert`, `MESSAGES_UPSERT`
    (subscription enum) or `messages-upsert` (byEvents URL suffix, evolution.md 3.1)."""
    return value.strip().lower().replace("_", ".").replace("-", ".")


def parse_webhook(
    body: Mapping[str, Any], *, session_id: int, received_at: datetime | None = None
) -> list[Event]:
    """Events in an Evolution envelope `{event, instance, data, ...}` (evolution.md 4.1).

    Unhandled events give `[]`; a body that is not an envelope, or a handled event whose `data`
    is unusable, raises PayloadError.
    """
    if not isinstance(body, Mapping):
        raise PayloadError("Evolution webhook body is not an object")
    event = as_str(body.get("event"))
    if event is None:
        raise PayloadError("Evolution webhook without an event name")
    handler = _HANDLERS.get(event_name(event))
    if handler is None:
        return []
    data = body.get("data")
    if data is None:
        raise PayloadError(f"Evolution {event} webhook without data")
    # Kafka envelopes add `timestamp` (epoch ms); `date_time` is local time, ignored (4.1).
    env = _Envelope(
        session_id=session_id, time=maybe_timestamp(body.get("timestamp")) or received_at
    )
    return handler(data, env)
