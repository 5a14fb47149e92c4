"""Who may see what: the one visibility predicate, for REST reads, `/ws` frames and commands.

ADMIN sees every chat of its tenant, USER only the chats assigned to it (`can_see`, and
`visible_chats` as the same rule in SQL). An event-log row is visible by its chat (`visible`);
a notification only to the notified user; a row without a chat only when its type concerns
the whole tenant (`wasync.eventlog.TENANT_WIDE`: session status), to everyone of the tenant,
and otherwise (`ADMINS_ONLY`: session health; or an unknown type) to nobody but the tenant's
admins. `Scopes` follows each chat's assignee along
the log, so a replay judges every row by the assignment in force when it was written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, literal, null, select, true, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync.eventlog import (
    ADMINS_ONLY,
    CHAT_UPDATED,
    NOTIFICATION,
    T_EVENTS,
    TENANT_WIDE,
    LogRow,
)
from wasync.principal import Principal
from wasync.store import models as m

T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]
SCOPE_CACHE_LIMIT = 100_000


def can_see(principal: Principal, *, tenant_id: str, assigned_user_id: str | None) -> bool:
    """The scoping rule: own tenant only; USER only chats assigned to it."""
    if tenant_id != principal.tenant_id:
        return False
    return principal.is_admin or assigned_user_id == principal.user_id


def visible_chats(principal: Principal, chats: Any) -> ColumnElement[bool]:
    """`can_see()` as a SQL condition on the `chats` table."""
    same_tenant = chats.c.tenant_id == principal.tenant_id
    if principal.is_admin:
        return and_(same_tenant, true())
    return and_(same_tenant, chats.c.assigned_user_id == principal.user_id)


def visible(p: Principal, row: LogRow, before: str | None, after: str | None) -> bool:
    """May `p` receive `row`? `before`/`after`: the chat's assignee around the row.

    Notifications go to the notified user only; tenant-wide rows (session:status) to the whole
    tenant; admins-only rows (session:health) and any other row without a chat (it should not
    exist: fail closed) to the tenant's admins only; chat rows by `can_see`, and an
    assignment also to the user it moves away from.
    """
    if row.tenant_id != p.tenant_id:
        return False
    if row.type.startswith(NOTIFICATION):
        return row.data.get("userId") == p.user_id
    if row.type in ADMINS_ONLY:
        return p.is_admin
    if row.chat_id is None:
        return row.type in TENANT_WIDE or p.is_admin
    return can_see(p, tenant_id=row.tenant_id, assigned_user_id=after) or can_see(
        p, tenant_id=row.tenant_id, assigned_user_id=before
    )


class Scopes:
    """Each chat's assignee as of a position in the log, moved forward row by row."""

    def __init__(self) -> None:
        self.assigned: dict[int, str | None] = {}

    def missing(self, rows: Iterable[LogRow], tenants: Iterable[str] | None = None) -> set[int]:
        """Chats of `rows` (of `tenants`, if given) whose assignee is not known yet."""
        wanted = None if tenants is None else set(tenants)
        return {
            r.chat_id
            for r in rows
            if r.chat_id is not None
            and r.chat_id not in self.assigned
            and (wanted is None or r.tenant_id in wanted)
        }

    async def load(self, conn: AsyncConnection, chat_ids: set[int], *, as_of: int) -> None:
        """Assignees as of log id `as_of`: the `previousUserId` of a chat's first later
        assignment, else its current `assigned_user_id` (one statement: one snapshot)."""
        if len(self.assigned) > SCOPE_CACHE_LIMIT:
            self.assigned.clear()
        c, e, ids = T_CHATS.c, T_EVENTS.c, sorted(chat_ids)
        current = select(
            c.id, c.assigned_user_id, literal(0).label("event_id"), cast(null(), Text)
        ).where(c.id.in_(ids))
        later = select(e.chat_id, cast(null(), Text), e.id, cast(e.data, Text)).where(
            e.chat_id.in_(ids), e.id > as_of, e.type == CHAT_UPDATED
        )
        rows = sorted((await conn.execute(union_all(current, later))).all(), key=lambda r: r[2])
        current_user: dict[int, str | None] = {}
        previous_user: dict[int, str | None] = {}
        for chat_id, assigned, event_id, data in rows:
            if event_id == 0:  # the chats row (event ids start at 1)
                current_user[chat_id] = assigned
                continue
            change = json.loads(data) if data else None
            if isinstance(change, dict) and "assignedUserId" in change:
                previous_user.setdefault(chat_id, change.get("previousUserId"))
        for chat_id in ids:
            if chat_id in previous_user:
                self.assigned[chat_id] = previous_user[chat_id]
            else:  # a chat deleted by a LID merge has no row: nobody is assigned
                self.assigned[chat_id] = current_user.get(chat_id)

    def step(self, row: LogRow) -> tuple[str | None, str | None]:
        """The chat's assignee before and after `row`; remembers the change."""
        if row.chat_id is None:
            return None, None
        before = self.assigned.get(row.chat_id)
        if not row.is_assignment:
            return before, before
        after = row.data.get("assignedUserId")
        self.assigned[row.chat_id] = after
        return before, after

    def forget(self, row: LogRow) -> None:
        """Drop a chat whose assignment changed while nobody of its tenant was watching."""
        if row.is_assignment and row.chat_id is not None:
            self.assigned.pop(row.chat_id, None)

    def clear(self) -> None:
        """Forget everything (the hub skipped rows without walking them)."""
        self.assigned.clear()
