"""`Pipeline.ingest()`: the only write path for provider events.

Poller, webhook, backfill and replay hand their events here. Concurrent callers are grouped:
one writer task commits up to `batch_max_events` events (or whatever arrived within
`batch_max_wait_ms`) in a single transaction and answers every caller when it commits. Each
transaction resolves identities, upserts chats, creates leads and admin notifications for new
numbers, inserts messages deduplicated on `(session_id, provider_message_id)`, applies acks
monotonically (an ack for a message not seen yet waits in `pending_updates`), records edits,
revokes and session states, advances poll cursors and appends one `events` row per change.
New event rows are published to subscribers only after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import (
    JSON,
    Integer,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync.config import CrmConfig, Settings
from wasync.errors import StoreUnavailable
from wasync.events import (
    Ack,
    AckLevel,
    Address,
    ChatKind,
    Edit,
    Event,
    Message,
    MessageType,
    Reaction,
    Revoke,
    SessionStatus,
)
from wasync.phones import phone_jid
from wasync.store import Store, is_unavailable
from wasync.store import models as m
from wasync.store.db import INGEST_LOCK

log = logging.getLogger(__name__)

T_SESSIONS = m.Session.__table__  # type: ignore[attr-defined]
T_IDENTITIES = m.Identity.__table__  # type: ignore[attr-defined]
T_LEADS = m.Lead.__table__  # type: ignore[attr-defined]
T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_PENDING = m.PendingUpdate.__table__  # type: ignore[attr-defined]
T_NOTIFICATIONS = m.Notification.__table__  # type: ignore[attr-defined]
T_EVENTS = m.EventRow.__table__  # type: ignore[attr-defined]
T_CURSORS = m.Cursor.__table__  # type: ignore[attr-defined]
T_OUTBOX = m.Outbox.__table__  # type: ignore[attr-defined]

# Event-log types: a public contract with WebSocket clients.
NEW_MESSAGE = "chat:new-message"
MESSAGE_ACK = "chat:message-ack"
MESSAGE_EDITED = "chat:message-edited"
MESSAGE_REVOKED = "chat:message-revoked"
CHAT_UPDATED = "chat:updated"
LEAD_CREATED = "lead:created"
NOTIFICATION_NEW = "notification:new"
SESSION_STATUS = "session:status"
CACHE_LIMIT = 100_000
T = TypeVar("T")

# Statements run on every batch, built once per dialect: their compiled form stays cached.
# A key list is one parameter (`_in_list`), so the SQL text never depends on the batch size.
_SID = bindparam("sid", type_=Integer())
_M, _P, _E, _C = T_MESSAGES.c, T_PENDING.c, T_EVENTS.c, T_CHATS.c


def _in_list(col: Any, name: str, *, pg: bool) -> Any:
    """`col IN <list>` with the whole list bound as one parameter `name`: an array on Postgres
    (`= ANY(:name)`), a JSON array read by `json_each` on SQLite.

    An expanding `IN (:a, :b, ...)` costs a parameter per key to process, and gives every
    batch size its own SQL text (on Postgres, its own prepared statement); measured at
    0.07 ms per statement on SQLite and 0.3-0.45 ms on Postgres for 100 keys.
    """
    if pg:
        return col == func.any(bindparam(name, type_=postgresql.ARRAY(col.type)))
    values = func.json_each(bindparam(name, type_=JSON())).table_valued("value")
    return col.in_(select(values.c.value))


@dataclass(frozen=True, slots=True)
class _Statements:
    """The hot statements of an ingest transaction, for one dialect."""

    insert_messages: Any  # new messages (Postgres: returns the new, and parked, keys)
    existing_or_parked: Any  # SQLite: the probe run before the insert
    new_message_events: Any  # one `chat:new-message` row per new message, made server-side
    bump_chats: Any  # chat counters from the batch's new messages
    link_leads: Any  # each chat to the lead of its tenant and phone
    current: Any  # id, tenant, chat, ack, body and revoked of stored messages
    select_chats: Any  # a tenant's chats by jid

    @classmethod
    def build(cls, *, pg: bool) -> _Statements:
        """Build every statement for Postgres (`pg`) or SQLite."""
        in_batch = _in_list(_M.provider_message_id, "ids", pg=pg)
        new_per_chat = (
            # Per chat, from the messages this batch inserted: the newest time, inbound count.
            select(
                _M.chat_id,
                func.max(_M.sent_at).label("ts"),
                func.sum(case((_M.from_me.is_(False), 1), else_=0)).label("inbound"),
            )
            .where(_M.session_id == _SID, in_batch)
            .group_by(_M.chat_id)
            .subquery("batch")
        )
        return cls(
            insert_messages=(
                _insert_messages_returning()
                if pg
                else sqlite.insert(T_MESSAGES).on_conflict_do_nothing()
            ),
            existing_or_parked=None if pg else _existing_or_parked(),
            new_message_events=T_EVENTS.insert()
            .from_select(
                ["tenant_id", "type", "chat_id", "message_id", "created_at"],
                select(
                    _M.tenant_id,
                    literal(NEW_MESSAGE),
                    _M.chat_id,
                    _M.id,
                    bindparam("now", type_=_E.created_at.type),
                )
                .where(_M.session_id == _SID, in_batch)
                .order_by(_M.id),
            )
            .returning(_E.id, _E.tenant_id, _E.chat_id, _E.message_id),
            bump_chats=_bump_chats(new_per_chat),
            link_leads=update(T_CHATS)
            .where(
                _in_list(_C.id, "chat_ids", pg=pg),
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
                _C.tenant_id == bindparam("tenant"), _in_list(_C.jid, "jids", pg=pg)
            ),
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
            _M.session_id == _SID, _in_list(_M.provider_message_id, "ids", pg=False)
        ),
        select(_P.provider_message_id, literal(1).label("parked")).where(
            _P.session_id == _SID, _in_list(_P.provider_message_id, "ids", pg=False)
        ),
    )


def _bump_chats(batch: Any) -> Any:
    """One UPDATE ... FROM for every chat of the batch: no per-chat parameters."""
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


_STATEMENTS = {pg: _Statements.build(pg=pg) for pg in (False, True)}

# How new messages reach real-time clients: one `chat:new-message` each, or (backfill) one
# `chat:updated` per touched chat carrying `{"backfilled": n}`.
Realtime = Literal["message", "summary"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CursorUpdate:
    """Move a poll cursor, in the same transaction as the messages it covers."""

    session_id: int
    scope: str = "*"
    ts: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedEvent:
    """An event-log row, as handed to subscribers after commit."""

    id: int
    tenant_id: str
    type: str
    chat_id: int | None
    message_id: int | None
    data: Mapping[str, Any]


@dataclass(slots=True, kw_only=True)
class IngestResult:
    """What one `ingest()` call changed."""

    new: int = 0
    duplicate: int = 0
    ignored: int = 0
    rejected: int = 0
    event_ids: list[int] = field(default_factory=list)  # every id of the shared transaction
    new_messages: list[tuple[int, str]] = field(default_factory=list)


class Subscriber(Protocol):
    """Receives committed event-log rows (the real-time hub)."""

    def publish(self, events: Sequence[PublishedEvent]) -> None:
        """Called after each commit with its rows in id order; must not block. Commits of
        `Pipeline.record()` are published from their caller's task, so two batches may arrive
        out of order: read the `events` table for a total order (the hub does)."""


@dataclass(slots=True, kw_only=True)
class _Job:
    events: Sequence[Event]
    source: str
    cursors: Sequence[CursorUpdate]
    notify: bool
    future: asyncio.Future[IngestResult]
    realtime: Realtime = "message"
    result: IngestResult = field(default_factory=IngestResult)


class Pipeline:
    """The group-committing writer. Use as an async context manager; one per process."""

    def __init__(
        self,
        store: Store,
        *,
        crm: CrmConfig | None = None,
        admins: Mapping[str, Sequence[str]] | None = None,
        subscribers: Sequence[Subscriber] = (),
        batch_max_events: int = 500,
        batch_max_wait_ms: float = 0.0,
    ) -> None:
        self.store = store
        self.crm = crm or CrmConfig()
        self.admins = {k: list(v) for k, v in (admins or {}).items()}
        self.subscribers = list(subscribers)
        self.batch_max_events = batch_max_events
        self.batch_max_wait_s = batch_max_wait_ms / 1000
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._tenants: dict[int, str] = {}
        # Filled only from committed transactions; emptied whenever a transaction fails.
        self._chats: dict[tuple[str, str], _ChatRow] = {}
        self._identities: dict[tuple[str, str], str] = {}

    @classmethod
    def from_settings(
        cls, store: Store, settings: Settings, *, subscribers: Sequence[Subscriber] = ()
    ) -> Pipeline:
        """The pipeline the configuration describes: CRM defaults, admins, batch limits."""
        return cls(
            store,
            crm=settings.crm,
            admins={t.id: t.admins for t in settings.tenants},
            subscribers=subscribers,
            batch_max_events=settings.database.batch_max_events,
            batch_max_wait_ms=settings.database.batch_max_wait_ms,
        )

    async def __aenter__(self) -> Pipeline:
        self._writer = asyncio.create_task(self._run(), name="wasync-pipeline-writer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Finish every queued job, then stop the writer."""
        if self._writer is None:
            return
        self._queue.put_nowait(None)
        await self._writer
        self._writer = None

    async def ingest(
        self,
        events: Iterable[Event],
        *,
        source: str,
        cursor: CursorUpdate | Sequence[CursorUpdate] | None = None,
        notify: bool = True,
        realtime: Realtime = "message",
    ) -> IngestResult:
        """Store `events` in one transaction (shared with concurrent callers); return the counts.

        `notify=False` creates no admin notifications; `realtime="summary"` logs one
        `chat:updated` event per chat instead of one `chat:new-message` per message (backfill).

        Raises StoreUnavailable when the database cannot be reached; nothing is half-written.
        """
        if self._writer is None:
            raise RuntimeError("Pipeline is not running: use `async with Pipeline(...)`")
        cursors = [cursor] if isinstance(cursor, CursorUpdate) else list(cursor or [])
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        job = _Job(
            events=list(events),
            source=source,
            cursors=cursors,
            notify=notify,
            future=future,
            realtime=realtime,
        )
        self._queue.put_nowait(job)
        return await asyncio.shield(future)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            jobs, stopping = await self._collect(first)
            await self._commit(jobs)

    async def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """Take the jobs queued meanwhile (they piled up while the last batch committed), and
        wait up to `batch_max_wait_ms` for more when that is configured."""
        jobs, size = [first], len(first.events)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_max_wait_s
        while size < self.batch_max_events:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if job is None:
                return jobs, True
            jobs.append(job)
            size += len(job.events)
        return jobs, False

    async def _commit(self, jobs: list[_Job]) -> None:
        try:
            published = await self._transaction(jobs)
        except Exception as exc:
            self._chats.clear()
            self._identities.clear()
            if len(jobs) > 1 and not is_unavailable(exc):
                # One bad job must not fail its neighbours: retry each alone.
                for job in jobs:
                    job.result = IngestResult()
                    await self._commit([job])
                return
            error = exc if isinstance(exc, StoreUnavailable) else _wrap(exc)
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        self._publish(published)
        for job in jobs:
            if not job.future.done():
                job.future.set_result(job.result)

    async def _transaction(self, jobs: list[_Job]) -> list[PublishedEvent]:
        tx = _Tx(self, jobs)
        published = await self.store.run_write(tx.run)
        self._remember(tx)
        return published

    def _remember(self, tx: _Tx) -> None:
        """Keep what a committed transaction learned, bounded."""
        if len(self._chats) > CACHE_LIMIT or len(self._identities) > CACHE_LIMIT:
            self._chats.clear()
            self._identities.clear()
        for key in tx.dropped:
            self._chats.pop(key, None)
        self._chats.update(tx.chats)
        self._identities.update(tx.learned)

    def _publish(self, events: list[PublishedEvent]) -> None:
        if not events:
            return
        for sub in self.subscribers:
            try:
                sub.publish(events)
            except Exception:  # a broken subscriber never breaks ingest
                log.exception("subscriber %r failed", sub)

    async def record(self, work: Callable[[AsyncConnection, EventSink], Awaitable[T]]) -> T:
        """Run `work(conn, sink)` in a write transaction of its own, for changes that are not
        provider events (a send request, its outcome). Event-log rows added with `sink.emit`
        get ids in order with ingest's (Postgres: the same advisory lock; SQLite: one writer)
        and are published after the commit. Returns what `work` returns.
        """
        sink = EventSink()
        async with self.store.write() as conn:
            if not self.store.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
            result = await work(conn, sink)
            published = await sink.flush(conn, pg=not self.store.is_sqlite)
        self._publish(published)
        return result


