"""A stateful Evolution API (v2.3.7, Baileys channel) simulator.

Instances hold Evolution's own `Message` rows (what `findMessages`/`findChats` read), Brazilian
number forms and LID addressing; the app serves the endpoints wasync uses with the quirks of
/work/shared/providers/evolution.md (cited as "evolution.md §n"), and `deliver()` posts the
webhook envelope the way `webhook.controller.ts emit()` does, JWT header included.
"""

from __future__ import annotations

import asyncio
import copy
import math
import re
import secrets
import time
import uuid
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from jwt.warnings import InsecureKeyLengthWarning
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wasync.sim.base import (
    Delivery,
    Json,
    SimError,
    Simulator,
    compact_json,
    post_with_retries,
    read_json,
)
from wasync.sim.content import (
    PROTO_KEYS,
    Content,
    cuid,
    device_of,
    media,
    raw_message_id,
    text,
    wa_proto,
)
from wasync.sim.directory import digits_of
from wasync.sim.faults import Faults

STATES = ("open", "connecting", "close")
STATUS_NAMES = {
    -1: "ERROR", 0: "PENDING", 1: "SERVER_ACK", 2: "DELIVERY_ACK", 3: "READ", 4: "PLAYED",
}  # fmt: skip
EVENTS = (
    "application.startup", "qrcode.updated", "messages.set", "messages.upsert",
    "messages.edited", "messages.update", "messages.delete", "send.message",
    "send.message.update", "contacts.set", "contacts.upsert", "contacts.update",
    "presence.update", "chats.set", "chats.upsert", "chats.update", "chats.delete",
    "groups.upsert", "groups.update", "group-participants.update", "connection.update",
    "labels.edit", "labels.association", "call", "typebot.start", "typebot.change-status",
    "remove.instance", "logout.instance", "instance.create", "instance.delete",
    "status.instance",
)  # fmt: skip
# evolution.md §3.1: the subscribable enum says GROUP_UPDATE, so `groups.update` never goes out.
SUBSCRIBABLE = tuple(
    "GROUP_UPDATE" if e == "groups.update" else e.replace(".", "_").replace("-", "_").upper()
    for e in EVENTS
)
_DOTTED = {e.replace(".", "_").replace("-", "_").upper(): e for e in EVENTS}
_NON_RETRYABLE = frozenset({400, 401, 403, 404, 422})
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_STATUS_CHAIN = ("SERVER_ACK", "DELIVERY_ACK", "READ", "PLAYED")
_MEDIA_TYPES = ("image", "video", "document", "audio")
_FIND_MESSAGE_FIELDS = (
    "id", "key", "pushName", "messageType", "message", "messageTimestamp", "instanceId",
    "source", "contextInfo", "MessageUpdate",
)  # fmt: skip
_LAST_MESSAGE_FIELDS = (
    "id", "key", "pushName", "participant", "messageType", "message", "contextInfo", "source",
    "messageTimestamp", "instanceId", "sessionId", "status",
)  # fmt: skip


def _envelope(status: int, error: str, message: Any) -> Json:
    """evolution.md §1: every error is `{status, error, response: {message}}`."""
    return {"status": status, "error": error, "response": {"message": message}}


def _bad(*messages: Any) -> SimError:
    return SimError(400, _envelope(400, "Bad Request", list(messages)))


def _bad_json(message: str) -> SimError:
    return _bad(message)


def _error_body(status: int) -> Json:
    names = {429: "Too Many Requests", 500: "Internal Server Error"}
    name = names.get(status, "Error")
    return _envelope(status, name, name)


def _not_found(request: Request) -> Json:
    return _envelope(404, "Not Found", [f"Cannot {request.method} {request.url.path}"])


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_jid(number: str) -> str:
    """Evolution's `createJid()` (evolution.md §7.1): digits become `…@s.whatsapp.net`, and a
    13-digit Brazilian mobile with DDD >= 31 loses its ninth digit."""
    if "@" in number:
        user, _, server = number.partition("@")
        return f"{user}@s.whatsapp.net" if server == "c.us" else number
    digits = digits_of(number)
    if len(digits) == 13 and digits[:2] == "55" and int(digits[2:4]) >= 31 and int(digits[5]) >= 7:
        digits = digits[:4] + digits[5:]
    return f"{digits}@s.whatsapp.net"


@dataclass(slots=True, kw_only=True)
class EvoInstance:
    """A simulated Evolution instance: connection, webhook and the rows it stored."""

    name: str
    id: str
    token: str
    state: str
    phone: str
    profile_name: str
    created_at: str
    opened: bool = False
    webhook: Json | None = None
    messages: list[Json] = field(default_factory=list)
    by_key: dict[str, Json] = field(default_factory=dict)
    contacts: dict[str, Json] = field(default_factory=dict)
    chat_names: dict[str, str | None] = field(default_factory=dict)
    push_names: dict[str, str] = field(default_factory=dict)
    lid_pn: dict[str, str | None] = field(default_factory=dict)
    pn_lid: dict[str, str] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def owner_jid(self) -> str:
        """The connected account's own jid (`sender` in webhooks)."""
        return f"{self.phone}@s.whatsapp.net"


