"""Agents' actions on chats, leads and notifications (REST): assign, open/close, mark read,
edit a lead.

Each is checked against the one visibility predicate inside the transaction (a chat the actor
may not see is "not found", its existence never leaks) and logs its change once, with the new
and the previous value, so every `/ws` client sees it like any other change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, select, update

from wasync.eventlog import CHAT_UPDATED, LEAD_UPDATED, NOTIFICATION_READ, camel
from wasync.events import ChangeChat, ChatField, ReadNotification, UpdateLead
from wasync.ingest.base import TxState
from wasync.ingest.statements import T_CHATS, T_LEADS, T_NOTIFICATIONS
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
        if isinstance(command, UpdateLead):
            return self.update_lead(command)
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

    def update_lead(self, cmd: UpdateLead) -> Mapping[Any, Any] | None:
        """Change a lead the actor may see through one of its chats; a real change logs one
        `lead:updated` per chat of the lead (new values and `previous<Field>`), so whoever
        sees any of them hears of it. The lead row after the change, or None (not found)."""
        conn, c, ld, p = self.tx.conn, T_CHATS.c, T_LEADS.c, cmd.actor
        seen = select(c.id).where(c.lead_id == cmd.lead_id, visible_chats(p, T_CHATS)).limit(1)
        if conn.execute(seen).first() is None:
            return None
        old = conn.execute(select(T_LEADS).where(ld.id == cmd.lead_id)).one()._mapping
        changes = {k: v for k, v in cmd.changes.items() if old[k] != v}
        if not changes:
            return old
        stmt = update(T_LEADS).where(ld.id == cmd.lead_id).values(changes).returning(*T_LEADS.c)
        new = conn.execute(stmt).one()._mapping
        data: dict[str, Any] = {"leadId": cmd.lead_id}
        for key, value in changes.items():
            name = camel(key)
            data[name] = value
            data["previous" + name[0].upper() + name[1:]] = old[key]
        chats = select(c.id).where(c.lead_id == cmd.lead_id, c.tenant_id == p.tenant_id)
        for (chat_id,) in conn.execute(chats.order_by(c.id)).all():
            self.tx.log.emit(p.tenant_id, LEAD_UPDATED, chat_id, **data)
        return new