@dataclass(slots=True)
class EventSink:
    """Event-log rows appended by a `Pipeline.record()` transaction, in emission order."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def emit(
        self,
        tenant_id: str,
        type_: str,
        chat_id: int | None = None,
        message_id: int | None = None,
        **data: Any,
    ) -> None:
        """Add one event-log row (written when the transaction's work is done)."""
        self.rows.append(event_row(tenant_id, type_, chat_id, message_id, data, _now()))

    async def flush(self, conn: AsyncConnection, *, pg: bool) -> list[PublishedEvent]:
        """Insert the rows (ids in row order) and wake other nodes on Postgres."""
        if not self.rows:
            return []
        ids = await insert_returning(conn, T_EVENTS, self.rows, T_EVENTS.c.id, pg=pg)
        if pg:
            await conn.execute(text("SELECT pg_notify('wasync_events', :id)"), {"id": str(ids[-1])})
        return [_published(i, e) for i, e in zip(ids, self.rows, strict=True)]


def event_row(
    tenant_id: str,
    type_: str,
    chat_id: int | None,
    message_id: int | None,
    data: Mapping[str, Any],
    at: datetime,
) -> dict[str, Any]:
    """One `events` row."""
    return {
        "tenant_id": tenant_id,
        "type": type_,
        "chat_id": chat_id,
        "message_id": message_id,
        "data": dict(data) or None,
        "created_at": at,
    }


async def insert_returning(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], id_col: Any, *, pg: bool
) -> list[int]:
    """Insert rows, return their ids in row order."""
    result = await conn.execute(_returning_insert(table, id_col, pg=pg), rows)
    return _in_row_order(result, pg=pg)