class EvolutionSim(Simulator):
    """An Evolution API server with several instances, served by `.app` (a Starlette app).

    `api_key` is the global key (`AUTHENTICATION_API_KEY`); each instance also accepts its own
    token. `http` is the client used by `deliver()`; `tz_offset_s` is the server's local time
    offset that leaks into `date_time` (Docker image: America/Sao_Paulo, -3 h).
    """

    def __init__(
        self,
        *,
        api_key: str = "evolution-sim-key",
        server_url: str = "http://localhost:8080",
        version: str = "2.3.7",
        seed: int = 0,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        tz_offset_s: int = -3 * 3600,
        expose_token: bool = True,
        webhook_max_attempts: int = 10,
        webhook_delay_s: float = 5.0,
        empty_or_matches_nothing: bool = False,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(seed=seed, http=http, clock=clock, faults=faults)
        self.api_key = api_key
        self.server_url = server_url
        self.version = version
        self.tz_offset_s = tz_offset_s
        self.expose_token = expose_token
        self.webhook_max_attempts = webhook_max_attempts
        self.webhook_delay_s = webhook_delay_s
        self.empty_or_matches_nothing = empty_or_matches_nothing
        self.instances: dict[str, EvoInstance] = {}
        # Errors Evolution throws after WhatsApp took the message (its database write, a
        # chatbot hook): each next send is stored, then answered 400 with one of these
        # (evolution.md §6, `sendMessageWithTyping`'s catch-all).
        self.throw_after_send: deque[str] = deque()
        self._build_app(self._routes(), error_body=_error_body, not_found=_not_found)

    # -- world set-up ---------------------------------------------------------------------------

    def add_instance(
        self,
        name: str,
        *,
        state: str = "open",
        token: str | None = None,
        phone: str | None = None,
        profile_name: str = "Evolution Sim",
    ) -> EvoInstance:
        """Create an instance; `state` open|connecting|close."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {STATES}")
        own = phone or f"55319{self.rng.randint(70_000_000, 99_999_999)}"
        instance = EvoInstance(
            name=name,
            id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            token=token or str(uuid.UUID(int=self.rng.getrandbits(128), version=4)).upper(),
            state=state,
            phone=own,
            profile_name=profile_name,
            created_at=_iso(self.clock()),
            opened=state == "open",
        )
        self.instances[name] = instance
        self.directory.register(own)
        return instance

    def set_state(self, name: str, state: str) -> None:
        """Change an instance's connection state."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {STATES}")
        instance = self.instance(name)
        instance.state = state
        instance.opened = instance.opened or state == "open"

    def add_contact(
        self,
        target: str,
        phone: str,
        *,
        name: str | None = None,
        push_name: str | None = None,
        lid: str | None = None,
        lid_known: bool = True,
    ) -> None:
        """Register a person: on WhatsApp as `phone`, optionally with a LID (`remoteJidAlt`
        only appears when `lid_known`)."""
        instance = self.instance(target)
        digits = digits_of(phone)
        self.directory.register(digits)
        pn = f"{digits}@s.whatsapp.net"
        if lid:
            instance.lid_pn[lid] = pn if lid_known else None
            if lid_known:
                instance.pn_lid[pn] = lid
        for jid in (pn, lid):
            if not jid:
                continue
            instance.chat_names[jid] = name
            if push_name:
                instance.push_names[jid] = push_name
            instance.contacts.setdefault(
                jid,
                {
                    "id": cuid(self.rng),
                    "remoteJid": jid,
                    "pushName": push_name,
                    "profilePicUrl": None,
                },
            )

    def add_group(
        self, target: str, group_id: str, *, subject: str, participants: Sequence[str]
    ) -> None:
        """Create a group; its first participant is the default author of incoming messages."""
        instance = self.instance(target)
        instance.groups[group_id] = [self._address(p) for p in participants]
        instance.chat_names[group_id] = subject

    def add_message(
        self,
        target: str,
        chat: str,
        content: Content,
        *,
        from_me: bool = False,
        ts: int | None = None,
        sender: str | None = None,
        push_name: str | None = None,
        ack: int | None = None,
        message_id: str | None = None,
        device: str | None = None,
    ) -> str:
        """Store a message row in `chat` (phone digits or jid); returns its `key.id`.

        A `@lid` chat is stored with the raw LID as `remoteJid` and the phone, when known, in
        `remoteJidAlt` (evolution.md §7.2). `ack` uses WAHA's numbering (-1..4).
        """
        instance = self.instance(target)
        raw = message_id or raw_message_id(self.rng, device or "android")
        when = int(self.clock()) if ts is None else ts
        jid = self._address(chat)
        author = self._address(sender) if sender else None
        status = "SERVER_ACK" if from_me else "DELIVERY_ACK"
        row = self._store(
            instance,
            jid,
            content,
            raw_id=raw,
            ts=when,
            from_me=from_me,
            sender=author,
            push_name=push_name,
            status=status,
        )
        if ack is not None and ack >= 2:
            for name in _STATUS_CHAIN[1:ack]:
                row["MessageUpdate"].append({"status": name})
            row["status"] = STATUS_NAMES[ack]
        return raw

    def add_incoming(
        self,
        instance: str,
        chat: str,
        *,
        text: str,
        ts: int | None = None,
        sender: str | None = None,
        push_name: str | None = None,
    ) -> str:
        """Append a text message someone sent us; returns its `key.id`."""
        return self.add_message(
            instance, chat, _text(text), ts=ts, sender=sender, push_name=push_name
        )

    def add_incoming_media(
        self,
        instance: str,
        chat: str,
        *,
        kind: str = "image",
        caption: str | None = None,
        filename: str | None = None,
        mimetype: str | None = None,
        ts: int | None = None,
        sender: str | None = None,
    ) -> str:
        """Append a media message someone sent us; returns its `key.id`."""
        content = media(kind, caption=caption, filename=filename, mimetype=mimetype)
        return self.add_message(instance, chat, content, ts=ts, sender=sender)

    def add_outgoing(self, instance: str, chat: str, *, text: str, ts: int | None = None) -> str:
        """Append a message we typed on the phone (`fromMe`, `SERVER_ACK`)."""
        return self.add_message(instance, chat, _text(text), from_me=True, ts=ts)

    def set_status(self, instance: str, key_id: str, status: str | int) -> Json:
        """Record a delivery status; returns the `messages.update` data to `deliver()`."""
        inst = self.instance(instance)
        row = self._row(inst, key_id)
        name = STATUS_NAMES[status] if isinstance(status, int) else status
        row["MessageUpdate"].append({"status": name})
        row["status"] = name
        key = row["key"]
        return {
            "keyId": key["id"],
            "remoteJid": key["remoteJid"],
            "fromMe": key["fromMe"],
            "participant": key.get("participant") or key["remoteJid"],
            "status": name,
            "instanceId": inst.id,
            "messageId": row["id"],
        }

    def edit_message(self, instance: str, key_id: str, *, text: str, ts: int | None = None) -> None:
        """Store an edit as Evolution does (evolution.md 4.3): the row's `message` becomes the
        new text, `messageTimestamp` the edit time, and a `MessageUpdate` row says EDITED."""
        row = self._row(self.instance(instance), key_id)
        row["message"] = {"conversation": text}
        row["messageType"] = "conversation"
        row["messageTimestamp"] = int(self.clock()) if ts is None else ts
        row["MessageUpdate"].append({"status": "EDITED"})

    def delete_message(self, instance: str, key_id: str) -> None:
        """An API delete with DATABASE_DELETE_MESSAGE on: the row stays, marked
        `key.deleted` and `status: DELETED` (evolution.md 4.4)."""
        row = self._row(self.instance(instance), key_id)
        row["key"]["deleted"] = True
        row["status"] = "DELETED"
        row["MessageUpdate"].append({"status": "DELETED"})

    # -- ground truth ---------------------------------------------------------------------------

    def instance(self, name: str) -> EvoInstance:
        """The live state of an instance (KeyError when unknown)."""
        return self.instances[name]

    def all_messages(self, instance: str) -> list[Json]:
        """Every stored row (copies, as `findMessages` returns them), oldest first."""
        rows = sorted(self.instance(instance).messages, key=_ts)
        return [copy.deepcopy(_project(r, _FIND_MESSAGE_FIELDS)) for r in rows]

    def get_message(self, instance: str, key_id: str) -> Json:
        """One stored row (a copy, `findMessages` shape) by its `key.id`."""
        return copy.deepcopy(
            _project(self._row(self.instance(instance), key_id), _FIND_MESSAGE_FIELDS)
        )

    def upsert_payload(self, instance: str, key_id: str) -> Json:
        """`data` of the `messages.upsert` (or `send.message`) webhook for a stored row.

        2.3.7 rewrites an `@lid` `remoteJid` to `remoteJidAlt` just before the webhook while the
        row keeps the LID (evolution.md §7.2).
        """
        inst = self.instance(instance)
        return copy.deepcopy(_prepared(self._row(inst, key_id), lid_rewrite=self._lid_rewrite()))

    def _lid_rewrite(self) -> bool:
        parts = tuple(int(p) for p in self.version.split(".")[:3] if p.isdigit())
        return parts >= (2, 3, 7) or (2, 3, 3) <= parts <= (2, 3, 4)

    # -- webhooks -------------------------------------------------------------------------------

    async def deliver(
        self,
        instance: str,
        event: str,
        data: Any,
        *,
        delay_s: float | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> Delivery | None:
        """POST one event to the instance webhook if it is enabled and subscribed.

        `event` is dotted (`messages.upsert`) or upper-case (`MESSAGES_UPSERT`). Retries 5xx and
        network errors with exponential backoff (`delay_s` overrides the 5 s base; 0 in tests);
        400/401/403/404/422 stop at once (evolution.md §3.4). None when nothing was sent.
        """
        inst = self.instance(instance)
        client = self.webhook_client(http)
        dotted, upper = _event_names(event)
        hook = inst.webhook
        if not hook or not hook["enabled"] or upper not in hook["events"]:
            return None
        url = str(hook["url"])
        if not url.startswith(("http://", "https://")):
            return None
        if hook["webhookByEvents"]:
            url = f"{url}/{upper.replace('_', '-').lower()}"
        body = compact_json(self._webhook_envelope(inst, dotted, data, url))
        headers = self._webhook_headers(dict(hook.get("headers") or {}))
        base: float = self.webhook_delay_s if delay_s is None else delay_s

        def wait(n: int) -> float:
            if base <= 0:
                return 0.0
            delay = min(base * 2.0 ** (n - 1), 300.0) * (1 + self.rng.uniform(-0.2, 0.2))
            return max(delay, base)

        return await post_with_retries(
            client,
            url,
            body,
            headers,
            max_attempts=self.webhook_max_attempts,
            delay_s=wait,
            retryable=lambda status: status not in _NON_RETRYABLE,
            log=self.deliveries,
        )

    async def deliver_message(
        self,
        instance: str,
        key_id: str,
        *,
        event: str = "messages.upsert",
        delay_s: float | None = None,
    ) -> Delivery | None:
        """Deliver a stored row as `messages.upsert` (or `send.message`)."""
        data = self.upsert_payload(instance, key_id)
        return await self.deliver(instance, event, data, delay_s=delay_s)

    def _webhook_envelope(self, inst: EvoInstance, event: str, data: Any, url: str) -> Json:
        """evolution.md §4.1; `date_time` is local wall time with a `Z` suffix (not UTC)."""
        envelope: Json = {
            "event": event,
            "instance": inst.name,
            "data": data,
            "destination": url,
            "date_time": _iso(self.clock() + self.tz_offset_s),
        }
        if inst.opened:
            envelope["sender"] = inst.owner_jid
        envelope["server_url"] = self.server_url
        envelope["apikey"] = inst.token if self.expose_token else None
        return envelope

    def _webhook_headers(self, configured: dict[str, Any]) -> dict[str, str]:
        """Static headers as configured; a `jwt_key` becomes `Authorization: Bearer <HS256>`."""
        headers = {"Content-Type": "application/json"}
        secret = configured.pop("jwt_key", None)
        headers.update({str(k): str(v) for k, v in configured.items()})
        if secret:
            iat = int(self.clock())
            claims = {"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}
            with warnings.catch_warnings():  # Evolution signs with any secret, however short
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                token = jwt.encode(claims, str(secret), algorithm="HS256")
            headers["Authorization"] = f"Bearer {token}"
        return headers

    # -- storage --------------------------------------------------------------------------------

    def _address(self, value: str) -> str:
        """Phone digits become the registered `@s.whatsapp.net` jid; `@c.us` is converted."""
        if "@" not in value:
            digits = digits_of(value)
            return f"{self.directory.lookup(digits) or digits}@s.whatsapp.net"
        user, _, server = value.partition("@")
        return f"{user}@s.whatsapp.net" if server == "c.us" else value

    def _row(self, inst: EvoInstance, key_id: str) -> Json:
        row = inst.by_key.get(key_id)
        if row is None:
            raise KeyError(f"no message {key_id!r} in instance {inst.name!r}")
        return row

    def _alt(self, inst: EvoInstance, jid: str) -> str | None:
        if jid.endswith("@lid"):
            return inst.lid_pn.get(jid)
        return inst.pn_lid.get(jid)

    def _key(
        self, inst: EvoInstance, jid: str, raw_id: str, from_me: bool, author: str | None
    ) -> Json:
        """Baileys 7 `WAMessageKey` (evolution.md §4.2): alt forms and addressing mode."""
        key: Json = {"remoteJid": jid}
        if jid.endswith("@g.us"):
            key.update(fromMe=from_me, id=raw_id, participant=author or "")
            alt = self._alt(inst, author) if author else None
            if alt:
                key["participantAlt"] = alt
            key["addressingMode"] = "lid" if (author or "").endswith("@lid") else "pn"
            return key
        alt = self._alt(inst, jid)
        if alt:
            key["remoteJidAlt"] = alt
        key.update(fromMe=from_me, id=raw_id, participant="")
        key["addressingMode"] = "lid" if jid.endswith("@lid") else "pn"
        return key

    def _store(
        self,
        inst: EvoInstance,
        jid: str,
        content: Content,
        *,
        raw_id: str,
        ts: int,
        from_me: bool,
        sender: str | None,
        push_name: str | None,
        status: str,
        context: Json | None = None,
    ) -> Json:
        group = jid.endswith("@g.us")
        author = None
        if group:
            members = inst.groups.get(jid, [])
            if not from_me and not sender and not members:
                raise ValueError(f"group {jid!r} has no participants: pass sender=")
            author = inst.owner_jid if from_me else sender or members[0]
        if push_name is None:
            who = author or jid
            fallback = inst.profile_name if from_me else digits_of(who)
            push_name = inst.push_names.get(who, fallback)
        reaction_key = None
        if content.kind == "reaction":
            reaction_key = {
                "remoteJid": jid,
                "fromMe": content.reaction_to_from_me,
                "id": content.reaction_to,
            }
        row: Json = {
            "id": cuid(self.rng),
            "key": self._key(inst, jid, raw_id, from_me, author),
            "pushName": push_name,
            "participant": author,
            "messageType": PROTO_KEYS[content.kind],
            "message": dict(
                wa_proto(content, ts=ts, rng=self.rng, longs=True, reaction_key=reaction_key)
            ),
            "contextInfo": context,
            "source": device_of(raw_id),
            "messageTimestamp": ts,
            "instanceId": inst.id,
            "sessionId": None,
            "status": status,
            "MessageUpdate": [],
        }
        inst.messages.append(row)
        inst.by_key[raw_id] = row
        if jid not in inst.contacts and not group:
            inst.contacts[jid] = {
                "id": cuid(self.rng),
                "remoteJid": jid,
                "pushName": push_name,
                "profilePicUrl": None,
            }
        return row

    # -- HTTP: plumbing -------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        guarded = self._guarded
        return [
            Route("/", self._root, methods=["GET"], name="root"),
            Route(
                "/instance/fetchInstances",
                self._fetch_instances,
                methods=["GET"],
                name="instance.fetchInstances",
            ),
            guarded(
                "/instance/connectionState/{instance}",
                self._connection_state,
                "GET",
                "instance.connectionState",
            ),
            guarded("/chat/findChats/{instance}", self._find_chats, "POST", "chat.findChats"),
            guarded(
                "/chat/findMessages/{instance}", self._find_messages, "POST", "chat.findMessages"
            ),
            guarded(
                "/chat/whatsappNumbers/{instance}",
                self._whatsapp_numbers,
                "POST",
                "chat.whatsappNumbers",
            ),
            guarded("/message/sendText/{instance}", self._send_text, "POST", "message.sendText"),
            guarded("/message/sendMedia/{instance}", self._send_media, "POST", "message.sendMedia"),
            guarded(
                "/message/sendWhatsAppAudio/{instance}",
                self._send_audio,
                "POST",
                "message.sendWhatsAppAudio",
            ),
            guarded("/webhook/set/{instance}", self._webhook_set, "POST", "webhook.set"),
            guarded("/webhook/find/{instance}", self._webhook_find, "GET", "webhook.find"),
        ]

    def _guarded(
        self,
        path: str,
        handler: Callable[[Request, EvoInstance], Awaitable[Response]],
        method: str,
        name: str,
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            return await handler(request, self._guard(request))

        return Route(path, endpoint, methods=[method], name=name)

    def _guard(self, request: Request) -> EvoInstance:
        """evolution.md §1: the instance must exist (404) before the key is checked (401)."""
        name = request.path_params["instance"]
        inst = self.instances.get(name)
        if inst is None:
            message = [f'The "{name}" instance does not exist']
            raise SimError(404, _envelope(404, "Not Found", message))
        given = request.headers.get("apikey", "")
        if not (_same(given, self.api_key) or _same(given, inst.token)):
            raise SimError(401, _envelope(401, "Unauthorized", "Unauthorized"))
        return inst

    # -- HTTP: instances and webhook config -----------------------------------------------------

    async def _root(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "status": 200,
                "message": "Welcome to the Evolution API, it is working!",
                "version": self.version,
                "clientName": "evolution_exchange",
            }
        )

    async def _fetch_instances(self, request: Request) -> Response:
        """Global key: every instance; an instance token: only that instance."""
        given = request.headers.get("apikey", "")
        if _same(given, self.api_key):
            listed = list(self.instances.values())
        else:
            listed = [i for i in self.instances.values() if _same(given, i.token)]
            if not listed:
                raise SimError(401, _envelope(401, "Unauthorized", "Unauthorized"))
        wanted = request.query_params.get("instanceName")
        if wanted:
            listed = [i for i in listed if i.name == wanted]
        return JSONResponse([self._instance_row(i) for i in listed])

    def _instance_row(self, inst: EvoInstance) -> Json:
        chats = {row["key"]["remoteJid"] for row in inst.messages}
        return {
            "id": inst.id,
            "name": inst.name,
            "connectionStatus": inst.state,
            "ownerJid": inst.owner_jid if inst.opened else None,
            "profileName": inst.profile_name,
            "profilePicUrl": None,
            "integration": "WHATSAPP-BAILEYS",
            "number": None,
            "businessId": None,
            "token": inst.token,
            "clientName": "evolution_exchange",
            "disconnectionReasonCode": None,
            "disconnectionObject": None,
            "disconnectionAt": None,
            "createdAt": inst.created_at,
            "updatedAt": inst.created_at,
            "Chatwoot": None,
            "Proxy": None,
            "Rabbitmq": None,
            "Nats": None,
            "Sqs": None,
            "Websocket": None,
            "Setting": {
                "rejectCall": False,
                "groupsIgnore": False,
                "alwaysOnline": False,
                "readMessages": False,
                "readStatus": False,
                "syncFullHistory": False,
                "instanceId": inst.id,
            },
            "_count": {
                "Message": len(inst.messages),
                "Contact": len(inst.contacts),
                "Chat": len(chats),
            },
        }

    async def _connection_state(self, _request: Request, inst: EvoInstance) -> Response:
        return JSONResponse({"instance": {"instanceName": inst.name, "state": inst.state}})

    async def _webhook_set(self, request: Request, inst: EvoInstance) -> Response:
        """evolution.md §3.1: nested `{"webhook": {...}}` body; `events` must be present."""
        body = await read_json(request, _bad_json)
        hook = body.get("webhook") if isinstance(body, dict) else None
        if not isinstance(hook, dict):
            raise _bad('instance requires property "webhook"')
        missing = [f'webhook requires property "{k}"' for k in ("enabled", "url") if k not in hook]
        if missing:
            raise _bad(*missing)
        events = hook.get("events")
        if not isinstance(events, list):
            raise _bad("TypeError: Cannot read properties of undefined (reading 'length')")
        wrong = [e for e in events if e not in SUBSCRIBABLE]
        if wrong:
            raise _bad(f"webhook.events is not one of enum values: {','.join(map(str, wrong))}")
        if not hook["enabled"]:
            events = []
        elif not events:
            events = list(SUBSCRIBABLE)
        now = _iso(self.clock())
        previous = inst.webhook or {}
        inst.webhook = {
            "id": previous.get("id") or cuid(self.rng),
            "url": hook["url"],
            "headers": hook.get("headers") or {},
            "enabled": bool(hook["enabled"]),
            "events": events,
            "webhookByEvents": bool(hook.get("byEvents", False)),
            "webhookBase64": bool(hook.get("base64", False)),
            "createdAt": previous.get("createdAt") or now,
            "updatedAt": now,
            "instanceId": inst.id,
        }
        return JSONResponse(inst.webhook, status_code=201)

    async def _webhook_find(self, _request: Request, inst: EvoInstance) -> Response:
        return JSONResponse(inst.webhook)

    # -- HTTP: reading --------------------------------------------------------------------------

    async def _find_messages(self, request: Request, inst: EvoInstance) -> Response:
        """evolution.md §5.2 with its quirks: `offset` is the page size, the time window needs
        both bounds (ISO or epoch ms), `fromMe:false` is ignored, equal timestamps come back in
        no stable order."""
        body = await read_json(request, _bad_json)
        query: Json = body if isinstance(body, dict) else {}
        where = _object(query.get("where"))
        page_size = _js_int(query.get("offset")) or 50
        page = _js_int(query.get("page")) or 1
        rows = [r for r in inst.messages if self._matches(r, where)]
        rows.sort(key=lambda r: (-r["messageTimestamp"], self.rng.random()))
        start = page_size * (page - 1)
        records = [_project(r, _FIND_MESSAGE_FIELDS) for r in rows[start : start + page_size]]
        total = len(rows)
        return JSONResponse(
            {
                "messages": {
                    "total": total,
                    "pages": math.ceil(total / page_size),
                    "currentPage": page,
                    "records": records,
                }
            }
        )

    def _matches(self, row: Json, where: Json) -> bool:
        key_filter = _object(where.get("key"))
        key = row["key"]
        remote, alt = key_filter.get("remoteJid"), key_filter.get("remoteJidAlt")
        if remote or alt:  # 2.3.7: OR(key.remoteJid = X, key.remoteJidAlt = Y)
            if not (
                (remote and key["remoteJid"] == remote) or (alt and key.get("remoteJidAlt") == alt)
            ):
                return False
        elif self.empty_or_matches_nothing:
            return False
        if key_filter.get("fromMe") and not key["fromMe"]:
            return False
        for name in ("id", "participant"):
            if key_filter.get(name) and key.get(name) != key_filter[name]:
                return False
        for name in ("messageType", "source", "id"):
            if where.get(name) and row.get(name) != where[name]:
                return False
        return self._in_window(row["messageTimestamp"], where.get("messageTimestamp"))

    def _in_window(self, ts: int, window: Any) -> bool:
        """Applied only when both `gte` and `lte` are truthy; each read like JS `new Date(x)`."""
        if not isinstance(window, dict) or not (window.get("gte") and window.get("lte")):
            return True
        low = _js_date_s(window["gte"], self.tz_offset_s)
        high = _js_date_s(window["lte"], self.tz_offset_s)
        return low is not None and high is not None and low <= ts <= high

    async def _find_chats(self, request: Request, inst: EvoInstance) -> Response:
        """evolution.md §5.3: one item per stored `remoteJid`, newest last message first."""
        body = await read_json(request, _bad_json)
        query: Json = body if isinstance(body, dict) else {}
        where = _object(query.get("where"))
        window = where.get("messageTimestamp")
        last: dict[str, Json] = {}
        for row in inst.messages:
            if not self._in_window(row["messageTimestamp"], window):
                continue
            jid = row["key"]["remoteJid"]
            if jid not in last or row["messageTimestamp"] >= last[jid]["messageTimestamp"]:
                last[jid] = row
        wanted = where.get("remoteJid")
        if wanted:
            wanted = create_jid(str(wanted))
            last = {j: r for j, r in last.items() if j == wanted}
        ordered = sorted(last.items(), key=lambda item: -item[1]["messageTimestamp"])
        skip = _js_int(query.get("skip")) or 0
        take = _js_int(query.get("take"))
        chosen = ordered[skip : skip + take] if take else ordered[skip:]
        return JSONResponse([self._chat_item(inst, jid, row) for jid, row in chosen])

    def _chat_item(self, inst: EvoInstance, jid: str, row: Json) -> Json:
        incoming = [
            r for r in inst.messages if r["key"]["remoteJid"] == jid and not r["key"]["fromMe"]
        ]
        window_start = max((r["messageTimestamp"] for r in incoming), default=None)
        contact = inst.contacts.get(jid)
        expires = window_start + 86_400 if window_start is not None else None
        return {
            "id": contact["id"] if contact else None,
            "remoteJid": jid,
            "pushName": inst.chat_names.get(jid),
            "profilePicUrl": contact["profilePicUrl"] if contact else None,
            "updatedAt": _iso(row["messageTimestamp"]),
            "windowStart": _iso(window_start) if window_start is not None else None,
            "windowExpires": _iso(expires) if expires is not None else None,
            "windowActive": expires is not None and expires > self.clock(),
            "lastMessage": _project(row, _LAST_MESSAGE_FIELDS),
            "unreadCount": sum(1 for r in incoming if r["status"] == "DELIVERY_ACK"),
            "isSaved": contact is not None and inst.chat_names.get(jid) is not None,
        }

    async def _whatsapp_numbers(self, request: Request, inst: EvoInstance) -> Response:
        """evolution.md §6: `[{exists, jid, number}]`, both Brazilian variants accepted."""
        body = await read_json(request, _bad_json)
        numbers = body.get("numbers") if isinstance(body, dict) else None
        valid = isinstance(numbers, list) and numbers and all(isinstance(n, str) for n in numbers)
        if not valid or len(set(numbers or [])) != len(numbers or []):
            raise _bad("numbers must be a non-empty array of unique strings")
        self._connected(inst)
        answers = []
        for number in numbers or []:
            exists, jid = self._lookup(inst, number)
            answers.append({"exists": exists, "jid": jid, "number": number})
        return JSONResponse(answers)

    def _lookup(self, inst: EvoInstance, number: str) -> tuple[bool, str]:
        if number.endswith("@g.us"):
            return number in inst.groups, number
        if number.endswith("@lid"):
            return True, number
        jid = create_jid(number)
        registered = self.directory.lookup(digits_of(jid))
        if registered is None:
            return False, jid
        return True, f"{registered}@s.whatsapp.net"

    def _connected(self, inst: EvoInstance) -> None:
        if inst.state != "open":
            raise _bad("Error: Connection Closed")

    # -- HTTP: sending --------------------------------------------------------------------------

    async def _send_text(self, request: Request, inst: EvoInstance) -> Response:
        def content(body: Json) -> Content:
            message = body.get("text")
            if not isinstance(message, str) or not message.strip():
                raise _bad("Text is required")
            return _text(message)

        return await self._send(request, inst, "sendText", content)

    async def _send_media(self, request: Request, inst: EvoInstance) -> Response:
        return await self._send(request, inst, "sendMedia", _media_content)

    async def _send_audio(self, request: Request, inst: EvoInstance) -> Response:
        def content(body: Json) -> Content:
            audio = body.get("audio")
            if not isinstance(audio, str) or not (_is_url(audio) or _is_base64(audio)):
                raise _bad("Owned media must be a url or base64")
            return media("voice")

        return await self._send(request, inst, "sendWhatsAppAudio", content)

    async def _send(
        self,
        request: Request,
        inst: EvoInstance,
        route: str,
        build: Callable[[Json], Content],
    ) -> Response:
        """The common send pipeline (evolution.md §6): validate, check the number, store the
        row as `PENDING`, answer 201 with its `prepareMessage()` shape."""
        body = await read_json(request, _bad_json)
        with self.record_send(route, inst.name, body) as record:
            row = await self._send_row(inst, body, build)
        record.status, record.message_id = 201, row["key"]["id"]
        if self.throw_after_send:
            record.status = 400
            raise _bad(self.throw_after_send.popleft())
        return JSONResponse(_prepared(row, lid_rewrite=False), status_code=201)

    async def _send_row(
        self, inst: EvoInstance, body: Any, build: Callable[[Json], Content]
    ) -> Json:
        if not isinstance(body, dict) or not isinstance(body.get("number"), str):
            raise _bad('instance requires property "number"')
        content = build(body)
        self._connected(inst)
        number = body["number"]
        exists, jid = self._lookup(inst, number)
        if not exists:
            raise _bad({"jid": jid, "exists": False, "number": number})
        delay = _js_int(body.get("delay"))
        if delay:
            await asyncio.sleep(delay / 1000)
        raw = raw_message_id(self.rng, "web")
        ts = int(self.clock())
        return self._store(
            inst,
            jid,
            content,
            raw_id=raw,
            ts=ts,
            from_me=True,
            sender=None,
            push_name="Você",
            status="PENDING",
            context=self._send_context(inst, body, ts),
        )

    def _send_context(self, inst: EvoInstance, body: Json, ts: int) -> Json:
        context: Json = {
            "mentionedJid": [],
            "groupMentions": [],
            "ephemeralSettingTimestamp": {"low": ts, "high": 0, "unsigned": False},
            "disappearingMode": {"initiator": 0},
        }
        quoted = body.get("quoted")
        if isinstance(quoted, dict) and isinstance(quoted.get("key"), dict):
            target = inst.by_key.get(str(quoted["key"].get("id")))
            context["stanzaId"] = quoted["key"].get("id")
            context["quotedMessage"] = quoted.get("message") or (target or {}).get("message")
        return context


def _text(body: str) -> Content:
    return text(body)


def _object(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _ts(row: Json) -> int:
    return int(row["messageTimestamp"])


def _same(given: str, expected: str) -> bool:
    return bool(given) and secrets.compare_digest(given.encode(), expected.encode())


def _project(row: Json, fields: Sequence[str]) -> Json:
    return {name: row[name] for name in fields}


def _prepared(row: Json, *, lid_rewrite: bool) -> Json:
    """`prepareMessage()` (evolution.md §4.2): the webhook / send-response shape of a row."""
    key = dict(row["key"])
    if lid_rewrite and key["remoteJid"].endswith("@lid") and key.get("remoteJidAlt"):
        key["remoteJid"] = key["remoteJidAlt"]
    data: Json = {
        "key": key,
        "pushName": row["pushName"],
        "status": row["status"],
        "message": row["message"],
    }
    if row["contextInfo"] is not None:
        data["contextInfo"] = row["contextInfo"]
    data.update(
        messageType=row["messageType"],
        messageTimestamp=row["messageTimestamp"],
        instanceId=row["instanceId"],
        source=row["source"],
    )
    return data


def _event_names(event: str) -> tuple[str, str]:
    """(dotted lower-case name, upper-case subscription name) of an event."""
    if event.isupper():
        return _DOTTED.get(event, event.lower().replace("_", ".")), event
    return event, event.replace(".", "_").replace("-", "_").upper()


def _js_int(value: Any) -> int:
    """A JSON number or numeric string as int; anything else is 0 (falsy, like JS)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return 0


def _js_date_s(value: Any, tz_offset_s: int) -> float | None:
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


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https", "ftp") and bool(parts.netloc)


def _is_base64(value: str) -> bool:
    return bool(value) and len(value) % 4 == 0 and bool(_BASE64.match(value))


def _media_content(body: Json) -> Content:
    """sendMedia body checks in Evolution's order (evolution.md §6)."""
    kind = body.get("mediatype")
    if kind not in _MEDIA_TYPES:
        raise _bad(f"mediatype is not one of enum values: {','.join(_MEDIA_TYPES)}")
    source = body.get("media")
    if not isinstance(source, str):
        raise _bad('instance requires property "media"')
    name = body.get("fileName")
    if _is_base64(source) and not name and kind == "document":
        raise _bad("For base64 the file name must be informed.")
    if not (_is_url(source) or _is_base64(source)):
        raise _bad("Owned media must be a url or base64")
    if kind == "document" and not name and _is_url(source):
        name = urlsplit(source).path.rsplit("/", 1)[-1] or "file"
    caption = body.get("caption")
    return media(
        str(kind),
        caption=str(caption) if caption else None,
        filename=str(name) if name else None,
        mimetype=str(body["mimetype"]) if body.get("mimetype") else None,
    )
