"""What a listed WAHA message says changed since it was sent (pure): the repairs a poll makes
when a webhook was lost or never configured.

Each engine keeps a change differently (read from their sources, WAHA 2026.2.1):

- WEBJS reads WhatsApp Web's store: an edit rewrites the message's `body` in place and sets
  `_data.latestEditMsgKey` / `latestEditSenderTimestampMs` (its time stays); a message
  deleted for everyone keeps its id with `_data.type: "revoked"` (whatsapp-web.js
  `message_revoke_everyone`, "the message that was revoked, in its current state").
- NOWEB's store (`NowebPersistentStore.onMessageUpdate`) merges Baileys' `messages.update`
  into the row: an edit makes its `message` `{editedMessage: {message}}` and its time the
  edit's (Baileys `process-message.ts` MESSAGE_EDIT); a revoke deletes the row (seen as a
  message that vanished, `Provider.deletes_revoked`); a reaction is added to the target row's
  `reactions` (Baileys `updateMessageWithReaction`, one per author), never listed itself.
- GOWS lists neither: edits, revokes and reactions are rows of their own that the engine
  drops from every page (`shouldProcessIncomingMessage`), and the original is not updated
  (waha#1635, open); polling sees only acks there.
"""

from __future__ import annotations

from wasync import phones
from wasync.events import Event, Message, Reaction
from wasync.providers.base import edit_of, revoke_of
from wasync.providers.parsing import JsonMap, as_list, as_map, as_str, dig, maybe_timestamp
from wasync.providers.waha.ids import as_jid


def row_changes(payload: JsonMap, message: Message) -> list[Event]:
    """The Revoke, Edit and Reactions a listed row carries (none for an untouched row)."""
    data = as_map(payload.get("_data"))
    changes: list[Event] = []
    if str(data.get("type") or "").lower() == "revoked":
        changes.append(revoke_of(message))
    elif _edited(data):
        changes.append(edit_of(message, maybe_timestamp(data.get("latestEditSenderTimestampMs"))))
    changes += _reactions(data, message)
    return changes


def _edited(data: JsonMap) -> bool:
    """WEBJS `latestEditMsgKey`, or a NOWEB row rewritten as `{editedMessage: {message}}`."""
    if data.get("latestEditMsgKey") or data.get("latestEditSenderTimestampMs"):
        return True
    return bool(dig(data, "message", "editedMessage", "message"))


def _reactions(data: JsonMap, target: Message) -> list[Event]:
    """NOWEB `reactions`: `[{key, text, senderTimestampMs}]`, `key` the reaction's own message
    (its id, who reacted); an empty `text` took the reaction back."""
    out: list[Event] = []
    for item in as_list(data.get("reactions")):
        reaction = as_map(item)
        key = as_map(reaction.get("key"))
        reaction_id = as_str(key.get("id"))
        if reaction_id is None:
            continue
        author = as_jid(key.get("participant"))
        text = reaction.get("text")
        out.append(
            Reaction(
                session_id=target.session_id,
                provider_message_id=reaction_id.strip(),
                target_message_id=target.provider_message_id,
                emoji=text if isinstance(text, str) else "",
                chat=target.chat,
                from_me=key.get("fromMe") is True,
                timestamp=maybe_timestamp(reaction.get("senderTimestampMs")) or target.timestamp,
                sender=phones.address(author) if author else None,
            )
        )
    return out
