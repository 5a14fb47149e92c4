"""Which node holds which session: lease rows with a TTL on Postgres; on SQLite, one node.

Rows, not advisory locks: a `session_leases` row (session, node, `expires_at`) is renewed by
each node's heartbeat every `renew_interval_s`, so it survives a transaction pooler, any
connection may renew it, and `wasync sessions` (or a CRM) can read who holds what. An advisory
lock dies with its connection and is visible only in `pg_locks`.

Each round a node moves its `nodes` row ahead, counts the live nodes, renews its leases and
takes its fair share `ceil(sessions / live nodes)`: free or expired leases are claimed with one
conditional `INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at < now() RETURNING`, and a
node over its share drains the extra (no new work starts; the lease is given back once the
work in flight has finished). A node that dies loses its leases when they expire; one that
stops gives them back at once and NOTIFYs the others (`wasync_leases`), which take over without
waiting for their next round; `leave()` starts that as soon as the node begins to stop. Times
are the database's (`now()`), so node clocks may differ.

A `nodes` row belongs to one process: the `started_at` its first round wrote. A second live
process with the same node id holds nothing (one WARNING) and never gives back the first
one's leases; a node restarted under its old id (after `kill -9`) takes the row once the old
one expired, and lease rows under its id that it does not track (its predecessor's, a claim
whose commit answer was lost) are deleted, not renewed.

SQLite has one node: it holds every session, and an OS lock (`wasync.nodelock`: `flock` on
`<database>.lock`, held for the daemon's life) refuses a second `wasync run` on the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Self

from sqlalchemy import case, delete, false, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync.config.cluster import ClusterConfig
from wasync.lease_holders import Holder, holders
from wasync.outage import Outage
from wasync.store import Store
from wasync.store import models as m
from wasync.store.listener import PgListener, asyncpg_dsn

log = logging.getLogger(__name__)

T_NODES = m.Node.__table__  # type: ignore[attr-defined]
T_LEASES = m.SessionLease.__table__  # type: ignore[attr-defined]
CHANNEL = "wasync_leases"  # NOTIFY when leases are given back or a node joins


class NodeIdInUse(RuntimeError):
    """Another live process holds this node id's `nodes` row."""


@dataclass(slots=True)
class _Tenure:
    """One session as this node holds it: may new work start, and how much is in flight."""

    active: bool = True
    busy: int = 0


