"""A stateful WAHA (WhatsApp HTTP API) simulator.

Sessions on the WEBJS, NOWEB and GOWS engines hold chats and messages stored as real `WAMessage`
dicts with each engine's `from`/`to`/`_data`; the app serves the endpoints wasync uses with the
quirks of /work/shared/providers/waha.md (sections cited as "waha.md §n"), and `deliver()` fires
signed webhooks the way WAHA's `WebhookSender` does.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wasync.sim.base import (
    Delivery,
    Json,
    SentRequest,
    SimError,
    Simulator,
    compact_json,
    post_with_retries,
    read_json,
)
from wasync.sim.content import Content, media, raw_message_id, text, ulid, wa_proto
from wasync.sim.directory import digits_of
from wasync.sim.faults import Faults

ENGINES = ("WEBJS", "NOWEB", "GOWS")
STATUSES = (
    "STOPPED",
    "STARTING",
    "SCAN_QR_CODE",
    "WORKING",
    "FAILED",
    "PASSKEY_REQUIRED",
    "PASSKEY_CONFIRMATION_REQUIRED",
)
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
EVENTS = (
    "session.status", "message", "message.reaction", "message.any", "message.ack",
    "message.ack.group", "message.waiting", "message.revoked", "message.edited",
    "state.change", "group.join", "group.leave", "group.v2.join", "group.v2.leave",
    "group.v2.update", "group.v2.participants", "presence.update", "poll.vote",
    "poll.vote.failed", "chat.archive", "call.received", "call.accepted", "call.rejected",
    "label.upsert", "label.deleted", "label.chat.added", "label.chat.deleted",
    "event.response", "event.response.failed", "engine.event",
)  # fmt: skip
DOCS_URL = "https://waha.devlike.pro/"
NOT_WORKING = "Session status is not as expected. Try again later or restart the session"
_WEBJS_TYPES = {
    "text": "chat", "image": "image", "video": "video", "audio": "audio", "voice": "ptt",
    "document": "document", "sticker": "sticker", "location": "location", "contact": "vcard",
    "reaction": "reaction",
}  # fmt: skip
_EXTENSIONS = {
    "image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp", "video/mp4": "mp4",
    "audio/ogg; codecs=opus": "oga", "audio/ogg": "oga", "audio/mpeg": "mp3",
    "application/pdf": "pdf",
}  # fmt: skip
_SEND_KINDS = {
    "sendImage": "image",
    "sendFile": "document",
    "sendVoice": "voice",
    "sendVideo": "video",
}


def sign_body(key: str, body: bytes) -> str:
    """`X-Webhook-Hmac`: hex HMAC-SHA512 of the raw body bytes (waha.md §5)."""
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


def webhook_config(
    url: str,
    *,
    events: Sequence[str] = ("message", "session.status"),
    hmac_key: str | None = None,
    retries: Json | None = None,
    custom_headers: Sequence[tuple[str, str]] = (),
) -> Json:
    """A session `config.webhooks[]` entry (`WebhookConfig`, waha.md §2)."""
    return {
        "url": url,
        "events": list(events),
        "hmac": {"key": hmac_key} if hmac_key else None,
        "retries": retries,
        "customHeaders": [{"name": n, "value": v} for n, v in custom_headers] or None,
    }


def _nest(status: int, message: Any, error: str) -> Json:
    return {"message": message, "error": error, "statusCode": status}


def _bad_request(*messages: str) -> SimError:
    return SimError(400, _nest(400, list(messages), "Bad Request"))


def _error_body(status: int) -> Json:
    if status == 429:
        return {"message": "ThrottlerException: Too Many Requests", "statusCode": 429}
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "statusCode": status,
        "timestamp": stamp,
        "exception": {"message": "Simulated internal error (wasync.sim fault)", "name": "Error"},
    }


def _not_found(request: Request) -> Json:
    return _nest(404, f"Cannot {request.method} {request.url.path}", "Not Found")


def _cus(jid: str) -> str:
    """WAHA's public form of a jid: `@s.whatsapp.net` becomes `@c.us`."""
    user, _, server = jid.partition("@")
    return f"{user}@c.us" if server == "s.whatsapp.net" else jid


def _swa(jid: str) -> str:
    """The engine-internal form: `@c.us` becomes `@s.whatsapp.net`."""
    user, _, server = jid.partition("@")
    return f"{user}@s.whatsapp.net" if server == "c.us" else jid


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


@dataclass(slots=True, kw_only=True)
class WahaChat:
    """One chat of a session; `messages` in insertion order."""

    id: str
    name: str | None = None
    picture: str | None = None
    participants: list[str] = field(default_factory=list)
    messages: list[Json] = field(default_factory=list)
    last: Json | None = None
    unread: int = 0


@dataclass(slots=True, kw_only=True)
class WahaSession:
    """A simulated WAHA session: status, config, account and everything it stored."""

    name: str
    engine: str
    status: str
    phone: str
    push_name: str
    lid: str | None
    config: Json
    chats: dict[str, WahaChat] = field(default_factory=dict)
    lids: dict[str, str | None] = field(default_factory=dict)
    pn_lids: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    push_names: dict[str, str] = field(default_factory=dict)
    order: list[Json] = field(default_factory=list)
    index: dict[str, Json] = field(default_factory=dict)
    media: dict[str, Content] = field(default_factory=dict)
    # WEBJS only: notification rows (e2e, group changes) in the browser store, per chat, by
    # timestamp; they take places in a page and are then dropped from it (waha.md 3).
    notices: dict[str, list[int]] = field(default_factory=dict)
    restarts: int = 0
    activity_ms: int | None = None

    @property
    def me_id(self) -> str:
        """The account's own `…@c.us` id."""
        return f"{self.phone}@c.us"

    def me(self) -> Json | None:
        """`SessionInfo.me`: only known while the session is WORKING."""
        if self.status != "WORKING":
            return None
        info: Json = {"id": self.me_id, "pushName": self.push_name}
        if self.engine in ("NOWEB", "GOWS") and self.lid:
            info["lid"] = self.lid
        if self.engine == "GOWS":
            info["jid"] = f"{self.phone}:42@s.whatsapp.net"
        return info