def _returning_insert(table: Any, id_col: Any, *, pg: bool) -> Any:
    """An INSERT returning `id_col`, whose ids `_in_row_order` puts back in row order.

    Postgres keeps parameter order with `sort_by_parameter_order`; on SQLite that flag forces
    one statement per row, and is not needed: the writer holds the only write lock, so ids are
    assigned in row order and sorting them restores it.
    """
    if pg:
        return postgresql.insert(table).returning(id_col, sort_by_parameter_order=True)
    return sqlite.insert(table).returning(id_col)


def _in_row_order(result: Iterable[Any], *, pg: bool) -> list[int]:
    ids = [r[0] for r in result]
    return ids if pg else sorted(ids)


def _wrap(exc: BaseException) -> BaseException:
    if is_unavailable(exc):
        return StoreUnavailable(f"database unavailable: {type(exc).__name__}")
    return exc


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _NewMessages:
    """A place in the event log for the new-message events of these keys."""

    keys: list[tuple[int, str]]


@dataclass(slots=True)
class _ChatRow:
    id: int
    tenant_id: str
    jid: str
    kind: str
    phone: str | None
    lead_id: int | None


@dataclass(slots=True, kw_only=True)
class _Item:
    """One Message/Reaction event with its job and resolved chat."""

    job: _Job
    event: Message | Reaction
    tenant_id: str
    chat: Address
    chat_id: int = 0


# A stored message as updates see it: id, tenant, chat id, ack, body, revoked.
_Stored = tuple[int, str, int, int | None, str | None, bool]


