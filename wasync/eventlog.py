"""The event log: its types, appending (lock + NOTIFY), reading, the frame JSON, pruning.

The `events` table is the real-time contract (DESIGN.md, "The one flow" 4): one row per
change, ids increasing and visible in id order. Ingest appends (its transaction holds a
Postgres advisory lock, `INGEST_LOCK`, from its BEGIN, so ids commit in order across nodes;
SQLite has one writer) and wakes other nodes with `NOTIFY` (`notify_payload`, sent with the
COMMIT: `Store.run_write`); REST and `/ws` read rows back as the same camelCase frames; old
rows are pruned here and nowhere else. Every row that concerns a chat carries its `chat_id`;
only `TENANT_WIDE` types may have none (see `wasync.scopes.visible`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import Integer, and_, bindparam, delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync.config import EventsConfig
from wasync.store import Store
from wasync.store import models as m
from wasync.store.statements import in_list

log = logging.getLogger(__name__)

T_EVENTS = m.EventRow.__table__  # type: ignore[attr-defined]
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]

# Event-log types: a public contract with WebSocket clients and CRMs reading `events`.
NEW_MESSAGE = "chat:new-message"
MESSAGE_ACK = "chat:message-ack"
MESSAGE_EDITED = "chat:message-edited"
MESSAGE_REVOKED = "chat:message-revoked"
MESSAGE_MEDIA = "chat:message-media"  # a message's media_status changed (wasync.media)
POLL_VOTE = "chat:poll-vote"
CHAT_UPDATED = "chat:updated"
LEAD_CREATED = "lead:created"
LEAD_UPDATED = "lead:updated"
NOTIFICATION_NEW = "notification:new"
NOTIFICATION_READ = "notification:read"
SESSION_STATUS = "session:status"
SESSION_HEALTH = "session:health"  # a session's health changed (wasync.health)
NOTIFICATION = "notification:"  # the prefix of the types scoped by their user
# Types that concern a whole tenant and carry no chat: seen by everyone of the tenant
# (TENANT_WIDE) or by its admins only (ADMINS_ONLY); every other row has its chat id.
TENANT_WIDE = frozenset({SESSION_STATUS})
ADMINS_ONLY = frozenset({SESSION_HEALTH})
# The message columns clients see: not `raw`, nor the media worker's own bookkeeping (the
# provider's locator of the file, the worker's next try).
_HIDDEN = ("raw", "tenant_id", "media_ref", "media_next_at")
MESSAGE_FIELDS = tuple(c.name for c in T_MESSAGES.c if c.name not in _HIDDEN)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedEvent:
    """An event-log row, as handed to subscribers after commit."""

    id: int
    tenant_id: str
    type: str
    chat_id: int | None
    message_id: int | None
    data: Mapping[str, Any]
    created_at: datetime | None = None  # as stored (the hub builds frames from it)


# --- appending --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewMessages:
    """A place in the log for the `chat:new-message` rows of these (session, id) keys, made
    by the database from the stored messages (`INSERT ... SELECT`: no per-row parameters)."""

    keys: list[tuple[int, str]]


@dataclass(slots=True)
class EventBuffer:
    """The rows one transaction appends, in emission order."""

    now: datetime
    items: list[dict[str, Any] | NewMessages] = field(default_factory=list)

    def emit(
        self,
        tenant_id: str,
        type_: str,
        chat_id: int | None = None,
        message_id: int | None = None,
        **data: Any,
    ) -> None:
        """Add one row; a chat's row without its chat id is a bug (see `TENANT_WIDE`;
        `notification:*` rows are scoped by their `userId`, and carry the notification's
        chat when it has one)."""
        chatless = TENANT_WIDE | ADMINS_ONLY
        if chat_id is None and type_ not in chatless and not type_.startswith(NOTIFICATION):
            raise ValueError(f"{type_} event without a chat id")
        row: dict[str, Any] = {"tenant_id": tenant_id, "type": type_, "chat_id": chat_id}
        row.update(message_id=message_id, data=dict(data) or None, created_at=self.now)
        self.items.append(row)

    def new_messages(self, keys: list[tuple[int, str]]) -> None:
        """Add the `chat:new-message` rows of these stored messages, here in the order."""
        if keys:
            self.items.append(NewMessages(keys))


def notify_payload(rows: list[PublishedEvent]) -> str | None:
    """What a commit that appended `rows` NOTIFYs other nodes of: its last id (or nothing)."""
    return str(rows[-1].id) if rows else None


def append(conn: Connection, buffer: EventBuffer, *, pg: bool) -> list[PublishedEvent]:
    """Write the buffer in emission order (inside the caller's transaction, which holds
    `INGEST_LOCK` on Postgres). Returns the rows in id order."""
    out: list[PublishedEvent] = []
    run: list[dict[str, Any]] = []
    for item in [*buffer.items, None]:
        if isinstance(item, dict):
            run.append(item)
            continue
        if run:
            ids = insert_returning(conn, T_EVENTS, run, T_EVENTS.c.id, pg=pg)
            out += [_published(i, row) for i, row in zip(ids, run, strict=True)]
            run = []
        if isinstance(item, NewMessages):
            out += _new_message_rows(conn, item, buffer.now, pg=pg)
    return out


def insert_returning(
    conn: Connection, table: Any, rows: list[dict[str, Any]], id_col: Any, *, pg: bool
) -> list[int]:
    """Insert rows, return their ids in row order.

    Postgres keeps parameter order with `sort_by_parameter_order`; on SQLite that flag forces
    one statement per row, and is not needed: the writer holds the only write lock, so ids are
    assigned in row order and sorting them restores it.
    """
    if pg:
        stmt = postgresql.insert(table).returning(id_col, sort_by_parameter_order=True)
        return [r[0] for r in conn.execute(stmt, rows)]
    return sorted(r[0] for r in conn.execute(sqlite.insert(table).returning(id_col), rows))


def _new_message_statement(*, pg: bool) -> Any:
    msg, e = T_MESSAGES.c, T_EVENTS.c
    rows = (
        select(
            msg.tenant_id,
            literal(NEW_MESSAGE),
            msg.chat_id,
            msg.id,
            bindparam("now", type_=e.created_at.type),
        )
        .where(
            msg.session_id == bindparam("sid", type_=Integer()),
            in_list(msg.provider_message_id, "ids", pg=pg),
        )
        .order_by(msg.id)
    )
    return (
        T_EVENTS.insert()
        .from_select(["tenant_id", "type", "chat_id", "message_id", "created_at"], rows)
        .returning(e.id, e.tenant_id, e.chat_id, e.message_id)
    )


_NEW_MESSAGE_SQL = {pg: _new_message_statement(pg=pg) for pg in (False, True)}


def _new_message_rows(
    conn: Connection, block: NewMessages, now: datetime, *, pg: bool
) -> list[PublishedEvent]:
    by_session: dict[int, list[str]] = defaultdict(list)
    for session_id, pmid in block.keys:
        by_session[session_id].append(pmid)
    out: list[PublishedEvent] = []
    for session_id, ids in by_session.items():
        params = {"sid": session_id, "ids": ids, "now": now}
        # RETURNING order is unspecified: sort by event id (a key, not Row comparisons).
        rows = sorted(conn.execute(_NEW_MESSAGE_SQL[pg], params).all(), key=itemgetter(0))
        out += [
            PublishedEvent(
                id=event_id,
                tenant_id=tenant,
                type=NEW_MESSAGE,
                chat_id=chat_id,
                message_id=message_id,
                data={},
                created_at=now,
            )
            for event_id, tenant, chat_id, message_id in rows
        ]
    return out


def _published(event_id: int, row: Mapping[str, Any]) -> PublishedEvent:
    return PublishedEvent(
        id=event_id,
        tenant_id=row["tenant_id"],
        type=row["type"],
        chat_id=row["chat_id"],
        message_id=row["message_id"],
        data=row["data"] or {},
        created_at=row["created_at"],
    )


# --- reading: the frames REST and /ws share ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRow:
    """An `events` row; `message` is the stored message (camelCase) for chat:new-message."""

    id: int
    tenant_id: str
    type: str
    chat_id: int | None
    message_id: int | None
    data: Mapping[str, Any]
    created_at: datetime | None
    message: Mapping[str, Any] | None = None

    @property
    def is_assignment(self) -> bool:
        """A chat:updated row that moves the chat to another user (REST assign)."""
        return self.type == CHAT_UPDATED and "assignedUserId" in self.data


def camel(name: str) -> str:
    """`provider_message_id` → `providerMessageId`."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def iso(value: datetime | None) -> str | None:
    """An ISO 8601 time (stored times read back aware UTC: `UTCDateTime`)."""
    return value.isoformat() if value is not None else None