class WahaSim(Simulator):
    """A WAHA server with several sessions, served by `.app` (a Starlette app).

    `api_key=None` disables the key check (like `WAHA_NO_API_KEY`). `http` is the client used
    by `deliver()`. `clock` gives the current time in seconds (time is a parameter in tests).
    """

    def __init__(
        self,
        *,
        api_key: str | None = "waha-sim-key",
        version: str = "2026.7.1",
        tier: str = "CORE",
        default_engine: str = "WEBJS",
        seed: int = 0,
        http: httpx.AsyncClient | None = None,
        public_url: str = "http://localhost:3000",
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(seed=seed, http=http, clock=clock, faults=faults)
        self.api_key = api_key
        self.version = version
        self.tier = tier
        self.default_engine = default_engine
        self.public_url = public_url.rstrip("/")
        self.sessions: dict[str, WahaSession] = {}
        self.seen: list[Json] = []
        self._build_app(self._routes(), error_body=_error_body, not_found=_not_found)

    # -- world set-up ---------------------------------------------------------------------------

    def add_session(
        self,
        name: str,
        *,
        engine: str | None = None,
        status: str = "WORKING",
        phone: str | None = None,
        push_name: str = "WAHA Sim",
        webhooks: Iterable[Json] = (),
        metadata: dict[str, str] | None = None,
    ) -> WahaSession:
        """Create a session (already paired when `status` is WORKING)."""
        engine = engine or self.default_engine
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {STATUSES}")
        config: Json = {"proxy": None, "webhooks": list(webhooks), "debug": False}
        if metadata is not None:
            config["metadata"] = dict(metadata)
        if engine == "NOWEB":  # waha.md §2: the store is required for chats/messages APIs
            config["noweb"] = {"store": {"enabled": True, "fullSync": False}}
        own = phone or f"55119{self.rng.randint(60_000_000, 99_999_999)}"
        lid = f"1{self.rng.randint(10**13, 10**14 - 1)}@lid"
        session = WahaSession(
            name=name,
            engine=engine,
            status=status,
            phone=own,
            push_name=push_name,
            lid=lid,
            config=config,
        )
        self.sessions[name] = session
        self.directory.register(own)
        return session

    def set_status(self, name: str, status: str) -> None:
        """Move a session to another status (WORKING, SCAN_QR_CODE, STOPPED, FAILED, …)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {STATUSES}")
        self.session(name).status = status

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
        """Register a person: on WhatsApp as `phone`, optionally with a LID (known or not)."""
        session = self.session(target)
        digits = digits_of(phone)
        self.directory.register(digits)
        pn = f"{digits}@c.us"
        for jid in (pn, lid):
            if jid and name:
                session.names[jid] = name
            if jid and push_name:
                session.push_names[jid] = push_name
        if lid:
            session.lids[lid] = pn if lid_known else None
            if lid_known:
                session.pn_lids[pn] = lid

    def add_group(
        self, target: str, group_id: str, *, subject: str, participants: Sequence[str]
    ) -> None:
        """Create a group chat with its participants (phone digits or `@lid` jids)."""
        chat = self._chat(self.session(target), group_id)
        chat.name = subject
        chat.participants = [self._address(p) for p in participants]

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
        """Store a message in `chat` (phone digits or jid); returns its WAHA id.

        `sender` is the group author (phone digits or `@lid`); `message_id` the raw WhatsApp
        id (generated in `device`'s format when omitted).
        """
        session = self.session(target)
        if content.kind == "reaction" and session.engine == "WEBJS":
            raise ValueError("WEBJS does not list reactions as messages")
        raw = message_id or raw_message_id(self.rng, device or "android")
        when = int(self.clock()) if ts is None else ts
        msg = self._store(
            session,
            self._address(chat),
            content,
            raw_id=raw,
            ts=when,
            from_me=from_me,
            sender=self._address(sender) if sender else None,
            push_name=push_name,
            ack=ack,
            source="app",
        )
        return str(msg["id"])

    def add_incoming(
        self,
        session: str,
        chat: str,
        *,
        text: str,
        ts: int | None = None,
        sender: str | None = None,
        push_name: str | None = None,
    ) -> str:
        """Append a text message someone sent us; returns the WAHA message id."""
        return self.add_message(
            session, chat, _text(text), ts=ts, sender=sender, push_name=push_name
        )

    def add_incoming_media(
        self,
        session: str,
        chat: str,
        *,
        kind: str = "image",
        caption: str | None = None,
        filename: str | None = None,
        mimetype: str | None = None,
        ts: int | None = None,
        sender: str | None = None,
    ) -> str:
        """Append a media message someone sent us (image, video, audio, voice, document,
        sticker); returns the WAHA message id."""
        content = media(kind, caption=caption, filename=filename, mimetype=mimetype)
        return self.add_message(session, chat, content, ts=ts, sender=sender)

    def add_outgoing(self, session: str, chat: str, *, text: str, ts: int | None = None) -> str:
        """Append a message we typed on the phone (fromMe, source `app`)."""
        return self.add_message(session, chat, _text(text), from_me=True, ts=ts, ack=1)

    def add_notification(self, session: str, chat: str, *, ts: int | None = None) -> None:
        """A WEBJS notification row (e2e change, group event) in `chat`: never listed, but it
        takes a place in the page it falls in (waha.md 3)."""
        sess = self.session(session)
        when = int(self.clock()) if ts is None else ts
        sess.notices.setdefault(self._address(chat), []).append(when)

    def set_ack(self, session: str, message_id: str, ack: int) -> Json:
        """Change a message's ack; returns the `message.ack` payload to `deliver()`."""
        sess = self.session(session)
        msg = self._message(sess, message_id)
        msg["ack"], msg["ackName"] = ack, ACK_NAMES.get(ack, "UNKNOWN")
        if sess.engine == "WEBJS":
            msg["_data"]["ack"] = ack
        return {
            "id": msg["id"],
            "from": msg["from"],
            "to": msg.get("to"),
            "participant": msg.get("participant"),
            "fromMe": msg["fromMe"],
            "ack": ack,
            "ackName": msg["ackName"],
        }

    # -- ground truth ---------------------------------------------------------------------------

    def session(self, name: str) -> WahaSession:
        """The live state of a session (KeyError when unknown)."""
        return self.sessions[name]

    def all_messages(self, session: str) -> list[Json]:
        """Every stored `WAMessage` of a session (copies), oldest first."""
        sess = self.session(session)
        return copy.deepcopy(sorted(sess.order, key=_ts))

    def chat_messages(self, session: str, chat_id: str) -> list[Json]:
        """The stored messages of one chat (copies), oldest first."""
        chat = self.session(session).chats.get(chat_id)
        return copy.deepcopy(sorted(chat.messages, key=_ts)) if chat else []

    def get_message(self, session: str, message_id: str) -> Json:
        """One stored message (a copy) by its WAHA id."""
        return copy.deepcopy(self._message(self.session(session), message_id))

    def webhook_payload(self, session: str, message_id: str) -> Json:
        """The `message`/`message.any` payload for a stored message, media already downloaded
        (WAHA downloads before emitting, waha.md §4)."""
        sess = self.session(session)
        return copy.deepcopy(self._with_media(sess, self._message(sess, message_id), True, None))

    # -- webhooks -------------------------------------------------------------------------------

    async def deliver(
        self,
        session: str,
        event: str,
        payload: Any,
        *,
        delay_s: float | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> list[Delivery]:
        """POST one event envelope to every webhook of the session subscribed to `event`.

        Retries any non-2xx or network error like WAHA (`retries.attempts`, default 15, after
        the first try); `delay_s` overrides the configured delay (0 in tests).
        """
        sess = self.session(session)
        client = self.webhook_client(http)
        ms = int(self.clock() * 1000)
        envelope: Json = {
            "id": "evt_" + ulid(self.rng, ms).lower(),
            "timestamp": ms,
            "event": event,
            "session": sess.name,
        }
        if "metadata" in sess.config:
            envelope["metadata"] = sess.config["metadata"]
        envelope.update(
            me=sess.me(),
            payload=payload,
            environment=self._environment(sess.engine),
            engine=sess.engine,
        )
        body = compact_json(envelope)
        results = []
        for hook in sess.config.get("webhooks") or []:
            if _subscribed(hook.get("events") or [], event):
                results.append(await self._post_hook(client, hook, body, ms, delay_s))
        return results

    async def deliver_message(
        self,
        session: str,
        message_id: str,
        *,
        event: str = "message",
        delay_s: float | None = None,
    ) -> list[Delivery]:
        """Deliver a stored message as a `message` (or `message.any`) event."""
        payload = self.webhook_payload(session, message_id)
        return await self.deliver(session, event, payload, delay_s=delay_s)

    async def _post_hook(
        self,
        client: httpx.AsyncClient,
        hook: Json,
        body: bytes,
        ms: int,
        delay_s: float | None,
    ) -> Delivery:
        headers = {
            "content-type": "application/json",
            "user-agent": f"WAHA/{self.version}",
            "X-Webhook-Request-Id": ulid(self.rng, ms),
            "X-Webhook-Timestamp": str(ms),
        }
        key = (hook.get("hmac") or {}).get("key")
        if key:
            headers["X-Webhook-Hmac"] = sign_body(str(key), body)
            headers["X-Webhook-Hmac-Algorithm"] = "sha512"
        for custom in hook.get("customHeaders") or []:
            headers[str(custom["name"])] = str(custom["value"])
        retries = hook.get("retries") or {}
        attempts = retries.get("attempts")
        base: float = delay_s if delay_s is not None else float(retries.get("delaySeconds") or 2)
        policy = retries.get("policy") or "constant"

        def wait(n: int) -> float:
            if policy == "linear":
                return base * n
            if policy == "exponential":
                return base * 2.0 ** (n - 1) * (1 + self.rng.uniform(0, 0.2))
            return base

        return await post_with_retries(
            client,
            str(hook["url"]),
            body,
            headers,
            max_attempts=1 + (15 if attempts is None else int(attempts)),
            delay_s=wait,
            retryable=lambda _status: True,
            log=self.deliveries,
        )

    def _environment(self, engine: str) -> Json:
        browser = "/usr/bin/google-chrome-stable" if engine == "WEBJS" else None
        return {"version": self.version, "engine": engine, "tier": self.tier, "browser": browser}

    # -- storage --------------------------------------------------------------------------------

    def _address(self, value: str) -> str:
        """Phone digits become the registered `@c.us` jid; other jids keep their server."""
        if "@" not in value:
            digits = digits_of(value)
            return f"{self.directory.lookup(digits) or digits}@c.us"
        return _cus(value)

    def _chat(self, session: WahaSession, chat_id: str) -> WahaChat:
        chat = session.chats.get(chat_id)
        if chat is None:
            name = session.names.get(chat_id)
            chat = session.chats[chat_id] = WahaChat(id=chat_id, name=name)
        return chat

    def _message(self, session: WahaSession, message_id: str) -> Json:
        msg = session.index.get(message_id)
        if msg is None:
            raise KeyError(f"no message {message_id!r} in session {session.name!r}")
        return msg

    def _alt(self, session: WahaSession, jid: str) -> str | None:
        """The other address form of a person (phone for a LID, LID for a phone), if known."""
        if jid.endswith("@lid"):
            return session.lids.get(jid)
        return session.pn_lids.get(jid)

    def _store(
        self,
        session: WahaSession,
        chat_id: str,
        content: Content,
        *,
        raw_id: str,
        ts: int,
        from_me: bool,
        sender: str | None,
        push_name: str | None,
        ack: int | None,
        source: str,
    ) -> Json:
        chat = self._chat(session, chat_id)
        group = chat_id.endswith("@g.us")
        author = None
        if group:
            author = session.me_id if from_me else sender or _first(chat.participants, chat_id)
        if push_name is None:
            who = session.me_id if from_me else author or chat_id
            push_name = session.push_name if from_me else session.push_names.get(who)
        msg = _Render(self, session, chat_id, content, raw_id, ts, from_me, author, push_name)
        built = msg.build(ack, source)
        chat.messages.append(built)
        if chat.last is None or ts >= chat.last["timestamp"]:
            chat.last = built
        if not from_me:
            chat.unread += 1
        session.order.append(built)
        session.index[built["id"]] = built
        if content.has_media:
            session.media[built["id"]] = content
        return built

    def _with_media(
        self, session: WahaSession, msg: Json, download: bool, base: str | None
    ) -> Json:
        content = session.media.get(msg["id"])
        if not download or content is None:
            return msg
        ext = _EXTENSIONS.get(content.mimetype or "", "bin")
        root = base or self.public_url
        out = dict(msg)
        out["media"] = {
            "url": f"{root}/api/files/{session.name}/{msg['id']}.{ext}",
            "mimetype": content.mimetype,
            "filename": content.filename,
            "error": None,
        }
        return out

    # -- HTTP: plumbing -------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        api = self._api
        return [
            Route("/ping", self._ping, methods=["GET"], name="ping"),
            api("/api/server/version", self._version, "GET", "server.version"),
            api("/api/version", self._version, "GET", "version"),
            api("/api/sessions", self._sessions_list, "GET", "sessions.list"),
            api("/api/sessions/{session}", self._session_get, "GET", "sessions.get"),
            api("/api/sessions/{session}", self._session_put, "PUT", "sessions.update"),
            api("/api/sessions/{session}/me", self._session_me, "GET", "sessions.me"),
            api("/api/sessions/{session}/start", self._session_start, "POST", "sessions.start"),
            api("/api/sessions/{session}/stop", self._session_stop, "POST", "sessions.stop"),
            api("/api/sessions/{session}/restart", self._restart, "POST", "sessions.restart"),
            api("/api/contacts/check-exists", self._check_exists, "GET", "contacts.check_exists"),
            api("/api/sendText", self._send_text, "POST", "send.text"),
            api("/api/sendImage", self._send_media("sendImage"), "POST", "send.image"),
            api("/api/sendFile", self._send_media("sendFile"), "POST", "send.file"),
            api("/api/sendVoice", self._send_media("sendVoice"), "POST", "send.voice"),
            api("/api/sendVideo", self._send_media("sendVideo"), "POST", "send.video"),
            api("/api/sendSeen", self._send_seen, "POST", "send.seen"),
            api("/api/files/{session}/{filename}", self._file, "GET", "files"),
            api("/api/{session}/chats/overview", self._overview_get, "GET", "chats.overview"),
            api(
                "/api/{session}/chats/overview", self._overview_post, "POST", "chats.overview.post"
            ),
            api("/api/{session}/chats/{chat_id}/messages", self._messages, "GET", "chats.messages"),
            api(
                "/api/{session}/chats/{chat_id}/messages/{message_id}",
                self._message_get,
                "GET",
                "chats.message",
            ),
            api("/api/{session}/lids", self._lids, "GET", "lids.list"),
            api("/api/{session}/lids/count", self._lids_count, "GET", "lids.count"),
            api("/api/{session}/lids/pn/{phone}", self._lid_by_pn, "GET", "lids.pn"),
            api("/api/{session}/lids/{lid}", self._lid_get, "GET", "lids.get"),
        ]

    def _api(
        self,
        path: str,
        handler: Callable[[Request], Awaitable[Response]],
        method: str,
        name: str,
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            self._check_key(request)
            return await handler(request)

        return Route(path, endpoint, methods=[method], name=name)

    def _check_key(self, request: Request) -> None:
        """waha.md §1: `X-Api-Key` header or `?x-api-key=`; 401 with NestJS' body."""
        if self.api_key is None:
            return
        given = request.headers.get("x-api-key") or request.query_params.get("x-api-key") or ""
        if not secrets.compare_digest(given.encode(), self.api_key.encode()):
            raise SimError(401, {"message": "Unauthorized", "statusCode": 401})

    def _known(self, name: str) -> WahaSession:
        session = self.sessions.get(name)
        if session is None:
            message = (
                f"We didn't find a session with name '{name}'.\n"
                f"Please start it first by using POST /api/sessions/{name}/start request"
            )
            raise SimError(404, _nest(404, message, "Not Found"))
        return session

    def _working(self, name: str) -> WahaSession:
        """waha.md §3: 422 with this exact body when the session is not WORKING.

        The real server first waits up to 15 s for WORKING; the simulator answers at once.
        """
        session = self._known(name)
        if session.status != "WORKING":
            body = {
                "error": NOT_WORKING,
                "session": name,
                "status": session.status,
                "expected": ["WORKING"],
            }
            raise SimError(422, body)
        session.activity_ms = int(self.clock() * 1000)
        return session

    def _store_required(self, session: WahaSession) -> None:
        store = (session.config.get("noweb") or {}).get("store") or {}
        if session.engine == "NOWEB" and not store.get("enabled"):
            message = (
                'Enable NOWEB store "config.noweb.store.enabled=True" and '
                '"config.noweb.store.full_sync=True" when starting a new session. '
                f"Read more: {DOCS_URL}docs/engines/noweb#store"
            )
            raise SimError(400, _nest(400, message, "Bad Request"))

    # -- HTTP: sessions and server --------------------------------------------------------------

    async def _ping(self, _request: Request) -> Response:
        return JSONResponse({"message": "pong"})

    async def _version(self, _request: Request) -> Response:
        browser = "/usr/bin/google-chrome-stable" if self.default_engine == "WEBJS" else None
        info = {"version": self.version, "engine": self.default_engine, "tier": self.tier}
        return JSONResponse({**info, "browser": browser})

    def _session_info(self, session: WahaSession) -> Json:
        return {
            "name": session.name,
            "status": session.status,
            "config": session.config,
            "me": session.me(),
            "presence": "online" if session.status == "WORKING" else None,
            "timestamps": {"activity": session.activity_ms},
            "engine": {"engine": session.engine},
        }

    async def _sessions_list(self, request: Request) -> Response:
        """waha.md §2: STOPPED sessions only with `all=true`."""
        everything = request.query_params.get("all", "").lower() in ("true", "1")
        listed = [
            self._session_info(s)
            for s in self.sessions.values()
            if everything or s.status != "STOPPED"
        ]
        return JSONResponse(listed)

    async def _session_get(self, request: Request) -> Response:
        name = request.path_params["session"]
        session = self.sessions.get(name)
        if session is None:
            raise SimError(404, _nest(404, "Session not found", "Not Found"))
        return JSONResponse(self._session_info(session))

    async def _session_me(self, request: Request) -> Response:
        return JSONResponse(self._known(request.path_params["session"]).me())

    async def _session_put(self, request: Request) -> Response:
        """waha.md §2: PUT replaces the whole config; a running session stops and starts."""
        name = request.path_params["session"]
        body = await read_json(request, _bad_request)
        if not isinstance(body, dict):
            raise _bad_request("body must be an object")
        config = body.get("config") or {}
        if not isinstance(config, dict):
            raise _bad_request("config must be an object")
        problems = _webhook_problems(config.get("webhooks") or [], self.version)
        if problems:
            raise _bad_request(*problems)
        session = self.sessions.get(name)
        if session is None:
            raise SimError(404, _nest(404, "Session not found", "Not Found"))
        session.config = config
        if session.status != "STOPPED":
            session.restarts += 1
        return JSONResponse({"name": name, "status": session.status, "config": config})

    async def _session_start(self, request: Request) -> Response:
        session = self._known(request.path_params["session"])
        if session.status in ("STOPPED", "FAILED"):
            session.status = "WORKING"
        return JSONResponse({"name": session.name, "status": session.status})

    async def _session_stop(self, request: Request) -> Response:
        session = self._known(request.path_params["session"])
        session.status = "STOPPED"
        return JSONResponse({"name": session.name, "status": session.status})

    async def _restart(self, request: Request) -> Response:
        session = self._known(request.path_params["session"])
        session.restarts += 1
        if session.status in ("STOPPED", "FAILED"):
            session.status = "WORKING"
        return JSONResponse({"name": session.name, "status": session.status})

    # -- HTTP: chats and messages ---------------------------------------------------------------

    async def _overview_get(self, request: Request) -> Response:
        session = self._working(request.path_params["session"])
        limit = _int_param(request, "limit", 20)
        offset = _int_param(request, "offset", 0)
        ids = request.query_params.getlist("ids")
        return JSONResponse(self._overview(session, limit, offset, ids))

    async def _overview_post(self, request: Request) -> Response:
        """`POST …/chats/overview`: `pagination` is required since 2026.5.1."""
        body = await read_json(request, _bad_request)
        pagination = body.get("pagination") if isinstance(body, dict) else None
        if not isinstance(pagination, dict):
            raise _bad_request("pagination should not be null or undefined")
        session = self._working(request.path_params["session"])
        ids = ((body.get("filter") or {}).get("ids")) or []
        limit, offset = int(pagination.get("limit", 20)), int(pagination.get("offset", 0))
        return JSONResponse(self._overview(session, limit, offset, ids))

    def _overview(
        self, session: WahaSession, limit: int, offset: int, ids: Sequence[str]
    ) -> list[Json]:
        self._store_required(session)
        wanted = {_cus(i) for i in ids}
        chats = [c for c in session.chats.values() if not wanted or c.id in wanted]
        chats.sort(key=lambda c: c.last["timestamp"] if c.last else -1, reverse=True)
        return [self._summary(session, c) for c in chats[offset : offset + limit]]

    def _summary(self, session: WahaSession, chat: WahaChat) -> Json:
        last = self._with_media(session, chat.last, False, None) if chat.last else None
        return {
            "id": chat.id,
            "name": chat.name,
            "picture": chat.picture,
            "lastMessage": last,
            "_chat": _raw_chat(session.engine, chat),
        }

    async def _messages(self, request: Request) -> Response:
        """waha.md §3 `GET /api/{session}/chats/{chatId}/messages`."""
        query = _MessageQuery.parse(request)
        session = self._working(request.path_params["session"])
        chat_id = _chat_param(request.path_params["chat_id"])
        if chat_id == "all" and session.engine == "WEBJS":
            message = (
                "Can not get messages from 'all' in WEBJS The method is not implemented by "
                f"'WEBJS' engine. Check the docs and try another engine: {DOCS_URL}"
            )
            raise SimError(501, _nest(501, message, "Not Implemented"))
        self._store_required(session)
        if chat_id == "all":
            found = list(session.order)
        else:
            chat = session.chats.get(chat_id)
            found = list(chat.messages) if chat else []
        if session.engine == "WEBJS":
            found += [{"timestamp": t, _NOTICE: True} for t in session.notices.get(chat_id, ())]
        # A notice only has a time: the window applies to it, the fromMe/ack filters do not.
        found = [
            m
            for m in sorted(found, key=_ts)
            if (query.in_window(m) if m.get(_NOTICE) else query.accepts(m))
        ]
        if query.descending or session.engine == "WEBJS":  # WEBJS: always newest first
            found.reverse()
        # WEBJS takes `limit` rows from the browser store, then skips notification rows: a
        # page comes back short before the end (waha.md 3, "increase offset always by limit,
        # even if you get less messages").
        page = [m for m in found[query.offset : query.offset + query.limit] if not m.get(_NOTICE)]
        base = str(request.base_url).rstrip("/")
        return JSONResponse([self._with_media(session, m, query.download, base) for m in page])

    async def _message_get(self, request: Request) -> Response:
        session = self._working(request.path_params["session"])
        wanted = request.path_params["message_id"]
        download = _bool_param(request, "downloadMedia")
        for msg in session.order:
            if msg["id"] == wanted or msg["id"].split("_")[2:3] == [wanted]:
                base = str(request.base_url).rstrip("/")
                return JSONResponse(self._with_media(session, msg, download is not False, base))
        raise SimError(404, _nest(404, "Message not found", "Not Found"))

    async def _file(self, request: Request) -> Response:
        """waha.md §7: `GET /api/files/{session}/{messageId}.{ext}`."""
        session = self._known(request.path_params["session"])
        message_id = request.path_params["filename"].rsplit(".", 1)[0]
        content = session.media.get(message_id)
        if content is None:
            raise SimError(404, _nest(404, "File not found", "Not Found"))
        data = hashlib.sha256(message_id.encode()).digest() * 8
        return Response(data, media_type=content.mimetype or "application/octet-stream")

    # -- HTTP: lids and contacts ----------------------------------------------------------------

    async def _lids(self, request: Request) -> Response:
        session = self._working(request.path_params["session"])
        limit = _int_param(request, "limit", 100)
        offset = _int_param(request, "offset", 0)
        known = sorted((lid, pn) for lid, pn in session.lids.items() if pn)
        page = known[offset : offset + limit]
        return JSONResponse([{"lid": lid, "pn": pn} for lid, pn in page])

    async def _lids_count(self, request: Request) -> Response:
        session = self._working(request.path_params["session"])
        return JSONResponse({"count": sum(1 for pn in session.lids.values() if pn)})

    async def _lid_get(self, request: Request) -> Response:
        """waha.md §8: a bare number gets `@lid`; any other server is a 422."""
        session = self._working(request.path_params["session"])
        lid = request.path_params["lid"]
        if "@" not in lid:
            lid = f"{lid}@lid"
        if not lid.endswith("@lid"):
            raise SimError(422, _nest(422, f"Invalid LID '{lid}'", "Unprocessable Entity"))
        return JSONResponse({"lid": lid, "pn": session.lids.get(lid)})

    async def _lid_by_pn(self, request: Request) -> Response:
        session = self._working(request.path_params["session"])
        pn = f"{digits_of(request.path_params['phone'])}@c.us"
        return JSONResponse({"lid": session.pn_lids.get(pn), "pn": pn})

    async def _check_exists(self, request: Request) -> Response:
        """waha.md §6: absent numbers have no `chatId` (WEBJS, NOWEB) or `chatId: null` (GOWS)."""
        phone = request.query_params.get("phone")
        name = request.query_params.get("session")
        if not phone or not name:
            raise _bad_request("phone should not be empty", "session should not be empty")
        session = self._working(name)
        registered = self.directory.lookup(digits_of(phone))
        if registered:
            return JSONResponse({"numberExists": True, "chatId": f"{registered}@c.us"})
        absent: Json = {"numberExists": False}
        if session.engine == "GOWS":
            absent["chatId"] = None
        return JSONResponse(absent)

    # -- HTTP: sending --------------------------------------------------------------------------

    async def _send_text(self, request: Request) -> Response:
        body = await self._send_body(request, "text")
        with self._record("sendText", body) as record:
            session = self._working(str(body.get("session") or "default"))
            reply_to = body.get("reply_to")
            result = self._send(session, body, _text(str(body["text"])), reply_to)
        return self._sent(record, result)

    def _send_media(self, endpoint: str) -> Callable[[Request], Awaitable[Response]]:
        kind = _SEND_KINDS[endpoint]

        async def handler(request: Request) -> Response:
            body = await self._send_body(request, "file", convert=kind in ("voice", "video"))
            with self._record(endpoint, body) as record:
                session = self._working(str(body.get("session") or "default"))
                self._plus_only(session, endpoint)
                file = body["file"]
                content = media(
                    kind,
                    caption=body.get("caption"),
                    filename=file.get("filename"),
                    mimetype=file.get("mimetype"),
                )
                result = self._send(session, body, content, body.get("reply_to"))
            return self._sent(record, result)

        return handler

    async def _send_seen(self, request: Request) -> Response:
        body = await self._send_body(request, None)
        session = self._working(str(body.get("session") or "default"))
        self.seen.append(body)
        chat = session.chats.get(self._send_chat_id(str(body["chatId"])))
        if chat is not None:
            chat.unread = 0
        return JSONResponse({}, status_code=201)

    async def _send_body(
        self, request: Request, field_name: str | None, *, convert: bool = False
    ) -> Json:
        body = await read_json(request, _bad_request)
        if not isinstance(body, dict):
            raise _bad_request("body must be an object")
        problems = []
        if not isinstance(body.get("chatId"), str) or not body["chatId"]:
            problems.append("chatId should not be empty")
        if field_name == "text" and not isinstance(body.get("text"), str):
            problems.append("text must be a string")
        if field_name == "file":
            file = body.get("file")
            if not isinstance(file, dict) or not (file.get("url") or file.get("data")):
                problems.append("file must contain either url or data")
        if convert and not isinstance(body.get("convert"), bool):
            problems.append("convert must be a boolean value")
        if problems:
            raise _bad_request(*problems)
        return body

    def _record(self, route: str, body: Json) -> contextlib.AbstractContextManager[SentRequest]:
        return self.record_send(route, str(body.get("session") or "default"), body)

    def _sent(self, record: SentRequest, result: tuple[str, Json]) -> Response:
        record.status, record.message_id = 201, result[0]
        return JSONResponse(result[1], status_code=201)

    def _plus_only(self, session: WahaSession, endpoint: str) -> None:
        """waha.md version notes: media sends were Plus-only in Core before 2026.6.1 (422)."""
        if self.tier == "CORE" and _version_tuple(self.version) < (2026, 6, 1):
            message = (
                f"The feature is available only in Plus version for '{session.engine}' engine. "
                f"Check this out: {DOCS_URL}"
            )
            raise SimError(422, _nest(422, message, "Unprocessable Entity"))

    def _send_chat_id(self, chat_id: str) -> str:
        return f"{digits_of(chat_id)}@c.us" if "@" not in chat_id else _cus(chat_id)

    def _send(
        self, session: WahaSession, body: Json, content: Content, reply_to: Any
    ) -> tuple[str, Json]:
        """Store an API send as a fromMe message; the engine-specific 201 body (waha.md §6)."""
        chat_id = self._send_chat_id(str(body["chatId"]))
        raw = raw_message_id(self.rng, "web")
        ts = int(self.clock())
        msg = self._store(
            session,
            chat_id,
            content,
            raw_id=raw,
            ts=ts,
            from_me=True,
            sender=None,
            push_name=None,
            ack=1,
            source="api",
        )
        if reply_to:
            target = session.index.get(str(reply_to))
            msg["replyTo"] = {"id": str(reply_to), "body": target["body"] if target else None}
        return str(msg["id"]), _send_response(session, msg, content, chat_id, raw, ts, self.rng)


def _text(body: str) -> Content:
    return text(body)


def _first(participants: Sequence[str], group_id: str) -> str:
    """The default author of an incoming group message: the first participant."""
    if not participants:
        raise ValueError(f"group {group_id!r} has no participants: pass sender=")
    return participants[0]


_NOTICE = "_wasync_sim_notice"


def _ts(msg: Json) -> int:
    return int(msg["timestamp"])


def _subscribed(events: Sequence[str], event: str) -> bool:
    if event in events:
        return True
    return "*" in events and event not in ("state.change", "engine.event")


def _webhook_problems(webhooks: Any, version: str) -> list[str]:
    if not isinstance(webhooks, list):
        return ["config.webhooks must be an array"]
    problems = []
    allowed = set(EVENTS) | {"*"}
    if _version_tuple(version) < (2025, 12, 2):  # waha.md 4: group acks split off then
        allowed.discard("message.ack.group")
    for i, hook in enumerate(webhooks):
        url = hook.get("url") if isinstance(hook, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.append(f"config.webhooks.{i}.url must be a URL address")
        events = hook.get("events") if isinstance(hook, dict) else None
        if not isinstance(events, list) or not events:
            problems.append(f"config.webhooks.{i}.events should not be empty")
        elif any(e not in allowed for e in events):
            problems.append(f"config.webhooks.{i}.each value in events must be a known event")
    return problems


def _chat_param(raw: str) -> str:
    """`{chatId}`: `all`, a jid (`%40` already decoded) or a bare phone number."""
    if raw == "all":
        return raw
    if "@" not in raw:
        return f"{digits_of(raw)}@c.us"
    return _cus(raw)


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise _bad_request(
            f"{name} must be a number conforming to the specified constraints"
        ) from None


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise _bad_request(f"{name} must be a boolean value")


@dataclass(frozen=True, slots=True, kw_only=True)
class _MessageQuery:
    """The query of `GET …/messages` (waha.md §3)."""

    limit: int
    offset: int
    descending: bool
    download: bool
    gte: float | None
    lte: float | None
    from_me: bool | None
    ack: int | None

    @classmethod
    def parse(cls, request: Request) -> _MessageQuery:
        params = request.query_params
        order = params.get("sortOrder", "desc").lower()
        if order not in ("asc", "desc"):
            raise _bad_request("sortOrder must be one of the following values: desc, asc")
        ack_name = params.get("filter.ack")
        acks = {name: value for value, name in ACK_NAMES.items()}
        if ack_name is not None and ack_name not in acks:
            raise _bad_request("filter.ack must be one of the following values: " + ", ".join(acks))
        return cls(
            limit=_int_param(request, "limit", 10),
            offset=_int_param(request, "offset", 0),
            descending=order == "desc",
            download=_bool_param(request, "downloadMedia") is not False,
            gte=_float_param(request, "filter.timestamp.gte"),
            lte=_float_param(request, "filter.timestamp.lte"),
            from_me=_bool_param(request, "filter.fromMe"),
            ack=acks[ack_name] if ack_name is not None else None,
        )

    def in_window(self, msg: Json) -> bool:
        """Inclusive timestamp bounds (seconds)."""
        ts = msg["timestamp"]
        return (self.gte is None or ts >= self.gte) and (self.lte is None or ts <= self.lte)

    def accepts(self, msg: Json) -> bool:
        """Inclusive timestamp bounds (seconds), fromMe and ack filters."""
        if not self.in_window(msg):
            return False
        if self.from_me is not None and msg["fromMe"] is not self.from_me:
            return False
        return self.ack is None or msg["ack"] == self.ack


def _float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise _bad_request(
            f"{name} must be a number conforming to the specified constraints"
        ) from None


def _raw_chat(engine: str, chat: WahaChat) -> Json:
    """`ChatSummary._chat`: the engine's own chat object (shape differs per engine)."""
    last_ts = chat.last["timestamp"] if chat.last else None
    if engine == "WEBJS":
        user, _, server = chat.id.partition("@")
        return {
            "id": {"server": server, "user": user, "_serialized": chat.id},
            "name": chat.name,
            "isGroup": server == "g.us",
            "unreadCount": chat.unread,
            "timestamp": last_ts,
            "archived": False,
            "pinned": False,
        }
    key = "id" if engine == "NOWEB" else "jid"
    return {
        key: _swa(chat.id),
        "name": chat.name,
        "conversationTimestamp": last_ts,
        "unreadCount": chat.unread,
    }


class _Render:
    """Builds one `WAMessage` dict the way each engine's `toWAMessage` does (waha.md §3)."""

    def __init__(
        self,
        sim: WahaSim,
        session: WahaSession,
        chat_id: str,
        content: Content,
        raw_id: str,
        ts: int,
        from_me: bool,
        author: str | None,
        push_name: str | None,
    ) -> None:
        self.sim, self.session, self.chat_id, self.content = sim, session, chat_id, content
        self.raw_id, self.ts, self.from_me, self.author = raw_id, ts, from_me, author
        self.push_name = push_name
        self.group = chat_id.endswith("@g.us")
        suffix = f"_{author}" if self.group and author else ""
        self.id = f"{'true' if from_me else 'false'}_{chat_id}_{raw_id}{suffix}"

    def build(self, ack: int | None, source: str) -> Json:
        engine = self.session.engine
        if ack is None and not self.from_me:
            ack = None if engine == "NOWEB" else 2
        content = self.content
        body = content.text if content.kind in ("text", "image", "video", "document") else None
        msg: Json = {"id": self.id, "timestamp": self.ts}
        msg.update(self._from_to())
        msg.update(
            body=body,
            hasMedia=content.has_media,
            media=None,
            ack=ack,
            ackName=ACK_NAMES.get(ack, "UNKNOWN") if ack is not None else "UNKNOWN",
            location=self._location(),
            vCards=[content.vcard] if content.vcard else [],
            replyTo=None,
            source=source,
        )
        msg["_data"] = self._data(ack)
        return msg

    def _from_to(self) -> Json:
        engine, chat, me = self.session.engine, self.chat_id, self.session.me_id
        if engine == "NOWEB":
            out: Json = {"from": chat, "fromMe": self.from_me}
            if self.group:
                out.update(to=chat, participant=self.author)
            return out
        if engine == "GOWS":
            author = self.author if self.group else None
            return {"from": chat, "fromMe": self.from_me, "to": author, "participant": author}
        sender, recipient = (me, chat) if self.from_me else (chat, me)
        participant = self.author if self.group else None
        return {"from": sender, "fromMe": self.from_me, "to": recipient, "participant": participant}

    def _location(self) -> Json | None:
        content = self.content
        if content.kind != "location":
            return None
        return {
            "latitude": content.latitude,
            "longitude": content.longitude,
            "live": False,
            "name": content.place,
            "address": content.place,
        }

    def _proto(self) -> Json:
        key = None
        if self.content.kind == "reaction":
            key = {
                "remoteJid": _swa(self.chat_id),
                "fromMe": self.content.reaction_to_from_me,
                "id": self.content.reaction_to,
            }
        return dict(wa_proto(self.content, ts=self.ts, rng=self.sim.rng, reaction_key=key))

    def _data(self, ack: int | None) -> Json:
        engine = self.session.engine
        if engine == "NOWEB":
            return self._noweb()
        if engine == "GOWS":
            return self._gows()
        return self._webjs(ack)

    def _alt(self) -> tuple[str | None, str | None]:
        """(person, their other address form) for the chat (DM) or the group author."""
        who = self.author if self.group else self.chat_id
        if who is None or who == self.session.me_id:
            return who, None
        return who, self.sim._alt(self.session, who)

    def _noweb(self) -> Json:
        key: Json = {"remoteJid": _swa(self.chat_id), "fromMe": self.from_me, "id": self.raw_id}
        who, alt = self._alt()
        if self.group and self.author:
            key["participant"] = _swa(self.author)
            if alt:
                key["participantAlt"] = _swa(alt)
        elif alt:
            key["remoteJidAlt"] = _swa(alt)
        if alt and who:
            key["addressingMode"] = "lid" if who.endswith("@lid") else "pn"
        return {
            "key": key,
            "messageTimestamp": self.ts,
            "pushName": self.push_name,
            "broadcast": False,
            "message": self._proto(),
        }

    def _gows(self) -> Json:
        who, alt = self._alt()
        me = f"{self.session.phone}@s.whatsapp.net"
        sender = me if self.from_me else _swa(who or self.chat_id)
        kind = self.content.kind
        info = {
            "Chat": _swa(self.chat_id),
            "Sender": sender,
            "IsFromMe": self.from_me,
            "IsGroup": self.group,
            "AddressingMode": ("lid" if (who or "").endswith("@lid") else "pn") if alt else "",
            "SenderAlt": _swa(alt) if alt and not self.from_me else "",
            "RecipientAlt": _swa(alt) if alt and self.from_me else "",
            "BroadcastListOwner": "",
            "BroadcastRecipients": None,
            "ID": self.raw_id,
            "ServerID": 0,
            "Type": "text" if kind == "text" else "reaction" if kind == "reaction" else "media",
            "PushName": self.push_name or "",
            "Timestamp": datetime.fromtimestamp(self.ts, UTC).isoformat().replace("+00:00", "Z"),
            "Category": "",
            "Multicast": False,
            "MediaType": "" if kind in ("text", "reaction") else _WEBJS_TYPES[kind],
            "Edit": "",
        }
        return {"Info": info, "Message": self._proto(), "IsEphemeral": False, "IsViewOnce": False}

    def _webjs(self, ack: int | None) -> Json:
        content = self.content
        me = self.session.me_id
        sender, recipient = (me, self.chat_id) if self.from_me else (self.chat_id, me)
        ident: Json = {
            "fromMe": self.from_me,
            "remote": self.chat_id,
            "id": self.raw_id,
            "_serialized": self.id,
        }
        if self.group and self.author:
            ident["participant"] = self.author
        data: Json = {
            "id": ident,
            "viewed": False,
            "body": content.vcard if content.kind == "contact" else content.text or "",
            "type": _WEBJS_TYPES[content.kind],
            "t": self.ts,
            "notifyName": self.push_name or "",
            "from": sender,
            "to": recipient,
            "author": self.author if self.group else None,
            "ack": ack,
            "isNewMsg": True,
            "star": False,
            "broadcast": False,
            "isForwarded": False,
            "mentionedJidList": [],
        }
        if content.has_media:
            data.update(mimetype=content.mimetype, filename=content.filename, size=content.size)
            if content.text:
                data["caption"] = content.text
        if content.kind == "location":
            data.update(lat=content.latitude, lng=content.longitude, loc=content.place)
        return data


def _send_response(
    session: WahaSession,
    msg: Json,
    content: Content,
    chat_id: str,
    raw_id: str,
    ts: int,
    rng: random.Random,
) -> Json:
    """The 201 body of a send: engine-specific, not the OAS `WAMessage` (waha.md §6, #760)."""
    if session.engine == "NOWEB":
        proto: Json = dict(wa_proto(content, ts=ts, rng=rng))
        if content.kind == "text":
            proto = {"extendedTextMessage": {"text": content.text}}
        return {
            "key": {"remoteJid": _swa(chat_id), "fromMe": True, "id": raw_id},
            "message": proto,
            "messageTimestamp": str(ts),
            "status": "PENDING",
        }
    if session.engine == "GOWS":
        return {"id": f"true_{chat_id}_{raw_id}", "_data": dict(wa_proto(content, ts=ts, rng=rng))}
    serialized = f"true_{chat_id}_{raw_id}"  # no participant suffix for groups (#1464)
    data = copy.deepcopy(msg["_data"])
    data["id"]["_serialized"] = serialized
    data.pop("author", None)
    return {
        "_data": data,
        "id": {"fromMe": True, "remote": chat_id, "id": raw_id, "_serialized": serialized},
        "ack": 0,
        "hasMedia": content.has_media,
        "body": data["body"],
        "type": data["type"],
        "timestamp": ts,
        "from": session.me_id,
        "to": chat_id,
        "deviceType": "web",
        "isForwarded": False,
        "forwardingScore": 0,
        "isStatus": False,
        "isStarred": False,
        "fromMe": True,
        "hasQuotedMsg": msg["replyTo"] is not None,
        "hasReaction": False,
        "vCards": [],
        "mentionedIds": [],
        "groupMentions": [],
        "isGif": False,
        "links": [],
    }
