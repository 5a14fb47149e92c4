"""Agents' actions on chats and notifications (REST): assign, open/close, mark read.

Each is checked against the one visibility predicate inside the transaction (a chat the actor
may not see is "not found", its existence never leaks) and logs its change once, with the new
and the previous value, so every `/ws` client sees it like any other change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, select, update

from wasync.eventlog import CHAT_UPDATED, NOTIFICATION_READ
from wasync.events import ChangeChat, ChatField, ReadNotification
from wasync.ingest.base import TxState
from wasync.ingest.statements import T_CHATS, T_NOTIFICATIONS
from wasync.scopes import visible_chats

# The `chat:updated` data keys of each field: (new value, previous value).
CHANGE_NAMES: Mapping[ChatField, tuple[str, str]] = {
    "assigned_user_id": ("assignedUserId", "previousUserId"),
    "status": ("status", "previousStatus"),
    "unread_count": ("unreadCount", "previousUnreadCount"),
}


class Actions:
    """The REST commands of one transaction."""

    def __init__(self, tx: TxState) -> None:
        self.tx = tx

    def run(self, command: Any) -> Any:
        """Carry out one command; see each method for its answer."""
        if isinstance(command, ChangeChat):
            return self.change_chat(command)
        if isinstance(command, ReadNotification):
            return self.read_notification(command)
        raise TypeError(f"not a command: {command!r}")

    def change_chat(self, cmd: ChangeChat) -> Mapping[Any, Any] | None:
        """Set one field of a chat the actor may see; a real change logs `chat:updated` with
        the new and the previous value. The chat row after the change, or None (not found)."""
        conn, c = self.tx.conn, T_CHATS.c
        mine = and_(c.id == cmd.chat_id, visible_chats(cmd.actor, T_CHATS))
        old = conn.execute(select(T_CHATS).where(mine)).first()
        if old is None:
            return None
        if old._mapping[cmd.field] == cmd.value:
            return old._mapping
        stmt = update(T_CHATS).where(c.id == cmd.chat_id)
        stmt = stmt.values({cmd.field: cmd.value, "updated_at": self.tx.now}).returning(*T_CHATS.c)
        new = conn.execute(stmt).one()._mapping
        now_name, before_name = CHANGE_NAMES[cmd.field]
        data = {now_name: cmd.value, before_name: old._mapping[cmd.field]}
        self.tx.log.emit(cmd.actor.tenant_id, CHAT_UPDATED, cmd.chat_id, **data)
        return new

    def read_notification(self, cmd: ReadNotification) -> bool:
        """Mark one of the actor's notifications read (idempotent: logged once). False when
        it is not the actor's."""
        conn, n, p = self.tx.conn, T_NOTIFICATIONS.c, cmd.actor
        mine = and_(n.id == cmd.notification_id, n.tenant_id == p.tenant_id, n.user_id == p.user_id)
        row = conn.execute(select(n.read, n.chat_id).where(mine)).first()
        if row is None:
            return False
        if not row.read:
            stmt = update(T_NOTIFICATIONS).where(n.id == cmd.notification_id)
            conn.execute(stmt.values(read=True, read_at=self.tx.now))
            self.tx.log.emit(
                p.tenant_id,
                NOTIFICATION_READ,
                row.chat_id,
                notificationId=cmd.notification_id,
                userId=p.user_id,
            )
        return True
