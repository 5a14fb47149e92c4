"""The outbox sender: claims rows per session, sends each once, records what happened.

One loop per session, behind that session's send slots (`[send] rate_per_minute`, `burst`),
reserved in the database (`wasync.ratelimit.SendSlots`) so every process and node shares them;
in the daemon only for the sessions whose lease this node holds (`wasync.leases`).
A claim is one UPDATE (Postgres: `FOR UPDATE SKIP LOCKED`) that moves the row to SENDING and
bumps `attempts`; every later update of the row is fenced on that `attempts`, so a sender
whose lease (`lease_s`) was taken over after a stall cannot overwrite the new owner's work.

What happens to a claimed row is `wasync.delivery.Attempt`: accepted → SENT with the
provider's id (given to the message row by the one writer); surely not sent → QUEUED again
after a backoff or `Retry-After` (a session that is down: without spending an attempt, for
at most `max_session_wait_s`); outcome unknown → UNKNOWN, reconciled against the chat
(until `reconcile_grace_s` after the request) before any resend; refused → FAILED with the
message's ack ERROR. The sender itself writes only the `outbox` table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import Select, and_, bindparam, func, or_, select, update

from wasync.delivery import Attempt, Claim, match_sent
from wasync.errors import StoreUnavailable
from wasync.leases import Leases
from wasync.outage import Outage
from wasync.outbox import FINAL, QUEUED, SENDING, T_OUTBOX, UNKNOWN, Outbox, Queued
from wasync.ratelimit import SendSlots
from wasync.registry import SessionRef

if TYPE_CHECKING:
    from prometheus_client import Gauge

log = logging.getLogger(__name__)

# An idle lane's own look, in poll intervals: only a net under `_find` (which survives any
# error and wakes every lane with a due row each interval). Each look is a read of the
# outbox: at 60 (a minute) 1,000 idle sessions made 17 reads a second, a fifth of the idle
# daemon's CPU (bench_memory: 22-23 % -> 17 % of a core per idle cycle at 600).
IDLE_LANE_POLLS = 600
# ... give or take this share, drawn per look: lanes that start together (every session's, at
# start-up) would otherwise look together for ever, a thousand reads in one burst a minute.
IDLE_LANE_SPREAD = 0.25


def _looks(only: tuple[int, int] | None) -> tuple[Select[Any], Select[Any]]:
    """The sender's two queries, built once with their times and session as bound
    parameters (`now`, `lease`, `session_id`): building them at every look cost more than
    running them (350 us of 1 ms). A row is ready when QUEUED or UNKNOWN and due, or SENDING
    past its lease. The first lists the sessions with a ready row; the second is a
    session's oldest ready row."""
    o = T_OUTBOX.c
    due = or_(o.next_attempt_at.is_(None), o.next_attempt_at <= bindparam("now"))
    ready = or_(
        and_(o.status.in_((QUEUED, UNKNOWN)), due),
        and_(o.status == SENDING, o.updated_at < bindparam("lease")),
    )
    find = select(o.session_id).where(ready).distinct()
    oldest = select(o.id, o.status, o.updated_at).where(
        o.session_id == bindparam("session_id"), ready
    )
    if only is not None:
        find = find.where(o.id.between(*only))
        oldest = oldest.where(o.id.between(*only))
    return find, oldest.order_by(o.id).limit(1)


@dataclass(slots=True)
class _Lane:
    """One session's loop state."""

    ref: SessionRef
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    outage: Outage = field(init=False)
    depth: Gauge | None = None  # its `outbox_depth` gauge child

    def __post_init__(self) -> None:
        self.outage = Outage(log, f"sender {self.ref.label}")


