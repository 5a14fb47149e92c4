"""What happens on a phone after a message exists (an edit, a delete for everyone, a reaction,
a row the engine never lists), kept the way each WAHA engine keeps it, so a poll sees exactly
what it would on that engine (WAHA 2026.2.1 sources; see `wasync.providers.waha.changes`):

- WEBJS (WhatsApp Web's store): an edit rewrites `body` and sets `_data.latestEditMsgKey` /
  `latestEditSenderTimestampMs`, the time stays; a revoke turns the message into type
  `revoked` with its id and time (`message.revoked`'s `after` is that message, its
  `_data.protocolMessageKey` naming itself); reactions are not kept on listed messages at all.
- NOWEB (its store, `NowebPersistentStore`): an edit rewrites the row as
  `{editedMessage: {message}}` with the edit's time (Baileys MESSAGE_EDIT); a revoke deletes
  the row; a reaction is added to the target's `_data.reactions` (one per author).
- GOWS: each is a row of its own that every page drops after its `limit`, and the original is
  left as it was (waha#1635).

Each method returns the webhook payload WAHA would send for it (for `deliver()`).
"""

from __future__ import annotations

from wasync.sim.base import Json
from wasync.sim.content import raw_message_id
from wasync.sim.waha.session import WahaChat, WahaSession, msg_ts, swa
from wasync.sim.waha.state import WahaState


class PhoneActions(WahaState):
    """Edits, revokes and reactions made on a phone, and rows an engine never lists."""

    def edit_message(
        self, session: str, message_id: str, *, text: str, ts: int | None = None
    ) -> Json:
        """Edit a message's text; returns the `message.edited` payload."""
        sess = self.session(session)
        msg = sess.message(message_id)
        when = self._when(ts)
        edit_id = raw_message_id(self.rng, "android")
        if sess.engine == "WEBJS":
            msg["body"] = msg["_data"]["body"] = text
            msg["_data"]["latestEditMsgKey"] = {"fromMe": msg["fromMe"], "id": edit_id}
            msg["_data"]["latestEditSenderTimestampMs"] = when * 1000
        elif sess.engine == "NOWEB":
            msg["body"] = text
            msg["timestamp"] = msg["_data"]["messageTimestamp"] = when
            msg["_data"]["message"] = {"editedMessage": {"message": {"conversation": text}}}
            self._settle(sess, _chat_of(sess, msg))
        else:
            self.add_dropped(session, _chat_id(msg), ts=when)
        payload = {**msg, "id": f"{_prefix(msg)}_{edit_id}", "body": text, "timestamp": when}
        return {**payload, "editedMessageId": _bare(msg)}

    def revoke_message(self, session: str, message_id: str, *, ts: int | None = None) -> Json:
        """Delete a message for everyone; returns the `message.revoked` payload."""
        sess = self.session(session)
        msg = sess.message(message_id)
        when = self._when(ts)
        before = dict(msg)
        after = {**before, "id": f"{_prefix(before)}_{raw_message_id(self.rng)}", "timestamp": when}
        if sess.engine == "WEBJS":  # `after` is the message itself, its id and time kept
            msg["body"], msg["hasMedia"] = "", False
            key = {"fromMe": msg["fromMe"], "remote": _chat_id(msg), "id": _bare(msg)}
            msg["_data"].update(type="revoked", body="", protocolMessageKey=key)
            after = {**msg, "_data": dict(msg["_data"])}
        elif sess.engine == "NOWEB":
            chat = _chat_of(sess, msg)
            chat.messages.remove(msg)
            sess.order.remove(msg)
            sess.index.pop(msg["id"], None)
            sess.media.pop(msg["id"], None)
            self._settle(sess, chat)
        else:
            self.add_dropped(session, _chat_id(msg), ts=when)
        return {"after": after, "before": None, "revokedMessageId": _bare(before)}

    def react(
        self,
        session: str,
        message_id: str,
        emoji: str,
        *,
        from_me: bool = False,
        sender: str | None = None,
        ts: int | None = None,
    ) -> Json:
        """React to a message (`""` takes it back); returns the `message.reaction` payload."""
        sess = self.session(session)
        msg = sess.message(message_id)
        when, reaction_id = self._when(ts), raw_message_id(self.rng, "android")
        author = self.address(sender) if sender else None
        if sess.engine == "NOWEB":
            key: Json = {"remoteJid": swa(_chat_id(msg)), "fromMe": from_me, "id": reaction_id}
            if author:
                key["participant"] = swa(author)
            kept = [r for r in msg["_data"].get("reactions", []) if not _same_author(r, key)]
            reaction = {"key": key, "text": emoji, "senderTimestampMs": when * 1000}
            msg["_data"]["reactions"] = [*kept, reaction]
        elif sess.engine == "GOWS":
            self.add_dropped(session, _chat_id(msg), ts=when)
        chat = _chat_id(msg)
        return {
            "id": f"{'true' if from_me else 'false'}_{chat}_{reaction_id}",
            "from": chat,
            "fromMe": from_me,
            "participant": author,
            "to": None,
            "timestamp": when,
            "reaction": {"text": emoji, "messageId": msg["id"]},
        }

    def add_dropped(self, session: str, chat: str, *, ts: int | None = None) -> None:
        """A row the engine stores but drops from every page after its `limit` (GOWS: a
        reaction, vote or protocol message; NOWEB: a call-log row; WEBJS: a notification)."""
        sess = self.session(session)
        sess.notices.setdefault(self.address(chat), []).append(self._when(ts))

    def _when(self, ts: int | None) -> int:
        return int(self.clock()) if ts is None else ts

    def _settle(self, sess: WahaSession, chat: WahaChat) -> None:
        """Keep the chat's last message right after its rows moved or went."""
        chat.last = max(chat.messages, key=msg_ts, default=None)


def _chat_id(msg: Json) -> str:
    """The chat of a stored message: the 2nd segment of its id (waha.md 3)."""
    return str(msg["id"]).split("_")[1]


def _chat_of(sess: WahaSession, msg: Json) -> WahaChat:
    return sess.chat(_chat_id(msg))


def _prefix(msg: Json) -> str:
    return "_".join(str(msg["id"]).split("_")[:2])


def _bare(msg: Json) -> str:
    return str(msg["id"]).split("_")[2]


def _same_author(reaction: Json, key: Json) -> bool:
    """Baileys keeps one reaction per author (`getKeyAuthor`: fromMe, else participant/jid)."""
    other = reaction.get("key") or {}
    if key["fromMe"] or other.get("fromMe"):
        return bool(key["fromMe"]) and bool(other.get("fromMe"))
    return other.get("participant") == key.get("participant")
