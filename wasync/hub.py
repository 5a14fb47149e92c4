"""Real-time fan-out: the event log, in id order, to each WebSocket client it concerns.

The hub is a pipeline `Subscriber`; its fan-out task takes the rows after the last one it
delivered, judges each row once per scope key (tenant, role, user) with `visible()`,
serializes it once, and offers it to every client of the keys that may see it: written to the
socket at once when it takes the bytes, else into a bounded backlog (`wasync.wsclient`). A
client that cannot keep up is told to reconnect with `since`; ingest never waits.
Ids become visible in id order (DESIGN.md, "The one flow" 4), so "after the last id" is exact:
the rows this node's pipeline hands over are used as they are when they follow the last id
without a gap (only their messages are read); otherwise (another node's NOTIFY, another
process's rows on SQLite, a gap, a restart) the log is read, one page per query, not per
client. One path for this node's commits, other nodes' and replay, without gaps or duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync import eventlog
from wasync.eventlog import (
    MESSAGE_FIELDS,
    NEW_MESSAGE,
    T_MESSAGES,
    LogRow,
    PublishedEvent,
    frame_json,
    read_log,
    to_json,
)
from wasync.outage import Outage
from wasync.principal import Principal
from wasync.scopes import Scopes, visible
from wasync.store import Store, is_unavailable
from wasync.store.listener import PgListener, asyncpg_dsn
from wasync.untrusted import parse_int
from wasync.wsclient import CLOSE_GOING_AWAY, CLOSE_LAGGING, Client, ScopeKey

log = logging.getLogger(__name__)

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_LAGGING", "Client", "Hub"]


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
        notify_grace_s: float = 0.005,
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
        # tenant -> scope key -> clients: a row is judged once per key (`scope_key`)
        self._clients: dict[str, dict[ScopeKey, set[Client]]] = {}
        self._scopes = Scopes()
        self._last_id = 0
        # This node's commits, handed over by the pipeline: when they follow the last id
        # delivered without a gap, they are the log's next rows and are not read back.
        self._handed: list[PublishedEvent] = []
        self._handed_high = 0
        self._notified_high = 0
        self.notify_grace_s = notify_grace_s
        self._must_read = True  # rows may exist that were not handed (other nodes, processes)
        self.log_reads = 0  # pages read from the log by the fan-out (for tests and metrics)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def client_count(self) -> int:
        """Connected clients."""
        return sum(len(c) for groups in self._clients.values() for c in groups.values())

    async def __aenter__(self) -> Hub:
        async with self.store.read() as conn:
            self._last_id = await eventlog.last_id(conn)
        self._task = asyncio.create_task(self._run(), name="wasync-hub-fanout")
        if self.listen:
            self.listener = PgListener(
                asyncpg_dsn(self.store.url),
                on_event=self._notified,
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
        """Pipeline subscriber: this node's committed rows, in id order."""
        if not events:
            return
        self._handed.extend(events)
        self._handed_high = max(self._handed_high, events[-1].id)
        if len(self._handed) > 4 * self.page_size:  # the fan-out is behind: read instead
            self._handed.clear()
            self._must_read = True
        self._wake.set()

    def wake(self) -> None:
        """Something may have been committed elsewhere (another node or process): read the
        log."""
        self._must_read = True
        self._wake.set()

    def _notified(self, payload: str | None) -> None:
        """A NOTIFY carries its commit's last id. This node's own usually arrives before the
        pipeline hands the rows over, so one above what was handed waits `notify_grace_s`:
        still not handed by then, it is another node's, and the log is read."""
        last = parse_int(payload, lo=0) if payload else None
        if last is None:  # (re)connected: notifications may have been lost
            self.wake()
        elif last > self._known():
            self._notified_high = max(self._notified_high, last)
            asyncio.get_running_loop().call_later(self.notify_grace_s, self._check_notified)

    def _check_notified(self) -> None:
        if self._notified_high > self._known():
            self.wake()

    def _known(self) -> int:
        return max(self._handed_high, self._last_id)

    @property
    def position(self) -> int:
        """The last event-log id fanned out (new clients get live frames above it)."""
        return self._last_id

    def clients(self) -> list[Client]:
        """The connected clients (for metrics and tests)."""
        return [c for groups in self._clients.values() for cs in groups.values() for c in cs]

    def subscribe(self, principal: Principal) -> Client:
        """A new client; it gets live frames for ids above `client.start_id`."""
        client = Client(principal, start_id=self._last_id, max_frames=self.queue_frames)
        groups = self._clients.setdefault(principal.tenant_id, {})
        groups.setdefault(client.key, set()).add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        """Forget a client (idempotent)."""
        tenant = client.principal.tenant_id
        groups = self._clients.get(tenant, {})
        clients = groups.get(client.key)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del groups[client.key]
            if not groups:
                del self._clients[tenant]

    def close_all(self, code: int, reason: str) -> None:
        """Close every client (each reconnects with `since`): shutdown, or a forced rebalance."""
        for client in self.clients():
            client.close(code, reason)

    async def retained(self, since: int) -> bool:
        """True when the log still holds everything after `since` (else: resync)."""
        async with self.store.read() as conn:
            return await eventlog.retained(conn, since)

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
        outage = Outage(log, "hub: event log")
        while True:
            await self._next_wake()
            try:
                await self._catch_up()
            except Exception as exc:  # the fan-out must outlive a database outage
                self._must_read = True
                if is_unavailable(exc):
                    outage.failed(exc)
                else:
                    outage.broken(exc)
                self._wake.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_s)
            else:
                outage.ok()
                delay = self.retry_s

    async def _next_wake(self) -> None:
        """A local commit, or (SQLite) `poll_s` without one."""
        if self.poll_s is None:
            await self._wake.wait()
        else:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:  # another process may have written: look
                self._must_read = True
        self._wake.clear()

    async def _catch_up(self) -> None:
        while True:
            if not self._clients and await self._skip_to_end():
                return
            rows = await self._next_rows()
            # Checked again after every await: a client of another tenant may have joined.
            while missing := self._scopes.missing(rows, self._clients):
                async with self.store.read() as conn:
                    await self._scopes.load(conn, missing, as_of=self._last_id)
            if rows:
                self._deliver(rows)
            if len(rows) < self.page_size:
                return

    async def _next_rows(self) -> list[LogRow]:
        """The log's rows after the last one delivered: the handed ones when they follow it
        without a gap (ids become visible in id order, so nothing else can sit between), else
        a page read from the log."""
        handed, self._handed = self._handed, []
        fresh = [e for e in handed if e.id > self._last_id]
        if not self._must_read:
            if not fresh:  # delivered already (read with another node's rows)
                return []
            if self._follows(fresh):
                async with self.store.read() as conn:
                    return await _handed_rows(conn, fresh)
        self._must_read = False
        self.log_reads += 1
        async with self.store.read() as conn:
            rows = await read_log(conn, after=self._last_id, limit=self.page_size)
        if len(rows) >= self.page_size:  # a full page: more may follow
            self._must_read = True
        return rows

    def _follows(self, events: list[PublishedEvent]) -> bool:
        first = self._last_id + 1
        return all(e.id == first + i and e.created_at is not None for i, e in enumerate(events))

    async def _skip_to_end(self) -> bool:
        """Nobody is connected: jump to the end of the log without reading it; past the rows
        this node was handed when they follow the last one without a gap (as `_next_rows`
        would deliver them), without even a query."""
        if not self._must_read:
            fresh = [e for e in self._handed if e.id > self._last_id]
            if not fresh or self._follows(fresh):
                if fresh:
                    self._last_id = fresh[-1].id
                self._handed = []
                self._scopes.clear()
                return True
        # Cleared before the query, as `_next_rows` does: a wake arriving while it runs (a
        # NOTIFY of another node's rows) sets it again and is not lost.
        self._must_read = False
        async with self.store.read() as conn:
            high = await eventlog.last_id(conn)
        if self._clients:  # someone subscribed meanwhile, at the old position
            self._must_read = True
            return False
        self._last_id = max(self._last_id, high)
        self._handed = [e for e in self._handed if e.id > self._last_id]
        self._scopes.clear()
        return True

    def _deliver(self, rows: list[LogRow]) -> None:
        """Offer each row to the clients that may see it; synchronous, so ids stay in order.

        Each row is judged once per scope key (tenant, role, user: all `visible` reads of a
        principal) and serialized once, for every client that gets it."""
        for row in rows:
            groups = self._clients.get(row.tenant_id)
            if not groups:
                self._scopes.forget(row)
                self._last_id = row.id
                continue
            before, after = self._scopes.step(row)
            text: str | None = None
            for clients in groups.values():
                judge = next(iter(clients)).principal
                if visible(judge, row, before, after):
                    text = text or frame_json(row)
                    for client in clients:
                        client.offer(row.id, text)
            self._last_id = row.id


async def _handed_rows(conn: AsyncConnection, events: Sequence[PublishedEvent]) -> list[LogRow]:
    """The rows `read_log` would return for these just-committed events, reading only their
    messages (by primary key), not the log."""
    ids = [e.message_id for e in events if e.type == NEW_MESSAGE and e.message_id is not None]
    messages: dict[int, dict[str, Any]] = {}
    if ids:
        stmt = select(*(T_MESSAGES.c[n] for n in MESSAGE_FIELDS)).where(T_MESSAGES.c.id.in_(ids))
        for r in await conn.execute(stmt):
            messages[r.id] = to_json(r._mapping, MESSAGE_FIELDS)
    return [
        LogRow(
            id=e.id,
            tenant_id=e.tenant_id,
            type=e.type,
            chat_id=e.chat_id,
            message_id=e.message_id,
            data=e.data,
            created_at=e.created_at,
            message=messages.get(e.message_id)
            if e.type == NEW_MESSAGE and e.message_id is not None
            else None,
        )
        for e in events
    ]