class Sender:
    """Sends outbox rows, one loop per session, in each session's shared send slots.

    `only` limits it to an id range (the CLI sending its own rows); `leases` to the sessions
    this node holds (the daemon). Stopping lets the send in flight finish (bounded by the send
    timeout) so no row is left SENDING without need.
    """

    def __init__(
        self,
        outbox: Outbox,
        refs: Iterable[SessionRef],
        *,
        only: tuple[int, int] | None = None,
        leases: Leases | None = None,
    ) -> None:
        self.outbox = outbox
        self.cfg = outbox.cfg
        self.only = only
        self.leases = leases
        self.slots = SendSlots(outbox.store, self.cfg.rate_per_minute / 60, self.cfg.burst)
        self.lanes = {r.id: _Lane(r) for r in refs}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._outage = Outage(log, "sender")
        self._find_q, self._due_q = _looks(only)
        self._due_locked = self._due_q.with_for_update(skip_locked=True)
        self._find_outage = Outage(log, "sender's look for due rows")

    async def __aenter__(self) -> Self:
        self.outbox.wakers.append(self.wake)
        for lane in self.lanes.values():
            name = f"wasync-sender-{lane.ref.label}"
            self._tasks.append(asyncio.create_task(self._run(lane), name=name))
        self._tasks.append(asyncio.create_task(self._find(), name="wasync-sender-find"))
        if self.outbox.metrics is not None and self.only is None:
            self._tasks.append(asyncio.create_task(self._gauge(), name="wasync-outbox-gauge"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.wake in self.outbox.wakers:
            self.outbox.wakers.remove(self.wake)
        self._stopping.set()
        for lane in self.lanes.values():
            lane.wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.cfg.timeout_s + 5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def wake_all(self, _held: object = None) -> None:
        """The leases changed: every lane looks again now."""
        for lane in self.lanes.values():
            lane.wake.set()

    def wake(self, session_id: int) -> None:
        """A row was queued for this session: look now instead of at the next poll."""
        lane = self.lanes.get(session_id)
        if lane is not None:
            lane.wake.set()

    async def _run(self, lane: _Lane) -> None:
        while not self._stopping.is_set():
            try:
                await self._step(lane)
            except StoreUnavailable as exc:  # one WARNING for the outage, one INFO at its end
                self._outage.failed(exc)
                await self._pause(lane, self.cfg.poll_interval_s)
            except Exception as exc:  # the loop must survive a bug in one row
                lane.outage.broken(exc)
                await self._pause(lane, self.cfg.poll_interval_s)
            else:
                self._outage.ok()
                lane.outage.ok()

    async def _step(self, lane: _Lane) -> None:
        if self.leases is None:
            sent = await self._take(lane)
        else:
            async with self.leases.hold(lane.ref.id) as held:
                sent = held and await self._take(lane)
        if not sent:  # nothing due, or not ours: nap outside hold(), so a drain never waits;
            # `_find`, a local enqueue or a change of leases wakes the lane when a row is due
            spread = random.uniform(1 - IDLE_LANE_SPREAD, 1 + IDLE_LANE_SPREAD)
            await self._pause(lane, self.cfg.poll_interval_s * IDLE_LANE_POLLS * spread)

    async def _take(self, lane: _Lane) -> bool:
        """Claim the next due row and run its attempt; False when none was due."""
        claim = await self._claim(lane.ref.id)
        if claim is None:
            return False
        await Attempt(self.outbox, lane.ref, self.slots, claim).run()
        return True

    async def _pause(self, lane: _Lane | None, seconds: float) -> None:
        """Sleep, but return early on stop (and on a wake-up when `lane` is given)."""
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if lane is not None:
            waits.append(asyncio.ensure_future(lane.wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            if lane is not None:
                lane.wake.clear()

    async def _find(self) -> None:
        """Every `poll_interval_s`, one query for the sessions with a due row (queued by
        another process, a retry come due, a lease run out): their lanes look. An idle lane
        no longer queries the outbox itself: 1,000 sessions made 1,000 reads a second."""
        while not self._stopping.is_set():
            try:
                async with self.outbox.store.read() as conn:
                    rows = await conn.execute(self._find_q, self._times(datetime.now(UTC)))
                    due = {int(sid) for (sid,) in rows}
            except StoreUnavailable as exc:
                self._outage.failed(exc)
            except Exception as exc:  # a bug: the lanes' only fast wake-up must go on
                self._find_outage.broken(exc)
            else:
                self._outage.ok()
                self._find_outage.ok()
                for sid in due:
                    self.wake(sid)
            await self._pause(None, self.cfg.poll_interval_s)

    def _times(self, now: datetime) -> dict[str, Any]:
        """The bound times of `_find_q` and `_due_q` at `now`."""
        return {"now": now, "lease": now - timedelta(seconds=self.cfg.lease_s)}

    async def _claim(self, session_id: int) -> Claim | None:
        """Take the oldest due row (status SENDING, `attempts` + 1), or None.

        A read first: an idle sender must not take SQLite's write lock at every poll.
        """
        o = T_OUTBOX.c
        now, claimed_at = datetime.now(UTC), time.monotonic()
        params = {**self._times(now), "session_id": session_id}
        async with self.outbox.store.read() as conn:
            if (await conn.execute(self._due_q, params)).first() is None:
                return None
        async with self.outbox.store.write() as conn:
            q = self._due_q if self.outbox.store.is_sqlite else self._due_locked
            row = (await conn.execute(q, params)).first()
            if row is None:
                return None
            stmt = (
                update(T_OUTBOX)
                .where(o.id == row.id)
                .values(status=SENDING, attempts=o.attempts + 1, updated_at=now)
                .returning(*T_OUTBOX.c)
            )
            got = (await conn.execute(stmt)).one()
            slot_at = None
            if row.status == QUEUED:  # it will be sent: its slot in this same transaction
                slot_at = time.monotonic() + await self.slots.reserve_in(conn, session_id)
        return Claim(
            id=got.id,
            tenant_id=got.tenant_id,
            session_id=got.session_id,
            chat_id=got.chat_id,
            message_id=got.message_id,
            to_jid=got.to_jid,
            kind=got.kind,
            payload=dict(got.payload or {}),
            attempts=got.attempts,
            created_at=got.created_at,
            previous=row.status,
            touched_at=row.updated_at,
            unknown_since=got.unknown_since,
            session_down_since=got.session_down_since,
            slot_at=slot_at,
            claimed_at=claimed_at,
        )

    async def _gauge(self) -> None:
        """`wasync_outbox_queued{session}`: rows not yet sent or failed, per session."""
        metrics = self.outbox.metrics
        assert metrics is not None
        o = T_OUTBOX.c
        waiting = (QUEUED, UNKNOWN, SENDING)
        q = select(o.session_id, func.count()).where(o.status.in_(waiting)).group_by(o.session_id)
        gauge = Outage(log, "outbox gauge")
        while not self._stopping.is_set():
            try:
                async with self.outbox.store.read() as conn:
                    counts = {int(s): int(n) for s, n in await conn.execute(q)}
                for sid, lane in self.lanes.items():
                    if lane.depth is None:  # one labels() lookup per lane, not per interval
                        lane.depth = metrics.outbox_depth.labels(session=lane.ref.label)
                    lane.depth.set(counts.get(sid, 0))
            except StoreUnavailable as exc:
                self._outage.failed(exc)  # the lanes' outage: one WARNING for the sender
            except Exception as exc:
                gauge.broken(exc)
            else:
                self._outage.ok()
            await self._pause(None, self.cfg.metrics_interval_s)


async def wait_final(
    outbox: Outbox, ids: Sequence[int], *, timeout_s: float, poll_s: float = 0.2
) -> dict[int, Queued]:
    """Poll the rows until every one is SENT or FAILED, or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await outbox.statuses(ids)
        if all(r.status in FINAL for r in rows.values()) or time.monotonic() >= deadline:
            return rows
        await asyncio.sleep(poll_s)


@contextlib.asynccontextmanager
async def own_sender(outbox: Outbox, rows: Sequence[Queued]) -> AsyncIterator[Sender]:
    """Run a sender for these rows only (the CLI), claim-guarded against a running daemon."""
    refs = {r.session_id: outbox.registry.sessions[r.session_id] for r in rows}
    ids = [r.id for r in rows]
    async with Sender(outbox, refs.values(), only=(min(ids), max(ids))) as sender:
        yield sender


__all__ = ["Claim", "Sender", "match_sent", "own_sender", "wait_final"]
