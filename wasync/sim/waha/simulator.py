"""`WahaSim`: the WAHA simulator's public face, building a world (sessions, contacts,
messages, acks), reading it back, and delivering its webhooks."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx

from wasync.sim.base import Delivery, Json
from wasync.sim.content import Content, raw_message_id
from wasync.sim.content import text as text_content
from wasync.sim.directory import digits_of
from wasync.sim.faults import Faults
from wasync.sim.files import file_bytes
from wasync.sim.waha.guard import error_body, not_found
from wasync.sim.waha.hooks import post_event
from wasync.sim.waha.phone import PhoneActions
from wasync.sim.waha.routes import routes
from wasync.sim.waha.session import ACK_NAMES, ENGINES, STATUSES, WahaSession, msg_ts


class WahaSim(PhoneActions):
    """A WAHA server with several sessions, served by `.app` (a Starlette app).

    `api_key=None` disables the key check (like `WAHA_NO_API_KEY`). `http` is the client used
    by `deliver()`. `clock` gives the current time in seconds (time is a parameter in tests).
    `files_lifetime_s` deletes a downloaded file that long after WAHA saved it
    (`WHATSAPP_FILES_LIFETIME`, 180 s in WAHA; None keeps files, the simulator's default);
    a share of downloads fails with `Faults(routes=DOWNLOAD_ROUTES, ...)`.

    `head_ties="first"`: the chats overview shows the first stored of the messages sharing a
    chat's newest second, not the newest (a chat list that does not break ties).
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
        files_lifetime_s: float | None = None,
        head_ties: str = "newest",
    ) -> None:
        super().__init__(
            api_key=api_key,
            version=version,
            tier=tier,
            default_engine=default_engine,
            seed=seed,
            http=http,
            public_url=public_url,
            clock=clock,
            faults=faults,
            files_lifetime_s=files_lifetime_s,
            head_ties=head_ties,
        )
        self._build_app(routes(self), error_body=error_body, not_found=not_found)

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
        chat = self.session(target).chat(group_id)
        chat.name = subject
        chat.participants = [self.address(p) for p in participants]

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
        msg = self.store(
            session,
            self.address(chat),
            content,
            raw_id=raw,
            ts=when,
            from_me=from_me,
            sender=self.address(sender) if sender else None,
            push_name=push_name,
            ack=ack,
            source="app",
        )
        return str(msg["id"])

    def add_outgoing(self, session: str, chat: str, *, text: str, ts: int | None = None) -> str:
        """Append a message we typed on the phone (fromMe, source `app`)."""
        return self.add_message(session, chat, text_content(text), from_me=True, ts=ts, ack=1)

    def add_notification(self, session: str, chat: str, *, ts: int | None = None) -> None:
        """A WEBJS notification row (e2e change, group event) in `chat`: never listed, but it
        takes a place in the page it falls in (waha.md 3)."""
        sess = self.session(session)
        when = int(self.clock()) if ts is None else ts
        sess.notices.setdefault(self.address(chat), []).append(when)

    def set_ack(self, session: str, message_id: str, ack: int) -> Json:
        """Change a message's ack; returns the `message.ack` payload to `deliver()`."""
        sess = self.session(session)
        msg = sess.message(message_id)
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

    def all_messages(self, session: str) -> list[Json]:
        """Every stored `WAMessage` of a session (copies), oldest first."""
        sess = self.session(session)
        return copy.deepcopy(sorted(sess.order, key=msg_ts))

    def chat_messages(self, session: str, chat_id: str) -> list[Json]:
        """The stored messages of one chat (copies), oldest first."""
        chat = self.session(session).chats.get(chat_id)
        return copy.deepcopy(sorted(chat.messages, key=msg_ts)) if chat else []

    def get_message(self, session: str, message_id: str) -> Json:
        """One stored message (a copy) by its WAHA id."""
        return copy.deepcopy(self.session(session).message(message_id))

    def media_bytes(self, session: str, message_id: str) -> bytes:
        """The bytes of a message's file, as its URL serves them (the ground truth)."""
        return file_bytes(self.session(session).media[message_id], message_id)

    def lose_media(self, session: str, message_id: str) -> None:
        """WhatsApp no longer has the file: downloads answer `media.error`, URLs 404."""
        self.session(session).lost.add(message_id)

    def glitch_media(self, session: str, message_id: str, *, times: int = 1) -> None:
        """The next `times` downloads of the file answer `media.error` (WAHA's storage
        refused the connection), then it downloads again."""
        self.session(session).glitches[message_id] = times

    def webhook_payload(self, session: str, message_id: str) -> Json:
        """The `message`/`message.any` payload for a stored message, media already downloaded
        (WAHA downloads before emitting, waha.md §4)."""
        sess = self.session(session)
        return copy.deepcopy(self.with_media(sess, sess.message(message_id), True, None))

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
        the first try); `delay_s` overrides the configured delay (0 in tests). Nothing is sent
        for a session whose webhooks are muted (`mute_webhooks`).
        """
        sess = self.session(session)
        client = self.webhook_client(http)
        if session in self.muted:  # `mute_webhooks`: the session is WORKING, its hooks silent
            return []
        return await post_event(self, sess, event, payload, client=client, delay_s=delay_s)

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
