"""The WAHA simulator's state: its configuration, the sessions, who is on WhatsApp, and the
message store every way in (set-up, API sends) writes through."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx

from wasync.sim.base import Json, Simulator, version_tuple
from wasync.sim.content import Content
from wasync.sim.directory import digits_of
from wasync.sim.faults import Faults
from wasync.sim.waha.render import MessageRender
from wasync.sim.waha.session import WahaSession, cus

_EXTENSIONS = {
    "image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp", "video/mp4": "mp4",
    "audio/ogg; codecs=opus": "oga", "audio/ogg": "oga", "audio/mpeg": "mp3",
    "application/pdf": "pdf",
}  # fmt: skip
# `media.error` when WAHA's S3 storage refused the connection (WAHA #510, as it answers it).
_REFUSED = {
    "errno": -111,
    "code": "ECONNREFUSED",
    "syscall": "connect",
    "address": "127.0.0.1",
    "port": 9000,
    "details": "Error: connect ECONNREFUSED 127.0.0.1:9000",
}


class WahaState(Simulator):
    """Configuration, sessions and storage of a `WahaSim`; route handlers and webhooks read it."""

    def __init__(
        self,
        *,
        api_key: str | None,
        version: str,
        tier: str,
        default_engine: str,
        seed: int,
        http: httpx.AsyncClient | None,
        public_url: str,
        clock: Callable[[], float],
        faults: Faults | None,
        files_lifetime_s: float | None = None,
        head_ties: str = "newest",
    ) -> None:
        super().__init__(seed=seed, http=http, clock=clock, faults=faults)
        if head_ties not in ("newest", "first"):
            raise ValueError(f"head_ties must be 'newest' or 'first', not {head_ties!r}")
        self.head_ties = head_ties
        self.files_lifetime_s = files_lifetime_s
        self.api_key = api_key
        self.version = version
        self.tier = tier
        self.default_engine = default_engine
        self.public_url = public_url.rstrip("/")
        self.sessions: dict[str, WahaSession] = {}
        self.seen: list[Json] = []
        # Chats whose overview item has `lastMessage: null` (WEBJS has not loaded it; NOWEB
        # and GOWS when the newest row is one they do not list): only `_chat`'s time moves.
        self.heads_unloaded: set[str] = set()

    def session(self, name: str) -> WahaSession:
        """The live state of a session (KeyError when unknown)."""
        return self.sessions[name]

    def environment(self, engine: str) -> Json:
        """The server's `environment` (webhook envelopes, `/api/version`) for `engine`."""
        browser = "/usr/bin/google-chrome-stable" if engine == "WEBJS" else None
        return {"version": self.version, "engine": engine, "tier": self.tier, "browser": browser}

    def address(self, value: str) -> str:
        """Phone digits become the registered `@c.us` jid; other jids keep their server."""
        if "@" not in value:
            digits = digits_of(value)
            return f"{self.directory.lookup(digits) or digits}@c.us"
        return cus(value)

    def store(
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
        """Render a message in the session's engine shape and file it in its chat."""
        chat = session.chat(chat_id)
        group = chat_id.endswith("@g.us")
        author = None
        if group:
            author = session.me_id if from_me else sender or _first(chat.participants, chat_id)
        if push_name is None:
            who = session.me_id if from_me else author or chat_id
            push_name = session.push_name if from_me else session.push_names.get(who)
        pn_keys = (2025, 7, 4) <= version_tuple(self.version) < (2025, 9, 5)
        msg = MessageRender(
            self.rng, session, chat_id, content, raw_id, ts, from_me, author, push_name, pn_keys
        )
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

    def with_media(self, session: WahaSession, msg: Json, download: bool, base: str | None) -> Json:
        """`msg` with its `media` link when `download` and it has a file (`base`: this request's
        base URL, else `public_url`)."""
        content = session.media.get(msg["id"])
        if not download or content is None:
            return msg
        out = dict(msg)
        if msg["id"] in session.lost:  # waha.md 7: `media.error` when the download failed
            error = {"message": "Failed to download media: the file is gone from WhatsApp"}
            out["media"] = {"url": None, "mimetype": content.mimetype, "error": error}
            return out
        if session.glitches.get(msg["id"], 0) > 0:  # its media storage down (WAHA #510)
            session.glitches[msg["id"]] -= 1
            out["media"] = {"url": None, "mimetype": content.mimetype, "error": _REFUSED}
            return out
        if not self.file_alive(session, msg["id"]):  # saved now, deleted after the lifetime
            session.files[msg["id"]] = self.clock()
        ext = _EXTENSIONS.get(content.mimetype or "", "bin")
        root = base or self.public_url
        out["media"] = {
            "url": f"{root}/api/files/{session.name}/{msg['id']}.{ext}",
            "mimetype": content.mimetype,
            "filename": content.filename,
            "error": None,
        }
        return out

    def file_alive(self, session: WahaSession, message_id: str) -> bool:
        """Whether WAHA still has the message's file: always without a lifetime (the
        simulator's default), else only between a download and `files_lifetime_s` after."""
        if message_id in session.lost:
            return False
        if self.files_lifetime_s is None:
            return True
        saved = session.files.get(message_id)
        return saved is not None and self.clock() - saved <= self.files_lifetime_s


def _first(participants: Sequence[str], group_id: str) -> str:
    """The default author of an incoming group message: the first participant."""
    if not participants:
        raise ValueError(f"group {group_id!r} has no participants: pass sender=")
    return participants[0]
