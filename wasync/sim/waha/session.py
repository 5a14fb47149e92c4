"""What one WAHA session holds (account, config, chats, messages, contacts) and the two jid
forms WAHA uses (`@c.us` outside, `@s.whatsapp.net` inside the engines)."""

from __future__ import annotations

from dataclasses import dataclass, field

from wasync.sim.base import Json
from wasync.sim.content import Content

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


def cus(jid: str) -> str:
    """WAHA's public form of a jid: `@s.whatsapp.net` becomes `@c.us`."""
    user, _, server = jid.partition("@")
    return f"{user}@c.us" if server == "s.whatsapp.net" else jid


def swa(jid: str) -> str:
    """The engine-internal form: `@c.us` becomes `@s.whatsapp.net`."""
    user, _, server = jid.partition("@")
    return f"{user}@s.whatsapp.net" if server == "c.us" else jid


def msg_ts(msg: Json) -> int:
    """A stored message's timestamp (seconds), the sort key of every listing."""
    return int(msg["timestamp"])


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
    # When WAHA saved each message's file (deleted `files_lifetime_s` later), the files
    # WhatsApp no longer has (a download answers `media.error`), and how many downloads of
    # a file are still to fail (`media.error` too) before one works.
    files: dict[str, float] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    glitches: dict[str, int] = field(default_factory=dict)
    # Rows the engine stores but drops from a page after applying `limit`, per chat, by
    # timestamp: they take places in a page and are never listed (waha.md 3). WEBJS:
    # notification rows (e2e, group changes); GOWS: reactions, poll votes, event responses
    # and protocol messages (edits, revokes); NOWEB: call-log rows (`message.call.callKey`).
    # From `processIncomingMessage` / `shouldProcessIncomingMessage` of each engine (WAHA
    # 2026.2.1 `session.gows.core.ts`, `session.noweb.core.ts`, `WebjsClientCore.getMessages`).
    notices: dict[str, list[int]] = field(default_factory=dict)
    restarts: int = 0
    activity_ms: int | None = None

    @property
    def me_id(self) -> str:
        """The account's own `…@c.us` id."""
        return f"{self.phone}@c.us"

    def restarted(self) -> None:
        """The session restarts. NOWEB and WEBJS tell API sends by a 10-minute in-memory cache
        of the ids WAHA sent (`sentMessageIds`), which a restart empties: from now on they
        show every message sent before as `source: "app"` (waha.md 3). GOWS decides by the
        sending device, which a restart does not change."""
        self.restarts += 1
        if self.engine in ("NOWEB", "WEBJS"):
            for message in self.order:
                if message.get("source") == "api":
                    message["source"] = "app"

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

    def chat(self, chat_id: str) -> WahaChat:
        """The chat `chat_id`, created (named from the contacts) on first use."""
        chat = self.chats.get(chat_id)
        if chat is None:
            name = self.names.get(chat_id)
            chat = self.chats[chat_id] = WahaChat(id=chat_id, name=name)
        return chat

    def message(self, message_id: str) -> Json:
        """A stored message by its WAHA id (KeyError when unknown)."""
        msg = self.index.get(message_id)
        if msg is None:
            raise KeyError(f"no message {message_id!r} in session {self.name!r}")
        return msg

    def alt(self, jid: str) -> str | None:
        """The other address form of a person (phone for a LID, LID for a phone), if known."""
        if jid.endswith("@lid"):
            return self.lids.get(jid)
        return self.pn_lids.get(jid)