def to_json(row: Mapping[Any, Any], fields: Iterable[str], prefix: str = "") -> dict[str, Any]:
    """Columns of `row` (named `prefix + field`) as a camelCase JSON object."""
    out: dict[str, Any] = {}
    for name in fields:
        value = row[prefix + name]
        out[camel(name)] = value.isoformat() if isinstance(value, datetime) else value
    return out


def frame_json(row: LogRow) -> str:
    """The WebSocket frame of an event-log row."""
    frame: dict[str, Any] = {
        "id": row.id,
        "type": row.type,
        "tenantId": row.tenant_id,
        "chatId": row.chat_id,
        "messageId": row.message_id,
        "at": iso(row.created_at),
        "data": dict(row.data),
    }
    if row.message is not None:
        frame["message"] = row.message
    return json.dumps(frame, separators=(",", ":"), default=str)


def _log_select() -> Any:
    e, msg = T_EVENTS.c, T_MESSAGES.c
    joined = T_EVENTS.outerjoin(T_MESSAGES, and_(e.type == NEW_MESSAGE, msg.id == e.message_id))
    columns = [msg[name].label(f"m_{name}") for name in MESSAGE_FIELDS]
    return select(
        e.id, e.tenant_id, e.type, e.chat_id, e.message_id, e.data, e.created_at, *columns
    ).select_from(joined)