class Leases:
    """The sessions this node serves (see the module docstring). An async context manager.

    `holds(session_id)` says whether new work may start; `hold(session_id)` wraps that work so
    a lease being given back waits for it. `listeners` hear the new set after each change.
    """

    def __init__(
        self,
        store: Store,
        cfg: ClusterConfig,
        session_ids: Iterable[int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.cfg, self.clock = store, cfg, clock
        self.node_id = cfg.resolved_node_id()
        self.session_ids = sorted(set(session_ids))
        self.ttl_s, self.renew_s = cfg.lease_ttl_s, cfg.resolved_renew_s()
        self.listeners: list[Callable[[frozenset[int]], None]] = []
        self._tenures: dict[int, _Tenure] = {}
        self._instance: datetime | None = None  # our `nodes.started_at`: this process's mark
        self._leaving = False  # stopping: claim nothing more, give everything back
        # Another live process holding our node id: one WARNING, one INFO when it is ours.
        self._id_in_use = Outage(
            log, "leases", down="%s", back=f"node id {self.node_id!r} is this process's now"
        )
        self._valid_until = math.inf
        self._wake = asyncio.Event()
        self._next_s = self.renew_s  # until the next round
        self._task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._outage = Outage(log, "leases")
        self.rounds = 0

    # -- what callers ask --

    @property
    def held(self) -> frozenset[int]:
        """The sessions this node may start work on now."""
        if self.clock() >= self._valid_until:
            return frozenset()
        return frozenset(s for s, t in self._tenures.items() if t.active)

    @property
    def current(self) -> bool:
        """Did a lease round succeed within the TTL (always on SQLite)? `/readyz` asks."""
        return self.clock() < self._valid_until

    def holds(self, session_id: int) -> bool:
        """May this node poll, send for and fetch media of this session now?"""
        tenure = self._tenures.get(session_id)
        return tenure is not None and tenure.active and self.clock() < self._valid_until

    @contextlib.asynccontextmanager
    async def hold(self, session_id: int) -> AsyncIterator[bool]:
        """`async with leases.hold(sid) as ok:` do the session's work only when `ok`; a lease
        being drained is given back after the block ends."""
        tenure = self._enter(session_id)
        if tenure is None:
            yield False
            return
        try:
            yield True
        finally:
            self._leave(tenure)

    async def run(self, session_id: int, work: Callable[[], Awaitable[object]]) -> bool:
        """`await work()` as inside `hold(session_id)`, when this node holds the session;
        returns whether it ran. A poll cycle's path: no context manager to build per cycle
        (a thousand sessions, one cycle each every 5 s)."""
        tenure = self._enter(session_id)
        if tenure is None:
            return False
        try:
            await work()
        finally:
            self._leave(tenure)
        return True

    def _enter(self, session_id: int) -> _Tenure | None:
        """The session's tenure with one more piece of work in flight, or None when this
        node may not start work for it."""
        tenure = self._tenures.get(session_id)
        if tenure is None or not self.holds(session_id):
            return None
        tenure.busy += 1
        return tenure

    def _leave(self, tenure: _Tenure) -> None:
        tenure.busy -= 1
        if not tenure.active and tenure.busy == 0:
            self._wake.set()  # give it back now, not at the next round

    def leave(self) -> None:
        """The node is stopping: start no new work, claim nothing more, and give each lease
        back as soon as its work in flight has ended (not when the whole daemon has shut
        down: the other nodes take idle sessions over at once)."""
        self._leaving = True
        for tenure in self._tenures.values():
            tenure.active = False
        self._wake.set()

    # -- lifecycle --

    async def __aenter__(self) -> Self:
        if self.store.is_sqlite:  # one node: `node_lock` keeps a second one out
            self._tenures = {sid: _Tenure() for sid in self.session_ids}
            return self
        self._valid_until = -math.inf
        await self._stack.enter_async_context(
            PgListener(
                asyncpg_dsn(self.store.url),
                on_event=lambda _payload: self._wake.set(),
                channel=CHANNEL,
                app_name="wasync-leases-listen",
                label="leases: LISTEN connection",
            )
        )
        with contextlib.suppress(Exception):  # the loop retries; one line per outage
            await self.round()
        await self._notify()  # a node joined: the others rebalance now
        self._task = asyncio.create_task(self._loop(), name="wasync-leases")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            for tenure in self._tenures.values():
                tenure.active = False
            with contextlib.suppress(Exception):
                await self._give_back_all()
        await self._stack.aclose()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_s)
            self._wake.clear()
            with contextlib.suppress(Exception):
                await self.round()

    # -- one round (Postgres) --

    async def round(self) -> None:
        """Heartbeat, give back drained leases, renew the rest, claim up to the fair share."""
        started = self.clock()
        try:
            async with self.store.write() as conn:
                live = await self._heartbeat(conn)
                given = await self._give_back(conn)
                kept = await self._renew(conn)
                share = 0 if self._leaving else math.ceil(len(self.session_ids) / max(1, live))
                claimed = await self._claim(conn, share - len(kept), kept)
                self._next_s = await self._next_round(conn)
        except NodeIdInUse as exc:
            self._id_in_use.failed(exc)
            raise
        except Exception as exc:
            self._outage.failed(exc)
            raise
        self._outage.ok()
        self._id_in_use.ok()
        self.rounds += 1
        self._valid_until = started + self.ttl_s * 0.9  # before the database's expiry
        before = self.held
        self._apply(kept, claimed, share)
        if given:
            await self._notify()
        if self.held != before:
            log.info(
                "leases: node %s holds %d of %d session(s) (%d live node(s))",
                self.node_id,
                len(self.held),
                len(self.session_ids),
                live,
            )
            for listener in self.listeners:
                listener(self.held)

    def _expiry(self) -> Any:
        return func.now() + timedelta(seconds=self.ttl_s)

    async def _heartbeat(self, conn: AsyncConnection) -> int:
        """Move our `nodes` row ahead; the number of live nodes. The row is ours while its
        `started_at` is the one our first round wrote: a second live process with the same
        node id (a copied config) waits instead of sharing its leases, and a node restarted
        under its old id takes the row (and drops the old leases) once the old one expired."""
        n = T_NODES.c
        # A leaving node no longer counts as live: the others' fair share grows at once.
        until = func.now() if self._leaving else self._expiry()
        stmt = pg_insert(T_NODES).values(id=self.node_id, started_at=func.now(), expires_at=until)
        ours = n.started_at == self._instance if self._instance is not None else false()
        upsert = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "expires_at": stmt.excluded.expires_at,
                "started_at": case((ours, n.started_at), else_=stmt.excluded.started_at),
            },
            where=or_(ours, n.expires_at < func.now()),
        ).returning(n.started_at)
        instance = await conn.scalar(upsert)
        if instance is None:
            raise NodeIdInUse(
                f"node id {self.node_id!r} is held by another live process (a second node with"
                " this [cluster] node_id, or this one's predecessor within lease_ttl_s):"
                " holding no session until its row expires"
            )
        if instance != self._instance:  # a new tenure of the row: no lease of the old one
            self._tenures.clear()
            self._instance = instance
        gone = func.now() - timedelta(seconds=self.ttl_s * 20)
        await conn.execute(delete(T_NODES).where(T_NODES.c.expires_at < gone))
        live = select(func.count()).where(T_NODES.c.expires_at > func.now())
        return int(await conn.scalar(live) or 1)

    async def _next_round(self, conn: AsyncConnection) -> float:
        """The heartbeat, or sooner when another node's lease expires first (a node that died:
        take its sessions as soon as they are free, not up to a heartbeat later)."""
        c = T_LEASES.c
        soonest = select(func.min(c.expires_at) - func.now()).where(
            c.node_id != self.node_id, c.expires_at > func.now()
        )
        left: timedelta | None = await conn.scalar(soonest)
        if left is None:
            return self.renew_s
        return min(self.renew_s, max(0.05, left.total_seconds() + 0.05))

    async def _give_back(self, conn: AsyncConnection) -> list[int]:
        done = [s for s, t in self._tenures.items() if not t.active and t.busy == 0]
        if done:
            c = T_LEASES.c
            await conn.execute(
                delete(T_LEASES).where(c.node_id == self.node_id, c.session_id.in_(done))
            )  # the tenures go after the commit (`_apply`): a failed round gives back again
        return done

    async def _renew(self, conn: AsyncConnection) -> set[int]:
        """Renew our leases; rows under our node id that this process does not track (its
        predecessor's, or a claim whose commit answer was lost) are deleted, not renewed:
        renewed and never served, nobody else could take them."""
        c = T_LEASES.c
        mine = c.node_id == self.node_id
        await conn.execute(delete(T_LEASES).where(mine, c.session_id.not_in(list(self._tenures))))
        stmt = (
            update(T_LEASES)
            .where(c.node_id == self.node_id)
            .values(expires_at=self._expiry())
            .returning(c.session_id)
        )
        return {int(s) for s in await conn.scalars(stmt)}

    async def _claim(self, conn: AsyncConnection, want: int, kept: set[int]) -> set[int]:
        """Up to `want` free or expired leases, in random order (so claimers spread out)."""
        if want <= 0:
            return set()
        c = T_LEASES.c
        taken = select(c.session_id).where(c.expires_at >= func.now())
        free = [s for s in self.session_ids if s not in kept]
        q = (
            select(m.Session.__table__.c.id)  # type: ignore[attr-defined]
            .where(m.Session.__table__.c.id.in_(free))  # type: ignore[attr-defined]
            .where(m.Session.__table__.c.id.not_in(taken))  # type: ignore[attr-defined]
            .order_by(func.random())
            .limit(want)
        )
        candidates = [int(s) for s in await conn.scalars(q)]
        if not candidates:
            return set()
        rows = [
            {
                "session_id": sid,
                "node_id": self.node_id,
                "acquired_at": func.now(),
                "expires_at": self._expiry(),
            }
            for sid in candidates
        ]
        ins = pg_insert(T_LEASES).values(rows)
        stmt = ins.on_conflict_do_update(
            index_elements=["session_id"],
            set_={
                "node_id": ins.excluded.node_id,
                "acquired_at": ins.excluded.acquired_at,
                "expires_at": ins.excluded.expires_at,
            },
            where=c.expires_at < func.now(),  # only a lease that has expired changes hands
        ).returning(c.session_id)
        return {int(s) for s in await conn.scalars(stmt)}

    def _apply(self, kept: set[int], claimed: set[int], share: int) -> None:
        """The tenures after a round: lost ones dropped, claimed ones added, extra drained."""
        for sid in list(self._tenures):
            if sid not in kept:
                del self._tenures[sid]  # expired and taken by another node
        for sid in claimed:
            self._tenures[sid] = _Tenure()
        active = sorted(s for s, t in self._tenures.items() if t.active)
        for sid in active[share:]:  # over the fair share: drain the newest ids
            self._tenures[sid].active = False
            if self._tenures[sid].busy == 0:
                self._wake.set()

    async def _give_back_all(self) -> None:
        """Delete our leases and our `nodes` row, when the row is still ours (a duplicate of
        our node id must not give back another process's leases)."""
        self._tenures.clear()
        if self._instance is None:
            return
        n = T_NODES.c
        async with self.store.write() as conn:
            ours = delete(T_NODES).where(n.id == self.node_id, n.started_at == self._instance)
            if (await conn.execute(ours)).rowcount == 0:
                return
            await conn.execute(delete(T_LEASES).where(T_LEASES.c.node_id == self.node_id))
            await conn.execute(text("SELECT pg_notify(:c, :n)"), {"c": CHANNEL, "n": self.node_id})
        log.info("leases: node %s gave its leases back", self.node_id)

    async def _notify(self) -> None:
        with contextlib.suppress(Exception):
            async with self.store.write() as conn:
                stmt = text("SELECT pg_notify(:c, :n)")
                await conn.execute(stmt, {"c": CHANNEL, "n": self.node_id})


__all__ = ["Holder", "Leases", "NodeIdInUse", "holders"]
