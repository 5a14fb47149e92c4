"""The Evolution simulator's state: its configuration, the instances, who is on WhatsApp, and
the row store every way in (set-up, API sends) writes through."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import httpx

from wasync.sim.base import Json, Simulator
from wasync.sim.content import PROTO_KEYS, Content, cuid, device_of, wa_proto
from wasync.sim.directory import digits_of
from wasync.sim.evolution.instance import EvoInstance, create_jid
from wasync.sim.evolution.render import message_key
from wasync.sim.faults import Faults


class EvolutionState(Simulator):
    """Configuration, instances and storage of an `EvolutionSim`; handlers and webhooks read it."""

    def __init__(
        self,
        *,
        api_key: str,
        server_url: str,
        version: str,
        seed: int,
        http: httpx.AsyncClient | None,
        clock: Callable[[], float],
        tz_offset_s: int,
        expose_token: bool,
        webhook_max_attempts: int,
        webhook_delay_s: float,
        empty_or_matches_nothing: bool,
        faults: Faults | None,
        media_lifetime_s: float | None = None,
    ) -> None:
        super().__init__(seed=seed, http=http, clock=clock, faults=faults)
        self.media_lifetime_s = media_lifetime_s
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

    def instance(self, name: str) -> EvoInstance:
        """The live state of an instance (KeyError when unknown)."""
        return self.instances[name]

    def address(self, value: str) -> str:
        """Phone digits become the registered `@s.whatsapp.net` jid; `@c.us` is converted."""
        if "@" not in value:
            digits = digits_of(value)
            return f"{self.directory.lookup(digits) or digits}@s.whatsapp.net"
        user, _, server = value.partition("@")
        return f"{user}@s.whatsapp.net" if server == "c.us" else value

    def store(
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
        """Store a message row as Evolution writes it (its contact too, for a new chat)."""
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
            "key": message_key(inst, jid, raw_id, from_me, author),
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
        if content.has_media:
            inst.media[raw_id] = content
            inst.media_born[raw_id] = self.clock()
        if jid not in inst.contacts and not group:
            inst.contacts[jid] = {
                "id": cuid(self.rng),
                "remoteJid": jid,
                "pushName": push_name,
                "profilePicUrl": None,
            }
        return row

    def media_alive(self, inst: EvoInstance, key_id: str) -> bool:
        """Whether WhatsApp still has the file: not lost, and younger than the lifetime
        (None: forever, the simulator's default)."""
        if key_id in inst.lost or key_id not in inst.media:
            return False
        if self.media_lifetime_s is None:
            return True
        return self.clock() - inst.media_born[key_id] <= self.media_lifetime_s

    def lookup(self, inst: EvoInstance, number: str) -> tuple[bool, str]:
        """(on WhatsApp?, jid) for a number, group or LID as `whatsappNumbers` answers it."""
        if number.endswith("@g.us"):
            return number in inst.groups, number
        if number.endswith("@lid"):
            return True, number
        jid = create_jid(number)
        registered = self.directory.lookup(digits_of(jid))
        if registered is None:
            return False, jid
        return True, f"{registered}@s.whatsapp.net"