class _Tx:
    """One ingest transaction over a batch of jobs."""

    def __init__(self, pipeline: Pipeline, jobs: list[_Job]) -> None:
        self.p = pipeline
        self.conn: Connection  # set by run(), which the store calls with its connection
        self.jobs = jobs
        self.pg = not pipeline.store.is_sqlite
        self.sql = _STATEMENTS[self.pg]
        self.now = _now()
        self.events: list[dict[str, Any] | _NewMessages] = []
        self.chats: dict[tuple[str, str], _ChatRow] = {}
        self._acks: dict[tuple[int, str], AckLevel] = {}
        self._edits: dict[tuple[int, str], tuple[str | None, datetime | None]] = {}
        self._revokes: dict[tuple[int, str], datetime | None] = {}
        self.learned: dict[tuple[str, str], str] = {}
        self.dropped: set[tuple[str, str]] = set()
        self.parked: set[tuple[int, str]] = set()

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.pg else sqlite.insert)(table)

    def _emit(
        self,
        tenant_id: str,
        type_: str,
        chat_id: int | None = None,
        message_id: int | None = None,
        **data: Any,
    ) -> None:
        self.events.append(event_row(tenant_id, type_, chat_id, message_id, data, self.now))

    def run(self, conn: Connection) -> list[PublishedEvent]:
        """The whole transaction, as synchronous code (see `Store.run_write`)."""
        self.conn = conn
        if self.pg:
            # Serialise ingest across nodes: event ids become visible in id order, and the
            # first-message races (lead, chat, pending acks) cannot interleave.
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
        self._load_tenants()
        items = self._items()
        if items:
            self._resolve_identities(items)
            self._resolve_chats(items)
            self._insert_messages(items)
        self._apply_updates()
        self._apply_statuses()
        self._advance_cursors()
        return self._append_events()

    # --- sessions and filtering -------------------------------------------------------------

    def _load_tenants(self) -> None:
        wanted = {e.session_id for j in self.jobs for e in j.events} - self.p._tenants.keys()
        if not wanted:
            return
        rows = self.conn.execute(
            select(T_SESSIONS.c.id, T_SESSIONS.c.tenant_id).where(T_SESSIONS.c.id.in_(wanted))
        )
        self.p._tenants.update({int(r.id): str(r.tenant_id) for r in rows})

    def _tenant(self, job: _Job, session_id: int) -> str | None:
        tenant = self.p._tenants.get(session_id)
        if tenant is None:
            job.result.rejected += 1
            log.warning("event for unknown session id %s rejected", session_id)
        return tenant

    def _items(self) -> list[_Item]:
        items: list[_Item] = []
        for job in self.jobs:
            for ev in job.events:
                if not isinstance(ev, Message | Reaction):
                    continue
                tenant = self._tenant(job, ev.session_id)
                if tenant is None:
                    continue
                if not self._wanted(ev.chat):
                    job.result.ignored += 1
                    continue
                items.append(_Item(job=job, event=ev, tenant_id=tenant, chat=ev.chat))
        return items

    def _wanted(self, chat: Address) -> bool:
        if chat.kind is ChatKind.BROADCAST:
            return self.p.crm.keep_status_broadcast
        if chat.kind is ChatKind.NEWSLETTER:
            return self.p.crm.keep_newsletters
        return True

    # --- identities ---------------------------------------------------------------------------

    def _resolve_identities(self, items: list[_Item]) -> None:
        """Learn LID→phone pairs, and give LID-only addresses their phone when we know it."""
        pairs: dict[tuple[str, str], str] = {}
        for it in items:
            for addr in (it.chat, it.event.sender):
                if addr is not None and addr.lid and addr.phone:
                    pairs[(it.tenant_id, addr.lid)] = addr.phone
        cache = self.p._identities
        self.learned = {k: v for k, v in pairs.items() if cache.get(k) != v}
        if self.learned:
            self._upsert_identities(self.learned)
        unknown = {(it.tenant_id, it.chat.lid) for it in items if it.chat.lid and not it.chat.phone}
        unknown -= pairs.keys()
        known = {k: cache[k] for k in unknown if k in cache}
        if unknown - known.keys():
            known.update(self._lookup_identities(unknown - known.keys()))
        known.update(pairs)
        for it in items:
            lid = it.chat.lid
            if lid and not it.chat.phone and (it.tenant_id, lid) in known:
                phone = known[(it.tenant_id, lid)]
                it.chat = Address(jid=phone_jid(phone), kind=it.chat.kind, phone=phone, lid=lid)

    def _upsert_identities(self, pairs: Mapping[tuple[str, str], str]) -> None:
        rows = [
            {"tenant_id": t, "lid": lid, "phone": phone, "created_at": self.now}
            for (t, lid), phone in sorted(pairs.items())
        ]
        stmt = self._insert(T_IDENTITIES)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "lid"], set_={"phone": stmt.excluded.phone}
        )
        self.conn.execute(stmt, rows)

    def _lookup_identities(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for tenant, lids in _group(keys).items():
            rows = self.conn.execute(
                select(T_IDENTITIES.c.lid, T_IDENTITIES.c.phone).where(
                    T_IDENTITIES.c.tenant_id == tenant, T_IDENTITIES.c.lid.in_(lids)
                )
            )
            found.update({(tenant, r.lid): r.phone for r in rows})
        return found

    # --- chats, leads, notifications ----------------------------------------------------------

    def _resolve_chats(self, items: list[_Item]) -> None:
        wanted: dict[tuple[str, str], _Item] = {}
        for it in items:
            wanted.setdefault((it.tenant_id, it.chat.jid), it)
        # A pair known before this batch had its LID chat merged when it was learned.
        lid_keys = {
            (t, it.chat.lid)
            for (t, _), it in wanted.items()
            if it.chat.lid and it.chat.phone and (t, it.chat.lid) in self.learned
        }
        cached = self.p._chats
        for key in wanted.keys() - lid_keys:
            if key in cached:
                self.chats[key] = cached[key]
        self._select_chats((set(wanted) | lid_keys) - self.chats.keys())
        for key in sorted(lid_keys):
            self._merge_lid_chat(key, wanted)
        missing = sorted(k for k in wanted if k not in self.chats)
        if missing:
            self._create_chats([wanted[k] for k in missing])
        self._ensure_leads([wanted[k] for k in sorted(wanted)])
        for it in items:
            it.chat_id = self.chats[(it.tenant_id, it.chat.jid)].id

    def _select_chats(self, keys: set[tuple[str, str]]) -> None:
        for tenant, jids in _group(keys).items():
            rows = self.conn.execute(self.sql.select_chats, {"tenant": tenant, "jids": jids})
            for r in rows:
                self.chats[(r.tenant_id, r.jid)] = _ChatRow(*r)

    def _merge_lid_chat(self, key: tuple[str, str], wanted: Mapping[Any, _Item]) -> None:
        """A LID-only chat becomes, or joins, the phone chat once the phone is known."""
        lid_chat = self.chats.pop(key, None)
        if lid_chat is None:
            return
        self.dropped.add(key)
        it = next(i for (t, _), i in wanted.items() if t == key[0] and i.chat.lid == key[1])
        phone_key = (key[0], it.chat.jid)
        target = self.chats.get(phone_key)
        if target is None:
            self.conn.execute(
                update(T_CHATS)
                .where(T_CHATS.c.id == lid_chat.id)
                .values(jid=it.chat.jid, phone=it.chat.phone, lid=it.chat.lid, updated_at=self.now)
            )
            lid_chat.jid, lid_chat.phone = it.chat.jid, it.chat.phone
            self.chats[phone_key] = lid_chat
            self._emit(key[0], CHAT_UPDATED, lid_chat.id, phone=it.chat.phone, lid=it.chat.lid)
            return
        for table in (T_MESSAGES, T_OUTBOX):
            self.conn.execute(
                update(table).where(table.c.chat_id == lid_chat.id).values(chat_id=target.id)
            )
        self.conn.execute(delete(T_CHATS).where(T_CHATS.c.id == lid_chat.id))
        self._emit(key[0], CHAT_UPDATED, target.id, mergedChatId=lid_chat.id, lid=it.chat.lid)

    def _create_chats(self, items: list[_Item]) -> None:
        rows = [
            {
                "tenant_id": it.tenant_id,
                "session_id": it.event.session_id,
                "kind": it.chat.kind.value,
                "jid": it.chat.jid,
                "phone": it.chat.phone if it.chat.kind is ChatKind.DIRECT else None,
                "lid": it.chat.lid,
                "name": _chat_name(it),
                "status": "OPEN",
                "unread_count": 0,
                "created_at": self.now,
                "updated_at": self.now,
            }
            for it in items
        ]
        c = T_CHATS.c
        stmt = self._insert(T_CHATS).on_conflict_do_nothing()
        stmt = stmt.returning(c.id, c.tenant_id, c.jid, c.kind, c.phone, c.lead_id)
        created = self.conn.execute(stmt, rows)
        for r in created:
            self.chats[(r.tenant_id, r.jid)] = _ChatRow(*r)
            self._emit(r.tenant_id, CHAT_UPDATED, r.id, created=True, jid=r.jid, kind=r.kind)
        # Rows not returned were created by a concurrent writer: read them.
        self._select_chats({(it.tenant_id, it.chat.jid) for it in items} - self.chats.keys())

    def _ensure_leads(self, items: list[_Item]) -> None:
        """Every direct chat with a phone gets a lead; a new lead notifies the tenant's admins."""
        todo: dict[tuple[str, str], list[_ChatRow]] = defaultdict(list)
        notify: dict[tuple[str, str], bool] = defaultdict(bool)
        for it in items:
            chat = self.chats[(it.tenant_id, it.chat.jid)]
            if chat.kind == ChatKind.DIRECT.value and chat.phone and chat.lead_id is None:
                todo[(chat.tenant_id, chat.phone)].append(chat)
                notify[(chat.tenant_id, chat.phone)] |= it.job.notify
        if not todo:
            return
        leads = self._insert_leads(sorted(todo), todo, notify)
        for key, chats in todo.items():
            for chat in chats:
                chat.lead_id = leads[key]
        chat_ids = sorted(chat.id for chats in todo.values() for chat in chats)
        self.conn.execute(self.sql.link_leads, {"chat_ids": chat_ids})

    def _insert_leads(
        self,
        keys: list[tuple[str, str]],
        chats: Mapping[tuple[str, str], list[_ChatRow]],
        notify: Mapping[tuple[str, str], bool],
    ) -> dict[tuple[str, str], int]:
        defaults = self.p.crm.lead
        rows = [
            {
                "tenant_id": tenant,
                "first_name": _fill(defaults.first_name, phone),
                "last_name": _fill(defaults.last_name, phone),
                "email": _fill(defaults.email, phone),
                "phone": phone,
                "source": defaults.source,
                "status": defaults.status,
                "score": defaults.score,
                "created_at": self.now,
            }
            for tenant, phone in keys
        ]
        c = T_LEADS.c
        stmt = self._insert(T_LEADS).on_conflict_do_nothing().returning(c.id, c.tenant_id, c.phone)
        leads: dict[tuple[str, str], int] = {}
        notes: list[dict[str, Any]] = []
        for r in sorted(self.conn.execute(stmt, rows), key=lambda r: r.id):
            key = (r.tenant_id, r.phone)
            leads[key] = r.id
            chat_id = chats[key][0].id
            self._emit(r.tenant_id, LEAD_CREATED, chat_id, leadId=r.id, phone=r.phone)
            if notify[key]:
                notes += self._notification_rows(r.tenant_id, r.phone, chat_id, r.id)
        if notes:
            self._insert_notifications(notes)
        for tenant, phones in _group(set(keys) - leads.keys()).items():
            rows_ = self.conn.execute(
                select(c.id, c.phone).where(c.tenant_id == tenant, c.phone.in_(phones))
            )
            leads.update({(tenant, r.phone): r.id for r in rows_})
        return leads

    def _notification_rows(
        self, tenant: str, phone: str, chat_id: int, lead_id: int
    ) -> list[dict[str, Any]]:
        texts = self.p.crm.notification
        return [
            {
                "tenant_id": tenant,
                "user_id": user,
                "type": texts.type,
                "title": _fill(texts.title, phone, chat_id),
                "message": _fill(texts.message, phone, chat_id),
                "link": _fill(texts.link, phone, chat_id),
                "chat_id": chat_id,
                "lead_id": lead_id,
                "read": False,
                "created_at": self.now,
            }
            for user in self.p.admins.get(tenant, [])
        ]

    def _insert_notifications(self, rows: list[dict[str, Any]]) -> None:
        inserted = self._insert_returning(T_NOTIFICATIONS, rows, T_NOTIFICATIONS.c.id)
        for row, note_id in zip(rows, inserted, strict=True):
            self._emit(
                row["tenant_id"],
                NOTIFICATION_NEW,
                row["chat_id"],
                notificationId=note_id,
                userId=row["user_id"],
            )

    def _insert_returning(self, table: Any, rows: list[dict[str, Any]], id_col: Any) -> list[int]:
        result = self.conn.execute(_returning_insert(table, id_col, pg=self.pg), rows)
        return _in_row_order(result, pg=self.pg)

    # --- messages -----------------------------------------------------------------------------

    def _insert_messages(self, items: list[_Item]) -> None:
        """Insert what is new (see `_insert_new`); duplicates only carry their ack forward."""
        by_key: dict[tuple[int, str], _Item] = {}
        dupes: list[_Item] = []
        for it in items:
            key = (it.event.session_id, it.event.provider_message_id)
            if key in by_key:
                dupes.append(it)
            else:
                by_key[key] = it
        ordered = sorted(by_key.items())
        inserted = self._insert_new(ordered)
        new = {k: it for k, it in ordered if k in inserted}
        dupes += [it for k, it in by_key.items() if k not in inserted]
        if new:
            for it in new.values():
                it.job.result.new += 1
                it.job.result.new_messages.append(
                    (it.event.session_id, it.event.provider_message_id)
                )
            self._announce(new)
        for it in dupes:
            it.job.result.duplicate += 1
            ack = it.event.ack if isinstance(it.event, Message) else None
            if ack is not None:
                key = (it.event.session_id, it.event.provider_message_id)
                self._acks[key] = max(ack, self._acks.get(key, ack))
        if new:
            self._bump_chats(list(new.values()))
            if self.parked:
                self._drain_pending(self.parked)

    def _insert_new(self, ordered: list[tuple[tuple[int, str], _Item]]) -> set[tuple[int, str]]:
        """Insert the rows; return the keys that were new, and note those with parked updates
        in `self.parked`."""
        if self.pg:
            rows = [self._message_row(it) for _, it in ordered]
            inserted: set[tuple[int, str]] = set()
            for session_id, pmid, parked in self.conn.execute(self.sql.insert_messages, rows):
                inserted.add((session_id, pmid))
                if parked:
                    self.parked.add((session_id, pmid))
            return inserted
        found: set[tuple[int, str]] = set()
        for session_id, ids in _group(k for k, _ in ordered).items():
            params = {"sid": session_id, "ids": ids}
            for pmid, parked in self.conn.execute(self.sql.existing_or_parked, params):
                (self.parked if parked else found).add((session_id, pmid))
        self.parked -= found
        new = [(k, it) for k, it in ordered if k not in found]
        if new:
            self.conn.execute(self.sql.insert_messages, [self._message_row(it) for _, it in new])
        return {k for k, _ in new}

    def _announce(self, new: Mapping[tuple[int, str], _Item]) -> None:
        """Event-log rows for new messages: one per message, or one per chat for summary jobs."""
        each = [key for key, it in new.items() if it.job.realtime == "message"]
        if each:
            self.events.append(_NewMessages(keys=each))
        per_chat: dict[tuple[str, int], int] = defaultdict(int)
        for it in new.values():
            if it.job.realtime == "summary":
                per_chat[(it.tenant_id, it.chat_id)] += 1
        for (tenant, chat_id), n in sorted(per_chat.items()):
            self._emit(tenant, CHAT_UPDATED, chat_id, backfilled=n)

    def _message_row(self, it: _Item) -> dict[str, Any]:
        ev = it.event
        row: dict[str, Any] = {
            "tenant_id": it.tenant_id,
            "chat_id": it.chat_id,
            "session_id": ev.session_id,
            "provider_message_id": ev.provider_message_id,
            "from_me": ev.from_me,
            "sender_jid": ev.sender.jid if ev.sender else None,
            "sender_phone": ev.sender.phone if ev.sender else None,
            "sent_at": _utc(ev.timestamp),
            "source": it.job.source,
            "raw": dict(ev.raw) if ev.raw is not None else None,
            "edited": False,
            "revoked": False,
            "media_voice": False,
            "created_at": self.now,
        }
        if isinstance(ev, Reaction):
            row.update(
                type=MessageType.REACTION.value, body=ev.emoji, reply_to=ev.target_message_id
            )
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
        return row

    def _bump_chats(self, items: list[_Item]) -> None:
        """Last message time, unread count and answering session of the chats that got new
        messages, computed by the database from those messages. History (backfill) is not
        unread news."""
        groups: dict[tuple[int, bool], list[str]] = defaultdict(list)
        for it in items:
            groups[(it.event.session_id, it.job.realtime == "message")].append(
                it.event.provider_message_id
            )
        for (session_id, unread), ids in sorted(groups.items()):
            params = {"sid": session_id, "ids": ids, "unread": int(unread), "now": self.now}
            self.conn.execute(self.sql.bump_chats, params)

    # --- acks, edits, revokes -----------------------------------------------------------------

    def _drain_pending(self, keys: set[tuple[int, str]]) -> None:
        """Apply (and forget) updates that arrived before these messages."""
        p = T_PENDING.c
        for session_id, ids in _group(keys).items():
            rows = self.conn.execute(
                delete(T_PENDING)
                .where(p.session_id == session_id, p.provider_message_id.in_(ids))
                .returning(p.provider_message_id, p.ack, p.edit_body, p.edited_at, p.revoked_at)
            )
            for r in rows:
                key = (session_id, r.provider_message_id)
                if r.ack is not None:
                    level = AckLevel(r.ack)
                    self._acks[key] = max(level, self._acks.get(key, level))
                if r.edited_at is not None:
                    self._edits[key] = (r.edit_body, r.edited_at)
                if r.revoked_at is not None:
                    self._revokes[key] = r.revoked_at

    def _collect_updates(self) -> None:
        for job in self.jobs:
            for ev in job.events:
                if not isinstance(ev, Ack | Edit | Revoke):
                    continue
                if self._tenant(job, ev.session_id) is None:
                    continue
                key = (ev.session_id, ev.provider_message_id)
                if isinstance(ev, Ack):
                    self._acks[key] = max(ev.ack, self._acks.get(key, ev.ack))
                elif isinstance(ev, Edit):
                    self._edits[key] = (ev.body, _utc(ev.timestamp) if ev.timestamp else self.now)
                else:
                    self._revokes[key] = _utc(ev.timestamp) if ev.timestamp else self.now

    def _apply_updates(self) -> None:
        self._collect_updates()
        keys = set(self._acks) | set(self._edits) | set(self._revokes)
        if not keys:
            return
        current = self._current(keys)
        missing = sorted(keys - current.keys())
        if missing:
            self._park(missing)
        acks: list[dict[str, Any]] = []
        edits: list[dict[str, Any]] = []
        revokes: list[dict[str, Any]] = []
        for key, (msg_id, tenant, chat_id, ack, stored, revoked) in sorted(current.items()):
            new_ack = self._acks.get(key)
            if new_ack is not None and _advances(ack, new_ack):
                acks.append({"b_id": msg_id, "b_ack": int(new_ack)})
                self._emit(
                    tenant, MESSAGE_ACK, chat_id, msg_id, ack=int(new_ack), ackName=new_ack.name
                )
            # An edit that leaves the text as stored, or a revoke of a revoked message, changes
            # nothing: a poll that sees an edit its webhook already brought (Evolution keeps
            # the edited text on the row) must not announce it again.
            if key in self._edits and self._edits[key][0] != stored:
                body, at = self._edits[key]
                edits.append({"b_id": msg_id, "b_body": body, "b_at": at})
                self._emit(tenant, MESSAGE_EDITED, chat_id, msg_id, body=body)
            if key in self._revokes and not revoked:
                revokes.append({"b_id": msg_id, "b_at": self._revokes[key]})
                self._emit(tenant, MESSAGE_REVOKED, chat_id, msg_id)
        self._update_messages(acks, edits, revokes)

    def _update_messages(
        self, acks: list[dict[str, Any]], edits: list[dict[str, Any]], revokes: list[dict[str, Any]]
    ) -> None:
        """One executemany UPDATE per kind of change."""
        c = T_MESSAGES.c
        by_id = update(T_MESSAGES).where(c.id == bindparam("b_id"))
        at = bindparam("b_at", type_=c.edited_at.type)
        for params, values in (
            (acks, {"ack": bindparam("b_ack")}),
            (edits, {"body": bindparam("b_body"), "edited": True, "edited_at": at}),
            (revokes, {"revoked": True, "revoked_at": at}),
        ):
            if params:
                self.conn.execute(by_id.values(**values), params)

    def _current(self, keys: set[tuple[int, str]]) -> dict[tuple[int, str], _Stored]:
        found: dict[tuple[int, str], _Stored] = {}
        for session_id, ids in _group(keys).items():
            rows = self.conn.execute(self.sql.current, {"sid": session_id, "ids": ids})
            for msg_id, pmid, tenant_id, chat_id, ack, body, revoked in rows:
                found[(session_id, pmid)] = (msg_id, tenant_id, chat_id, ack, body, bool(revoked))
        return found

    def _park(self, keys: list[tuple[int, str]]) -> None:
        """Keep updates for messages we have not seen yet."""
        rows = []
        for key in keys:
            ack = self._acks.get(key)
            edit = self._edits.get(key)
            rows.append(
                {
                    "session_id": key[0],
                    "provider_message_id": key[1],
                    "ack": int(ack) if ack is not None else None,
                    "edit_body": edit[0] if edit else None,
                    "edited_at": edit[1] if edit else None,
                    "revoked_at": self._revokes.get(key),
                    "created_at": self.now,
                }
            )
        stmt = self._insert(T_PENDING)
        p, ex = T_PENDING.c, stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["session_id", "provider_message_id"],
            set_={
                "ack": case(
                    (p.ack.is_(None), ex.ack),
                    (and_(ex.ack.is_not(None), ex.ack > p.ack), ex.ack),
                    else_=p.ack,
                ),
                "edit_body": case((ex.edited_at.is_not(None), ex.edit_body), else_=p.edit_body),
                "edited_at": case((ex.edited_at.is_not(None), ex.edited_at), else_=p.edited_at),
                "revoked_at": case((ex.revoked_at.is_not(None), ex.revoked_at), else_=p.revoked_at),
            },
        )
        self.conn.execute(stmt, rows)

    # --- sessions, cursors, event log ---------------------------------------------------------

    def _apply_statuses(self) -> None:
        latest: dict[int, tuple[_Job, SessionStatus]] = {}
        for job in self.jobs:
            for ev in job.events:
                if isinstance(ev, SessionStatus) and self._tenant(job, ev.session_id) is not None:
                    latest[ev.session_id] = (job, ev)
        c = T_SESSIONS.c
        for session_id, (_job, ev) in sorted(latest.items()):
            at = _utc(ev.timestamp) if ev.timestamp else self.now
            res = self.conn.execute(
                update(T_SESSIONS)
                .where(c.id == session_id, or_(c.status.is_(None), c.status != ev.status))
                .values(status=ev.status, status_at=at)
                .returning(c.name)
            )
            name = res.scalar_one_or_none()
            if name is not None:
                self._emit(
                    self.p._tenants[session_id],
                    SESSION_STATUS,
                    None,
                    None,
                    sessionId=session_id,
                    session=name,
                    status=ev.status,
                    **dict(ev.detail),
                )

    def _advance_cursors(self) -> None:
        best: dict[tuple[int, str], float] = {}
        for job in self.jobs:
            for cur in job.cursors:
                key = (cur.session_id, cur.scope)
                best[key] = max(cur.ts, best.get(key, cur.ts))
        if not best:
            return
        rows = [
            {"session_id": s, "scope": scope, "ts": ts, "updated_at": self.now}
            for (s, scope), ts in sorted(best.items())
        ]
        stmt = self._insert(T_CURSORS)
        c, ex = T_CURSORS.c, stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["session_id", "scope"],
            set_={"ts": case((ex.ts > c.ts, ex.ts), else_=c.ts), "updated_at": ex.updated_at},
        )
        self.conn.execute(stmt, rows)

    def _append_events(self) -> list[PublishedEvent]:
        """Write the event log in emission order; new-message rows are made server-side."""
        out: list[PublishedEvent] = []
        run: list[dict[str, Any]] = []
        for item in [*self.events, None]:
            if isinstance(item, dict):
                run.append(item)
                continue
            if run:
                ids = self._insert_returning(T_EVENTS, run, T_EVENTS.c.id)
                out += [_published(i, e) for i, e in zip(ids, run, strict=True)]
                run = []
            if isinstance(item, _NewMessages):
                out += self._new_message_events(item)
        if out and self.pg:
            self.conn.execute(
                text("SELECT pg_notify('wasync_events', :id)"), {"id": str(out[-1].id)}
            )
        for job in self.jobs:
            job.result.event_ids = [e.id for e in out]
        return out

    def _new_message_events(self, block: _NewMessages) -> list[PublishedEvent]:
        """`INSERT INTO events ... SELECT ... FROM messages`: no per-row parameters."""
        out: list[PublishedEvent] = []
        for session_id, ids in _group(block.keys).items():
            params = {"sid": session_id, "ids": ids, "now": self.now}
            # RETURNING order is unspecified: sort by event id (a key, not Row comparisons,
            # which run Python code per comparison).
            result = self.conn.execute(self.sql.new_message_events, params).all()
            rows = sorted(result, key=itemgetter(0))
            out += [
                PublishedEvent(
                    id=event_id,
                    tenant_id=tenant_id,
                    type=NEW_MESSAGE,
                    chat_id=chat_id,
                    message_id=message_id,
                    data={},
                )
                for event_id, tenant_id, chat_id, message_id in rows
            ]
        return out


def _published(event_id: int, e: Mapping[str, Any]) -> PublishedEvent:
    return PublishedEvent(
        id=event_id,
        tenant_id=e["tenant_id"],
        type=e["type"],
        chat_id=e["chat_id"],
        message_id=e["message_id"],
        data=e["data"] or {},
    )


def _advances(current: int | None, new: AckLevel) -> bool:
    """Acks only move forward; ERROR only replaces "nothing yet" or PENDING."""
    if current is None:
        return True
    if new is AckLevel.ERROR:
        return current == AckLevel.PENDING
    return new > current


def _group(keys: Iterable[tuple[Any, Any]]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = defaultdict(list)
    for a, b in keys:
        out[a].append(b)
    return out


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _fill(template: str, phone: str, chat_id: int | None = None) -> str:
    return template.format(phone=phone, last4=phone[-4:], chat_id=chat_id if chat_id else "")


def _chat_name(it: _Item) -> str | None:
    ev = it.event
    if isinstance(ev, Message) and not ev.from_me and it.chat.kind is ChatKind.DIRECT:
        return ev.push_name
    return None