async def read_log(
    conn: AsyncConnection,
    *,
    after: int,
    limit: int,
    until: int | None = None,
    tenant_id: str | None = None,
) -> list[LogRow]:
    """Event-log rows with `after < id <= until`, in id order, with their messages."""
    e = T_EVENTS.c
    stmt = _log_select().where(e.id > after).order_by(e.id).limit(limit)
    if until is not None:
        stmt = stmt.where(e.id <= until)
    if tenant_id is not None:
        stmt = stmt.where(e.tenant_id == tenant_id)
    return [_log_row(r._mapping) for r in await conn.execute(stmt)]


def _log_row(row: Mapping[Any, Any]) -> LogRow:
    message = to_json(row, MESSAGE_FIELDS, "m_") if row["m_id"] is not None else None
    return LogRow(
        id=int(row["id"]),
        tenant_id=row["tenant_id"],
        type=row["type"],
        chat_id=row["chat_id"],
        message_id=row["message_id"],
        data=row["data"] or {},
        created_at=row["created_at"],
        message=message,
    )


_LAST_ID = select(func.max(T_EVENTS.c.id))  # built once: the hub asks every second


async def last_id(conn: AsyncConnection) -> int:
    """The newest id in the log (0 when it is empty)."""
    return int((await conn.execute(_LAST_ID)).scalar() or 0)


async def retained(conn: AsyncConnection, since: int) -> bool:
    """True when the log still holds everything after `since` (else: resync)."""
    e = T_EVENTS.c
    low, high = (await conn.execute(select(func.min(e.id), func.max(e.id)))).one()
    if low is None:
        return since == 0
    return bool(low - 1 <= since <= high)


# --- pruning ------------------------------------------------------------------------------------


async def prune_events(store: Store, *, before: datetime, batch: int = 5000) -> int:
    """Delete rows created before `before`, `batch` rows a transaction; return how many.

    Ids grow with time, so the old rows are the log's head: each step looks at the first
    `batch` rows in id order (the primary key; no scan of the table) and deletes the old ones
    among them, stopping at the first step that finds fewer than a full batch to delete. Ids
    are never reused (AUTOINCREMENT on SQLite, a sequence on Postgres), so a client resuming
    from a pruned position gets `resync` and `since` stays meaningful.
    """
    e = T_EVENTS.c
    deleted = 0
    while True:
        head = select(e.id, e.created_at).order_by(e.id).limit(batch).subquery("head")
        async with store.write() as conn:
            newest_old = select(func.max(head.c.id)).where(head.c.created_at < before)
            last = (await conn.execute(newest_old)).scalar()
            if last is None:
                break
            result = await conn.execute(delete(T_EVENTS).where(e.id <= last))
            step = int(result.rowcount or 0)
        deleted += step
        if step < batch:
            break
        await asyncio.sleep(0)  # let ingest in between batches
    return deleted


async def prune_job(store: Store, config: EventsConfig) -> None:
    """The scheduled job (`[events] retain_days`): prune what is no longer kept, log it.

    The log is the WebSocket replay buffer and the CRM's change feed, not the record:
    messages, chats and leads stay.
    """
    before = datetime.now(UTC) - timedelta(days=config.retain_days)
    deleted = await prune_events(store, before=before, batch=config.prune_batch)
    if deleted:
        log.info("event log: pruned %d rows older than %s", deleted, before.isoformat())
