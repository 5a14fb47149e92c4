"""`EvolutionSim`: the Evolution simulator's public face, building a world (instances,
contacts, rows, statuses, edits), reading it back, and delivering its webhooks."""

from __future__ import annotations

import base64
import copy
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from wasync.sim.base import Delivery, Json
from wasync.sim.content import Content, cuid, raw_message_id
from wasync.sim.content import reaction as reaction_content
from wasync.sim.content import text as text_content
from wasync.sim.directory import digits_of
from wasync.sim.evolution.guard import error_body, not_found
from wasync.sim.evolution.hooks import post_event
from wasync.sim.evolution.instance import STATES, STATUS_NAMES, EvoInstance, iso
from wasync.sim.evolution.render import FIND_MESSAGE_FIELDS, prepared, project
from wasync.sim.evolution.routes import routes
from wasync.sim.evolution.state import EvolutionState
from wasync.sim.faults import Faults
from wasync.sim.files import file_bytes

_STATUS_CHAIN = ("SERVER_ACK", "DELIVERY_ACK", "READ", "PLAYED")


class EvolutionSim(EvolutionState):
    """An Evolution API server with several instances, served by `.app` (a Starlette app).

    `api_key` is the global key (`AUTHENTICATION_API_KEY`); each instance also accepts its own
    token. `http` is the client used by `deliver()`; `tz_offset_s` is the server's local time
    offset that leaks into `date_time` (Docker image: America/Sao_Paulo, -3 h).
    `media_lifetime_s` makes a file undownloadable that long after it was stored (the CDN
    copy expired; None keeps files, the default); a share of downloads fails with
    `Faults(routes=DOWNLOAD_ROUTES, ...)`, one file's next few with `glitch_media`.
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
        media_lifetime_s: float | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            server_url=server_url,
            version=version,
            seed=seed,
            http=http,
            clock=clock,
            tz_offset_s=tz_offset_s,
            expose_token=expose_token,
            webhook_max_attempts=webhook_max_attempts,
            webhook_delay_s=webhook_delay_s,
            empty_or_matches_nothing=empty_or_matches_nothing,
            faults=faults,
            media_lifetime_s=media_lifetime_s,
        )
        self._build_app(routes(self), error_body=error_body, not_found=not_found)

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
            created_at=iso(self.clock()),
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
        instance.groups[group_id] = [self.address(p) for p in participants]
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
        jid = self.address(chat)
        author = self.address(sender) if sender else None
        status = "SERVER_ACK" if from_me else "DELIVERY_ACK"
        row = self.store(
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
                _record_status(row, name)
        return raw

    def add_outgoing(self, instance: str, chat: str, *, text: str, ts: int | None = None) -> str:
        """Append a message we typed on the phone (`fromMe`, `SERVER_ACK`)."""
        return self.add_message(instance, chat, text_content(text), from_me=True, ts=ts)

    def set_status(self, instance: str, key_id: str, status: str | int) -> Json:
        """Record a delivery status; returns the `messages.update` data to `deliver()`.

        A `MessageUpdate` row always; the row's own `status` only for a message that is not
        ours: Evolution updates that column only `if (!key.fromMe)` (2.3.6 and 2.3.7
        `whatsapp.baileys.service.ts` messages.update), so `findChats`' `lastMessage.status`
        of our own message never moves."""
        inst = self.instance(instance)
        row = inst.row(key_id)
        name = STATUS_NAMES[status] if isinstance(status, int) else status
        _record_status(row, name)
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
        new text, `messageTimestamp` the edit time, and a `MessageUpdate` row says EDITED;
        2.3.0-2.3.4 add a `DELETED` one (the edit's statusless update), 2.3.7 `SERVER_ACK`.
        Before 2.3.0 the row stays as it was, beside an update row with no status."""
        row = self.instance(instance).row(key_id)
        version = self._version()
        if version < (2, 3, 0):
            row["MessageUpdate"].append({"status": None})
            return
        row["message"] = {"conversation": text}
        row["messageType"] = "conversation"
        row["messageTimestamp"] = int(self.clock()) if ts is None else ts
        row["MessageUpdate"].append({"status": "EDITED"})
        if (2, 3, 0) <= version <= (2, 3, 4) or version >= (2, 3, 7):
            row["MessageUpdate"].append({"status": _fallback(version)})

    def revoke_message(self, instance: str, key_id: str) -> list[tuple[str, Json]]:
        """A delete for everyone made on a phone, as Evolution stores it: a `MessageUpdate`
        row `DELETED` (`SERVER_ACK` from 2.3.7: no trace); from 2.3.1 its REVOKE protocol
        message also takes the edit's path in `messages.upsert` (the row's time becomes the
        delete's, an `EDITED` update row). Returns the webhooks it sends: `messages.edited`
        (that protocol message, from 2.3.1) and `messages.delete` (the raw key; with
        `status` from 2.3.7)."""
        row = self.instance(instance).row(key_id)
        version = self._version()
        row["MessageUpdate"].append({"status": _fallback(version)})
        if version >= (2, 3, 1):
            row["messageTimestamp"] = int(self.clock())
            row["MessageUpdate"].append({"status": "EDITED"})
        key = {k: v for k, v in row["key"].items() if k != "deleted"}
        hooks: list[tuple[str, Json]] = []
        if version >= (2, 3, 1):
            hooks.append(("messages.edited", {"key": dict(key), "type": "REVOKE"}))
        gone = {**key, "status": "DELETED"} if version >= (2, 3, 7) else key
        return [*hooks, ("messages.delete", gone)]

    def react(
        self,
        instance: str,
        key_id: str,
        emoji: str,
        *,
        from_me: bool = False,
        sender: str | None = None,
        ts: int | None = None,
    ) -> str:
        """A reaction to a stored row: Evolution stores it as a `reactionMessage` row of its
        own (messages.upsert keeps it); returns the reaction's `key.id`."""
        row = self.instance(instance).row(key_id)
        content = reaction_content(emoji, key_id, target_from_me=row["key"]["fromMe"])
        chat = row["key"]["remoteJid"]
        return self.add_message(instance, chat, content, from_me=from_me, ts=ts, sender=sender)

    def delete_message(self, instance: str, key_id: str) -> None:
        """An API delete with DATABASE_DELETE_MESSAGE on: the row stays, marked
        `key.deleted` and `status: DELETED` (evolution.md 4.4)."""
        row = self.instance(instance).row(key_id)
        row["key"]["deleted"] = True
        row["status"] = "DELETED"
        row["MessageUpdate"].append({"status": "DELETED"})

    # -- ground truth ---------------------------------------------------------------------------

    def all_messages(self, instance: str) -> list[Json]:
        """Every stored row (copies, as `findMessages` returns them), oldest first."""
        rows = sorted(self.instance(instance).messages, key=_ts)
        return [copy.deepcopy(project(r, FIND_MESSAGE_FIELDS)) for r in rows]

    def get_message(self, instance: str, key_id: str) -> Json:
        """One stored row (a copy, `findMessages` shape) by its `key.id`."""
        return copy.deepcopy(project(self.instance(instance).row(key_id), FIND_MESSAGE_FIELDS))

    def upsert_payload(self, instance: str, key_id: str) -> Json:
        """`data` of the `messages.upsert` (or `send.message`) webhook for a stored row.

        2.3.7 rewrites an `@lid` `remoteJid` to `remoteJidAlt` just before the webhook while the
        row keeps the LID (evolution.md §7.2). With the webhook's `base64` on, the file rides
        along in `message.base64` (evolution.md §3.1).
        """
        inst = self.instance(instance)
        data = copy.deepcopy(prepared(inst.row(key_id), lid_rewrite=self._lid_rewrite()))
        inline = bool((inst.webhook or {}).get("webhookBase64"))
        if inline and key_id in inst.media and self.media_alive(inst, key_id):
            raw = file_bytes(inst.media[key_id], key_id)
            data["message"]["base64"] = base64.b64encode(raw).decode()
        return data

    def media_bytes(self, instance: str, key_id: str) -> bytes:
        """The bytes of a row's file, as `getBase64FromMediaMessage` decodes (ground truth)."""
        return file_bytes(self.instance(instance).media[key_id], key_id)

    def lose_media(self, instance: str, key_id: str) -> None:
        """WhatsApp no longer has the file: `getBase64FromMediaMessage` answers 400
        `Error: Failed to fetch stream from https://mmg.whatsapp.net/...`."""
        self.instance(instance).lost.add(key_id)

    def glitch_media(
        self, instance: str, key_id: str, *, times: int = 1, error: str | None = None
    ) -> None:
        """The next `times` downloads of the file answer 400 with `error`, by default as a
        lost file does (a network or CDN hiccup looks no different), then it downloads."""
        self.instance(instance).glitches[key_id] = [error] * times

    def _version(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split("-")[0].split(".")[:3] if p.isdigit())

    def _lid_rewrite(self) -> bool:
        parts = self._version()
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
        400/401/403/404/422 stop at once (evolution.md §3.4). None when nothing was sent (also
        while the instance's webhooks are muted, `mute_webhooks`).
        """
        inst = self.instance(instance)
        client = self.webhook_client(http)
        if instance in self.muted:  # `mute_webhooks`: the instance is open, its hooks silent
            return None
        return await post_event(self, inst, event, data, client=client, delay_s=delay_s)

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


def _ts(row: Json) -> int:
    return int(row["messageTimestamp"])


def _fallback(version: tuple[int, ...]) -> str:
    """The status `messages.update` records when Baileys gives none (a revoke, an edit)."""
    return "SERVER_ACK" if version >= (2, 3, 7) else "DELETED"


def _record_status(row: Json, name: str) -> None:
    """A status as Evolution records it (see `EvolutionSim.set_status`)."""
    row["MessageUpdate"].append({"status": name})
    if not row["key"]["fromMe"]:
        row["status"] = name
