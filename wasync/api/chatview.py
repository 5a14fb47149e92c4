"""A chat as agents' lists show it: the `chats` row plus its session, its lead's name and
status, and a preview of its last message (REST `GET /api/chats`, `GET /api/chats/{id}`).

Built from two statements per page, whatever its size: the chats joined with their session
and lead, each with the id of its newest message (a correlated subquery walking
`ix_messages_chat_sent` backwards: one index probe per chat), then those messages by id.
Reactions are not previews: they are shown on the message they react to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync.eventlog import iso, to_json
from wasync.events import MessageType
from wasync.principal import Principal
from wasync.scopes import visible_chats
from wasync.store import models as m

T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_SESSIONS = m.Session.__table__  # type: ignore[attr-defined]
T_LEADS = m.Lead.__table__  # type: ignore[attr-defined]
CHAT_FIELDS = tuple(c.name for c in T_CHATS.c)
PREVIEW_FIELDS = ("id", "type", "body", "from_me", "ack", "sent_at", "revoked", "media_filename")
PREVIEW_CHARS = 200
MAX_QUERY = 100
MIN_DIGITS = 3  # fewer digits would match nearly every phone


def sort_key() -> ColumnElement[Any]:
    """What lists are ordered by: the last message's time (a chat without one: its creation)."""
    c = T_CHATS.c
    return func.coalesce(c.last_message_at, c.created_at)


def chat_select(p: Principal) -> Select[Any]:
    """The chats `p` may see (the one predicate), with what `chat_views` needs."""
    c, s, ld, msg = T_CHATS.c, T_SESSIONS.c, T_LEADS.c, T_MESSAGES.c
    newest = (
        select(msg.id)
        .where(msg.chat_id == c.id, msg.type != MessageType.REACTION.value)
        .order_by(msg.sent_at.desc(), msg.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    joined = T_CHATS.outerjoin(T_SESSIONS, s.id == c.session_id).outerjoin(
        T_LEADS, ld.id == c.lead_id
    )
    return (
        select(
            T_CHATS,
            sort_key().label("sort_at"),
            s.name.label("session_name"),
            s.provider.label("session_provider"),
            ld.first_name.label("lead_first_name"),
            ld.last_name.label("lead_last_name"),
            ld.status.label("lead_status"),
            newest.label("last_message_id"),
        )
        .select_from(joined)
        .where(visible_chats(p, T_CHATS))
    )


def search(p: Principal, raw: str) -> ColumnElement[bool]:
    """`?q=`: the chat's name, its lead's name (case-insensitive) or its phone's digits."""
    c, ld = T_CHATS.c, T_LEADS.c
    q = raw.strip()[:MAX_QUERY]
    full_name = ld.first_name + " " + ld.last_name
    leads = select(ld.id).where(
        ld.tenant_id == p.tenant_id, full_name.icontains(q, autoescape=True)
    )
    found = [c.name.icontains(q, autoescape=True), c.lead_id.in_(leads)]
    number = "".join(ch for ch in q if ch.isdigit())
    if len(number) >= MIN_DIGITS:
        found.append(c.phone.contains(number, autoescape=True))
    return or_(*found)


async def chat_views(conn: AsyncConnection, rows: Sequence[Mapping[Any, Any]]) -> list[Any]:
    """The JSON of each row of `chat_select`, with its last message's preview."""
    ids = [r["last_message_id"] for r in rows if r["last_message_id"] is not None]
    previews: dict[int, dict[str, Any]] = {}
    if ids:
        msg = T_MESSAGES.c
        found = await conn.execute(select(*(msg[n] for n in PREVIEW_FIELDS)).where(msg.id.in_(ids)))
        for r in found:
            preview = to_json(r._mapping, PREVIEW_FIELDS)
            if isinstance(preview["body"], str):
                preview["body"] = preview["body"][:PREVIEW_CHARS]
            previews[r.id] = preview
    return [_view(r, previews.get(r["last_message_id"])) for r in rows]


def _view(row: Mapping[Any, Any], preview: dict[str, Any] | None) -> dict[str, Any]:
    out = to_json(row, CHAT_FIELDS)
    out["sortAt"] = iso(row["sort_at"])
    out["session"] = {
        "id": row["session_id"],
        "name": row["session_name"],
        "provider": row["session_provider"],
    }
    out["lead"] = (
        None
        if row["lead_id"] is None
        else {
            "id": row["lead_id"],
            "firstName": row["lead_first_name"],
            "lastName": row["lead_last_name"],
            "status": row["lead_status"],
        }
    )
    out["lastMessage"] = preview
    return out
