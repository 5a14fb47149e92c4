"""Real-time fan-out: the event log, in id order, to each WebSocket client it concerns.

The hub is a pipeline `Subscriber`, but `publish()` only wakes its fan-out task: that task
reads the `events` rows after the last one it delivered (joined with their messages, one query
per page, not per client) and offers each client the frames `visible()` allows, into a bounded
queue. A client that cannot keep up is told to reconnect with `since`; ingest never waits.
Reading from the log, not from `publish()`, gives one path for this node's commits, other
nodes' commits (Postgres `LISTEN wasync_events`) and replay, without gaps or duplicates: ids
become visible in id order (DESIGN.md, "The one flow" 4), so "after the last id" is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import Text, and_, cast, func, literal, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync.auth import Principal, can_see
from wasync.pipeline import CHAT_UPDATED, NEW_MESSAGE, PublishedEvent
from wasync.store import Store
from wasync.store import models as m

log = logging.getLogger(__name__)

T_EVENTS = m.EventRow.__table__  # type: ignore[attr-defined]
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]

CHANNEL = "wasync_events"  # the pipeline's `pg_notify` channel
LISTEN_APP_NAME = "wasync-hub-listen"
# Close codes a client acts on by reconnecting with `since` (the reason ends `since=<id>`).
CLOSE_LAGGING = 4008  # its queue overflowed: it was too slow
CLOSE_GOING_AWAY = 1001  # the server is stopping
MESSAGE_FIELDS = tuple(c.name for c in T_MESSAGES.c if c.name not in ("raw", "tenant_id"))
SCOPE_CACHE_LIMIT = 100_000


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
    """An ISO 8601 UTC time; SQLite hands back naive UTC datetimes."""
    if value is None:
        return None
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat()


def to_json(row: Mapping[Any, Any], fields: Iterable[str], prefix: str = "") -> dict[str, Any]:
    """Columns of `row` (named `prefix + field`) as a camelCase JSON object."""
    out: dict[str, Any] = {}
    for name in fields:
        value = row[prefix + name]
        out[camel(name)] = iso(value) if isinstance(value, datetime) else value
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


def visible(p: Principal, row: LogRow, before: str | None, after: str | None) -> bool:
    """May `p` receive `row`? `before`/`after`: the chat's assignee around the row.

    Notifications go to the notified user only; rows without a chat (session:status) to the
    whole tenant; chat rows by `can_see`, and an assignment also to the user it moves away from.
    """
    if row.tenant_id != p.tenant_id:
        return False
    if row.type.startswith("notification:"):
        return row.data.get("userId") == p.user_id
    if row.chat_id is None:
        return True
    return can_see(p, tenant_id=row.tenant_id, assigned_user_id=after) or can_see(
        p, tenant_id=row.tenant_id, assigned_user_id=before
    )


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


class Client:
    """One WebSocket client: who it is, where it joined the log, a bounded queue of frames."""

    def __init__(self, principal: Principal, *, start_id: int, max_frames: int) -> None:
        self.principal = principal
        self.start_id = start_id
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(max_frames)
        self.closing = asyncio.Event()
        self.close_code = 0
        self.close_reason = ""

    def offer(self, frame_id: int, text: str) -> None:
        """Queue a frame without waiting; a full queue closes the client (CLOSE_LAGGING)."""
        if self.closing.is_set():
            return
        try:
            self.queue.put_nowait((frame_id, text))
        except asyncio.QueueFull:
            self.close(CLOSE_LAGGING, "lagging")

    def close(self, code: int, reason: str) -> None:
        """Ask the connection to close with `code`; it adds `since=<id>` to the reason."""
        if not self.closing.is_set():
            self.close_code, self.close_reason = code, reason
            self.closing.set()


class Hub:
    """Fans committed event-log rows out to clients; resumes them from the log.

    Use as an async context manager. On Postgres (`listen`, the default there) it also
    LISTENs on `wasync_events` to learn of other nodes' commits.
    """

    def __init__(
        self,
        store: Store,
        *,
        queue_frames: int = 1000,
        page_size: int = 500,
        listen: bool | None = None,
        retry_s: float = 0.5,
        max_retry_s: float = 5.0,
        listen_check_s: float = 10.0,
        poll_s: float | None = None,
    ) -> None:
        self.store = store
        # SQLite has no NOTIFY: rows another process wrote (wasync backfill, wasync send) are
        # found by looking at the log every `poll_s` (one max(id) query when nobody listens).
        self.poll_s = (1.0 if store.is_sqlite else None) if poll_s is None else poll_s
        self.queue_frames = queue_frames
        self.page_size = page_size
        self.listen = (not store.is_sqlite) if listen is None else listen
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self.listen_check_s = listen_check_s
        self.listener: PgListener | None = None
        self._clients: dict[str, set[Client]] = {}
        self._scopes = Scopes()
        self._last_id = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def last_id(self) -> int:
        """The last event-log id fanned out."""
        return self._last_id

    @property
    def client_count(self) -> int:
        """Connected clients."""
        return sum(len(s) for s in self._clients.values())

    async def __aenter__(self) -> Hub:
        async with self.store.read() as conn:
            self._last_id = int((await conn.execute(select(func.max(T_EVENTS.c.id)))).scalar() or 0)
        self._task = asyncio.create_task(self._run(), name="wasync-hub-fanout")
        if self.listen:
            self.listener = PgListener(
                _asyncpg_dsn(self.store),
                on_event=self.wake,
                retry_s=self.retry_s,
                max_retry_s=self.max_retry_s,
                check_s=self.listen_check_s,
            )
            await self.listener.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close_all(CLOSE_GOING_AWAY, "server stopping")
        if self.listener is not None:
            await self.listener.__aexit__()
            self.listener = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def publish(self, events: Sequence[PublishedEvent]) -> None:
        """Pipeline subscriber: committed rows exist; read them from the log."""
        if events:
            self.wake()

    def wake(self) -> None:
        """Something was committed (here or on another node): catch up with the log."""
        self._wake.set()

    @property
    def position(self) -> int:
        """The last event-log id fanned out (new clients get live frames above it)."""
        return self._last_id

    def clients(self) -> list[Client]:
        """The connected clients (for metrics and tests)."""
        return [c for clients in self._clients.values() for c in clients]

    def subscribe(self, principal: Principal) -> Client:
        """A new client; it gets live frames for ids above `client.start_id`."""
        client = Client(principal, start_id=self._last_id, max_frames=self.queue_frames)
        self._clients.setdefault(principal.tenant_id, set()).add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        """Forget a client (idempotent)."""
        clients = self._clients.get(client.principal.tenant_id)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self._clients[client.principal.tenant_id]

    def close_all(self, code: int, reason: str) -> None:
        """Close every client (each reconnects with `since`): shutdown, or a forced rebalance."""
        for client in self.clients():
            client.close(code, reason)

    async def retained(self, since: int) -> bool:
        """True when the log still holds everything after `since` (else: resync)."""
        e = T_EVENTS.c
        async with self.store.read() as conn:
            low, high = (await conn.execute(select(func.min(e.id), func.max(e.id)))).one()
        if low is None:
            return since == 0
        return bool(low - 1 <= since <= high)

    async def history(
        self, principal: Principal, *, after: int, until: int
    ) -> AsyncIterator[list[tuple[int, str]]]:
        """Pages of `(id, frame)` that `principal` may see, for ids in `(after, until]`."""
        scopes, position = Scopes(), after
        while position < until:
            async with self.store.read() as conn:
                rows = await read_log(
                    conn,
                    after=position,
                    until=until,
                    tenant_id=principal.tenant_id,
                    limit=self.page_size,
                )
                missing = scopes.missing(rows)
                if missing:
                    await scopes.load(conn, missing, as_of=position)
            if not rows:
                return
            yield [(r.id, frame_json(r)) for r in rows if visible(principal, r, *scopes.step(r))]
            position = rows[-1].id

    # --- fan-out ------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.retry_s
        while True:
            await self._next_wake()
            try:
                await self._catch_up()
                delay = self.retry_s
            except Exception as exc:  # the fan-out must outlive a database outage
                log.warning("hub: cannot read the event log (%s); retrying in %.1fs", exc, delay)
                self._wake.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_s)

    async def _next_wake(self) -> None:
        """A local commit, or (SQLite) `poll_s` without one."""
        if self.poll_s is None:
            await self._wake.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
        self._wake.clear()

    async def _catch_up(self) -> None:
        while True:
            if not self._clients and await self._skip_to_end():
                return
            async with self.store.read() as conn:
                rows = await read_log(conn, after=self._last_id, limit=self.page_size)
            # Checked again after every await: a client of another tenant may have joined.
            while missing := self._scopes.missing(rows, self._clients):
                async with self.store.read() as conn:
                    await self._scopes.load(conn, missing, as_of=self._last_id)
            if rows:
                self._deliver(rows)
            if len(rows) < self.page_size:
                return

    async def _skip_to_end(self) -> bool:
        """Nobody is connected: jump to the end of the log without reading it."""
        async with self.store.read() as conn:
            high = (await conn.execute(select(func.max(T_EVENTS.c.id)))).scalar()
        if self._clients:  # someone subscribed meanwhile, at the old position
            return False
        self._last_id = max(self._last_id, int(high or 0))
        self._scopes.clear()
        return True

    def _deliver(self, rows: list[LogRow]) -> None:
        """Offer each row to the clients that may see it; synchronous, so ids stay in order."""
        for row in rows:
            clients = self._clients.get(row.tenant_id)
            if not clients:
                self._scopes.forget(row)
                self._last_id = row.id
                continue
            before, after = self._scopes.step(row)
            text: str | None = None
            for client in clients:
                if visible(client.principal, row, before, after):
                    text = text or frame_json(row)
                    client.offer(row.id, text)
            self._last_id = row.id


def _asyncpg_dsn(store: Store) -> str:
    return store.url.set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener:
    """A dedicated asyncpg connection LISTENing on `wasync_events`, reconnecting with backoff.

    `on_event` runs for every notification and after every (re)connect, since notifications
    sent while disconnected are lost; a `SELECT 1` every `check_s` finds silent drops.
    """

    def __init__(
        self,
        dsn: str,
        *,
        on_event: Callable[[], None],
        retry_s: float = 0.5,
        max_retry_s: float = 5.0,
        check_s: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.on_event = on_event
        self.retry_s, self.max_retry_s, self.check_s = retry_s, max_retry_s, check_s
        self.connects = 0  # successful connections so far
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PgListener:
        self._task = asyncio.create_task(self._run(), name="wasync-hub-listen")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = self.retry_s
        while True:
            connects = self.connects
            try:
                await self._session()
            except Exception as exc:  # reconnect whatever went wrong
                if self.connects > connects:
                    delay = self.retry_s
                log.warning("hub: LISTEN connection lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_s)

    async def _session(self) -> None:
        """One connection's life; returns only by raising."""
        conn = await asyncpg.connect(
            self.dsn, timeout=10, server_settings={"application_name": LISTEN_APP_NAME}
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(CHANNEL, lambda *_args: self.on_event())
            self.connects += 1
            self.on_event()
            while True:
                try:
                    await asyncio.wait_for(lost.wait(), self.check_s)
                    raise ConnectionError("connection closed")
                except TimeoutError:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self.check_s)
        finally:
            conn.terminate()
