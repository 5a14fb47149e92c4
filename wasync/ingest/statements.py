"""The hot statements of an ingest transaction, built once per dialect.

Their compiled form stays cached; a key list is one parameter (`in_list`), so the SQL text
never depends on the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Integer,
    bindparam,
    case,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from wasync.ingest.acks import rank_sql
from wasync.store import models as m
from wasync.store.statements import in_list

T_SESSIONS = m.Session.__table__  # type: ignore[attr-defined]
T_IDENTITIES = m.Identity.__table__  # type: ignore[attr-defined]
T_LEADS = m.Lead.__table__  # type: ignore[attr-defined]
T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_PENDING = m.PendingUpdate.__table__  # type: ignore[attr-defined]
T_NOTIFICATIONS = m.Notification.__table__  # type: ignore[attr-defined]
T_CURSORS = m.Cursor.__table__  # type: ignore[attr-defined]
T_OUTBOX = m.Outbox.__table__  # type: ignore[attr-defined]

_SID = bindparam("sid", type_=Integer())
_M, _P, _C = T_MESSAGES.c, T_PENDING.c, T_CHATS.c


@dataclass(frozen=True, slots=True)
class Statements:
    """The statements every batch runs, for one dialect."""

    insert_messages: Any  # new messages (Postgres: returns the new, and parked, keys)
    existing_or_parked: Any  # SQLite: the probe run before the insert
    bump_chats: Any  # chat counters from the batch's new messages
    link_leads: Any  # each chat to the lead of its tenant and phone
    current: Any  # id, tenant, chat, ack, body and revoked of stored messages
    select_chats: Any  # a tenant's chats by jid
    park: Any  # merge updates into `pending_updates`, acks by the one rule

    @classmethod
    def build(cls, *, pg: bool) -> Statements:
        """Build every statement for Postgres (`pg`) or SQLite."""
        in_batch = in_list(_M.provider_message_id, "ids", pg=pg)
        return cls(
            insert_messages=(
                _insert_messages_returning()
                if pg
                else sqlite.insert(T_MESSAGES).on_conflict_do_nothing()
            ),
            existing_or_parked=None if pg else _existing_or_parked(),
            bump_chats=_bump_chats(in_batch),
            link_leads=update(T_CHATS)
            .where(
                in_list(_C.id, "chat_ids", pg=pg),
                T_LEADS.c.tenant_id == _C.tenant_id,
                T_LEADS.c.phone == _C.phone,
            )
            .values(lead_id=T_LEADS.c.id),
            current=select(
                _M.id,
                _M.provider_message_id,
                _M.tenant_id,
                _M.chat_id,
                _M.ack,
                _M.body,
                _M.revoked,
            ).where(_M.session_id == _SID, in_batch),
            select_chats=select(_C.id, _C.tenant_id, _C.jid, _C.kind, _C.phone, _C.lead_id).where(
                _C.tenant_id == bindparam("tenant"), in_list(_C.jid, "jids", pg=pg)
            ),
            park=_park(pg=pg),
        )


def _insert_messages_returning() -> Any:
    """Postgres: `INSERT ... ON CONFLICT DO NOTHING RETURNING` the rows that were new (a
    duplicate returns nothing), each with whether updates wait for it in `pending_updates`.

    One statement deduplicates and finds parked updates: a round trip less than probing
    first (0.6-0.7 ms per 100 messages here). With RETURNING, SQLAlchemy sends the rows as
    multi-row INSERTs ("insertmanyvalues"), about 30 % faster than one INSERT per row.
    """
    # The inserted row's columns, by name: SQLAlchemy does not correlate a subquery inside
    # RETURNING, and would add `messages` to the subquery's FROM.
    parked = exists().where(
        _P.session_id == literal_column("messages.session_id"),
        _P.provider_message_id == literal_column("messages.provider_message_id"),
    )
    return (
        postgresql.insert(T_MESSAGES)
        .on_conflict_do_nothing()
        .returning(_M.session_id, _M.provider_message_id, parked.label("parked"))
    )


def _existing_or_parked() -> Any:
    """SQLite: which of a session's keys are stored (parked=0) or have parked updates (1).

    On SQLite a plain executemany is the fastest insert, and this probe before it costs less
    than the multi-row INSERT that RETURNING needs (measured 0.1-0.2 ms per 100 messages).
    The write lock makes the probe exact; `ON CONFLICT DO NOTHING` stays as the guard.
    """
    return union_all(
        select(_M.provider_message_id, literal(0).label("parked")).where(
            _M.session_id == _SID, in_list(_M.provider_message_id, "ids", pg=False)
        ),
        select(_P.provider_message_id, literal(1).label("parked")).where(
            _P.session_id == _SID, in_list(_P.provider_message_id, "ids", pg=False)
        ),
    )


def _bump_chats(in_batch: Any) -> Any:
    """One UPDATE ... FROM for every chat of the batch: no per-chat parameters. Per chat, from
    the messages this batch inserted: the newest time only moves forward, the inbound count
    adds to `unread_count` (times `unread`: 0 for history), and the session of an inbound
    message becomes the chat's."""
    batch = (
        select(
            _M.chat_id,
            func.max(_M.sent_at).label("ts"),
            func.sum(case((_M.from_me.is_(False), 1), else_=0)).label("inbound"),
        )
        .where(_M.session_id == _SID, in_batch)
        .group_by(_M.chat_id)
        .subquery("batch")
    )
    return (
        update(T_CHATS)
        .where(_C.id == batch.c.chat_id)
        .values(
            last_message_at=case(
                (or_(_C.last_message_at.is_(None), _C.last_message_at < batch.c.ts), batch.c.ts),
                else_=_C.last_message_at,
            ),
            unread_count=_C.unread_count + batch.c.inbound * bindparam("unread", type_=Integer()),
            session_id=case((batch.c.inbound > 0, _SID), else_=_C.session_id),
            updated_at=bindparam("now", type_=_C.updated_at.type),
        )
    )


def _park(*, pg: bool) -> Any:
    """Upsert parked updates: the further ack by the one rule, the latest edit and revoke."""
    stmt = (postgresql.insert if pg else sqlite.insert)(T_PENDING)
    ex = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["session_id", "provider_message_id"],
        set_={
            "ack": case((rank_sql(ex.ack) > rank_sql(_P.ack), ex.ack), else_=_P.ack),
            "edit_body": case((ex.edited_at.is_not(None), ex.edit_body), else_=_P.edit_body),
            "edited_at": case((ex.edited_at.is_not(None), ex.edited_at), else_=_P.edited_at),
            "revoked_at": case((ex.revoked_at.is_not(None), ex.revoked_at), else_=_P.revoked_at),
        },
    )


STATEMENTS = {pg: Statements.build(pg=pg) for pg in (False, True)}

__all__ = ["STATEMENTS", "Statements"]
