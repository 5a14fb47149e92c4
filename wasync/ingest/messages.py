"""Messages: insert what is new, deduplicated on `(session_id, provider_message_id)`.

The unique key is the guarantee: a duplicate (a webhook retry, a poll overlap, the same
stanza under its LID and phone chat) only carries its ack forward. New messages are logged
(`chat:new-message` each, or one `chat:updated` per chat for backfill), bump their chats'
counters, and take the updates that were parked waiting for them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from wasync.eventlog import CHAT_UPDATED
from wasync.events import (
    MEDIA_TYPES,
    Address,
    ChatKind,
    MediaStatus,
    Message,
    MessageType,
    Reaction,
)
from wasync.ingest import health
from wasync.ingest.base import Item, Key, TxState, group
from wasync.ingest.updates import Updates


class Messages:
    """The message inserts of one transaction."""

    def __init__(self, tx: TxState, updates: Updates) -> None:
        self.tx = tx
        self.updates = updates

    def items(self) -> list[Item]:
        """The jobs' messages and reactions of known sessions, in chats we keep."""
        tx = self.tx
        items: list[Item] = []
        for job in tx.jobs:
            for ev in job.events:
                if not isinstance(ev, Message | Reaction):
                    continue
                tenant = tx.tenant(job, ev.session_id)
                if tenant is None:
                    continue
                if not self._wanted(ev.chat):
                    job.result.ignored += 1
                    continue
                items.append(Item(job=job, event=ev, tenant_id=tenant, chat=ev.chat))
        return items

    def _wanted(self, chat: Address) -> bool:
        if chat.kind is ChatKind.BROADCAST:
            return self.tx.crm.keep_status_broadcast
        if chat.kind is ChatKind.NEWSLETTER:
            return self.tx.crm.keep_newsletters
        return True

    def insert(self, items: list[Item]) -> None:
        """Insert what is new (see `_insert_new`); duplicates only carry their ack forward."""
        by_key: dict[Key, Item] = {}
        dupes: list[Item] = []
        for it in items:
            if it.key in by_key:
                dupes.append(it)
            else:
                by_key[it.key] = it
        ordered = sorted(by_key.items())
        inserted, parked = self._insert_new(ordered)
        new = {k: it for k, it in ordered if k in inserted}
        dupes += [it for k, it in by_key.items() if k not in inserted]
        for it in new.values():
            it.job.result.new_times.append(it.event.timestamp)
        if new:
            self._announce(new)
        for it in dupes:
            it.job.result.duplicate += 1
            if isinstance(it.event, Message) and it.event.ack is not None:
                self.updates.ack(it.key, it.event.ack)
        if new:
            self.bump_chats(list(new.values()))
            if parked:
                self.updates.drain(parked)
        health.record_flow(self.tx, list(new.values()), dupes)

    def _insert_new(self, ordered: list[tuple[Key, Item]]) -> tuple[set[Key], set[Key]]:
        """Insert the rows; return the keys that were new, and those with parked updates."""
        tx = self.tx
        parked: set[Key] = set()
        if tx.pg:
            rows = [message_row(it, tx) for _, it in ordered]
            inserted: set[Key] = set()
            for session_id, pmid, is_parked in tx.conn.execute(tx.sql.insert_messages, rows):
                inserted.add((session_id, pmid))
                if is_parked:
                    parked.add((session_id, pmid))
            return inserted, parked
        found: set[Key] = set()
        for session_id, ids in group(k for k, _ in ordered).items():
            params = {"sid": session_id, "ids": ids}
            for pmid, is_parked in tx.conn.execute(tx.sql.existing_or_parked, params):
                (parked if is_parked else found).add((session_id, pmid))
        new = [(k, it) for k, it in ordered if k not in found]
        if new:
            tx.conn.execute(tx.sql.insert_messages, [message_row(it, tx) for _, it in new])
        return {k for k, _ in new}, parked - found

    def _announce(self, new: Mapping[Key, Item]) -> None:
        """Event-log rows for new messages: one per message, or one per chat for summary jobs."""
        self.tx.log.new_messages([key for key, it in new.items() if it.job.realtime == "message"])
        per_chat: dict[tuple[str, int], int] = defaultdict(int)
        for it in new.values():
            if it.job.realtime == "summary":
                per_chat[(it.tenant_id, it.chat_id)] += 1
        for (tenant, chat_id), n in sorted(per_chat.items()):
            self.tx.log.emit(tenant, CHAT_UPDATED, chat_id, backfilled=n)

    def bump_chats(self, items: list[Item]) -> None:
        """Last message time, unread count and answering session of the chats that got new
        messages, computed by the database from those messages. History (backfill) and our
        own messages are not unread news."""
        groups: dict[tuple[int, bool], list[str]] = defaultdict(list)
        for it in items:
            unread = it.job.realtime == "message"
            groups[(it.event.session_id, unread)].append(it.event.provider_message_id)
        tx = self.tx
        for (session_id, unread), ids in sorted(groups.items()):
            params = {"sid": session_id, "ids": ids, "unread": int(unread), "now": tx.now}
            tx.conn.execute(tx.sql.bump_chats, params)


def message_row(it: Item, tx: TxState) -> dict[str, Any]:
    """The `messages` row of an item (its job's source, the transaction's clock)."""
    ev = it.event
    row: dict[str, Any] = {
        "tenant_id": it.tenant_id,
        "chat_id": it.chat_id,
        "session_id": ev.session_id,
        "provider_message_id": ev.provider_message_id,
        "from_me": ev.from_me,
        "sender_jid": ev.sender.jid if ev.sender else None,
        "sender_phone": ev.sender.phone if ev.sender else None,
        "sent_at": ev.timestamp,
        "source": it.job.source,
        "raw": dict(ev.raw) if ev.raw is not None else None,
        "edited": False,
        "revoked": False,
        "media_voice": False,
        "media_status": MediaStatus.NONE.value,
        "media_attempts": 0,
        "media_ref": None,
        "created_at": tx.now,
    }
    if isinstance(ev, Reaction):
        row.update(type=MessageType.REACTION.value, body=ev.emoji, reply_to=ev.target_message_id)
        row.update(ack=None, push_name=None, extra={"target": ev.target_message_id})
        row.update(media_url=None, media_mimetype=None, media_filename=None, media_size=None)
        return row
    media = ev.media
    row.update(
        type=ev.type.value,
        body=ev.body,
        ack=int(ev.ack) if ev.ack is not None else None,
        push_name=ev.push_name,
        reply_to=ev.reply_to,
        extra=dict(ev.extra) or None,
        media_url=media.url if media else None,
        media_mimetype=media.mimetype if media else None,
        media_filename=media.filename if media else None,
        media_size=media.size if media else None,
        media_voice=bool(media and media.voice),
    )
    if media is not None and ev.type in MEDIA_TYPES:
        # Ingest never waits for a download: the media worker takes PENDING rows.
        tracked = it.job.media
        row["media_status"] = (MediaStatus.PENDING if tracked else MediaStatus.NONE).value
        row["media_ref"] = dict(media.ref) if media.ref else None
    return row
