"""The outbox sender: claims rows per session, sends each once, records what happened.

One loop per session, behind that session's token bucket (`[send] rate_per_minute`, `burst`).
A claim is one UPDATE (Postgres: `FOR UPDATE SKIP LOCKED`) that moves the row to SENDING and
bumps `attempts`; every later update of the row is fenced on that `attempts`, so a sender
whose lease (`lease_s`) was taken over after a stall cannot overwrite the new owner's work.

Outcomes (see `wasync.providers.sending.post_once`): accepted → SENT with the provider's id,
swapped into the message row in the same transaction (an echo that got in first is merged,
parked acks applied); surely not sent → QUEUED again after a backoff or `Retry-After`;
outcome unknown → UNKNOWN, and after `reconcile_delay_s` the chat's fromMe messages are read
back and a match is adopted before any resend; refused → FAILED with the message's ack ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync import providers
from wasync.errors import (
    ProviderError,
    RateLimited,
    SendOutcomeUnknown,
    SessionNotWorking,
    TransientProviderError,
)
from wasync.events import AckLevel, Message, MessageType
from wasync.outbox import (
    FAILED,
    FINAL,
    QUEUED,
    SENDING,
    SENT,
    T_MESSAGES,
    T_OUTBOX,
    T_PENDING,
    UNKNOWN,
    Outbox,
    Queued,
    utc,
)
from wasync.pipeline import CHAT_UPDATED, MESSAGE_ACK, MESSAGE_EDITED, MESSAGE_REVOKED, EventSink
from wasync.providers.sending import Outgoing, SendReceipt
from wasync.registry import SessionRef

log = logging.getLogger(__name__)

# Types the echo of a send may come back as (WAHA sends plain audio as a file).
_ECHO_TYPES: dict[str, set[MessageType]] = {
    "text": {MessageType.TEXT},
    "image": {MessageType.IMAGE},
    "video": {MessageType.VIDEO},
    "audio": {MessageType.AUDIO, MessageType.DOCUMENT},
    "voice": {MessageType.AUDIO},
    "document": {MessageType.DOCUMENT},
}


class RateLimiter:
    """A token bucket as GCRA: one send per `1/rate` seconds, `burst` at once at most."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = 1.0 / rate_per_s
        self.tolerance = (burst - 1) * self.interval
        self.clock = clock
        self.tat = clock()

    def delay(self) -> float:
        """Seconds until a send may go (0 when it may go now)."""
        return max(0.0, self.tat - self.tolerance - self.clock())

    def take(self) -> None:
        """Account for one send made now."""
        self.tat = max(self.tat, self.clock()) + self.interval


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A row this sender holds (status SENDING, fenced by `attempts`)."""

    id: int
    tenant_id: str
    session_id: int
    chat_id: int | None
    message_id: int | None
    to_jid: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    previous: str
    touched_at: datetime  # when the row last changed before this claim

    def outgoing(self) -> Outgoing:
        """What the provider adapter sends."""
        p = self.payload
        return Outgoing(
            to_jid=self.to_jid,
            kind=self.kind,
            text=p.get("text"),
            url=p.get("url"),
            data=p.get("data"),
            mimetype=p.get("mimetype"),
            filename=p.get("filename"),
        )


@dataclass(slots=True)
class _Lane:
    """One session's loop state."""

    ref: SessionRef
    limiter: RateLimiter
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Sender:
    """Sends outbox rows, one loop per session, behind each session's token bucket.

    `only` limits it to an id range (the CLI sending its own rows). Stopping lets the send in
    flight finish (bounded by the send timeout) so no row is left SENDING without need.
    """

    def __init__(
        self,
        outbox: Outbox,
        refs: Iterable[SessionRef],
        *,
        only: tuple[int, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.cfg = outbox.cfg
        self.only = only
        rate = self.cfg.rate_per_minute / 60
        self.lanes = {r.id: _Lane(r, RateLimiter(rate, self.cfg.burst, clock)) for r in refs}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        for lane in self.lanes.values():
            name = f"wasync-sender-{lane.ref.label}"
            self._tasks.append(asyncio.create_task(self._run(lane), name=name))
        if self.outbox.metrics is not None and self.only is None:
            self._tasks.append(asyncio.create_task(self._gauge(), name="wasync-outbox-gauge"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        for lane in self.lanes.values():
            lane.wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.cfg.timeout_s + 5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def wake(self, session_id: int) -> None:
        """A row was queued for this session: look now instead of at the next poll."""
        lane = self.lanes.get(session_id)
        if lane is not None:
            lane.wake.set()

    async def _run(self, lane: _Lane) -> None:
        while not self._stopping.is_set():
            try:
                await self._step(lane)
            except Exception:  # the loop must survive a store outage or a bug in one row
                log.exception("sender %s: step failed", lane.ref.label)
                await self._pause(lane, self.cfg.poll_interval_s)

    async def _step(self, lane: _Lane) -> None:
        wait = lane.limiter.delay()
        if wait > 0:
            await self._pause(None, wait)
            return
        claim = await self._claim(lane.ref.id)
        if claim is None:
            await self._pause(lane, self.cfg.poll_interval_s)
            return
        await _Attempt(self, lane, claim).run()

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

    def _due(self, session_id: int, now: datetime) -> Any:
        """The oldest row to take: QUEUED or UNKNOWN when due, SENDING past its lease."""
        o = T_OUTBOX.c
        due = or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now)
        lease = now - timedelta(seconds=self.cfg.lease_s)
        ready = or_(
            and_(o.status.in_((QUEUED, UNKNOWN)), due),
            and_(o.status == SENDING, o.updated_at < lease),
        )
        q = select(o.id, o.status, o.updated_at).where(o.session_id == session_id, ready)
        if self.only is not None:
            q = q.where(o.id.between(*self.only))
        return q.order_by(o.id).limit(1)

    async def _claim(self, session_id: int) -> Claim | None:
        """Take the oldest due row (status SENDING, `attempts` + 1), or None.

        A read first: an idle sender must not take SQLite's write lock at every poll.
        """
        o = T_OUTBOX.c
        now = datetime.now(UTC)
        q = self._due(session_id, now)
        async with self.outbox.store.read() as conn:
            if (await conn.execute(q)).first() is None:
                return None
        async with self.outbox.store.write() as conn:
            if not self.outbox.store.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            row = (await conn.execute(q)).first()
            if row is None:
                return None
            stmt = (
                update(T_OUTBOX)
                .where(o.id == row.id)
                .values(status=SENDING, attempts=o.attempts + 1, updated_at=now)
                .returning(*T_OUTBOX.c)
            )
            got = (await conn.execute(stmt)).one()
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
            created_at=utc(got.created_at),
            previous=row.status,
            touched_at=utc(row.updated_at),
        )

    async def _gauge(self) -> None:
        """`wasync_outbox_queued{session}`: rows not yet sent or failed, per session."""
        metrics = self.outbox.metrics
        assert metrics is not None
        o = T_OUTBOX.c
        waiting = (QUEUED, UNKNOWN, SENDING)
        q = select(o.session_id, func.count()).where(o.status.in_(waiting)).group_by(o.session_id)
        while not self._stopping.is_set():
            try:
                async with self.outbox.store.read() as conn:
                    counts = {int(s): int(n) for s, n in await conn.execute(q)}
                for sid, lane in self.lanes.items():
                    metrics.outbox_depth.labels(session=lane.ref.label).set(counts.get(sid, 0))
            except Exception:
                log.exception("outbox gauge refresh failed")
            await self._pause(None, self.cfg.metrics_interval_s)


class _Attempt:
    """What happens to one claimed row: reconcile if needed, send, record the outcome."""

    def __init__(self, sender: Sender, lane: _Lane, claim: Claim) -> None:
        self.sender, self.lane, self.claim = sender, lane, claim
        self.cfg = sender.cfg
        self.outbox = sender.outbox
        self.provider = self.outbox.provider(lane.ref)

    async def run(self) -> None:
        """Reconcile a row whose last attempt has no known outcome; otherwise send it."""
        c = self.claim
        if c.previous != QUEUED:  # UNKNOWN, or SENDING left by a crash: read the chat first
            try:
                found = await self._reconcile()
            except ProviderError as exc:
                await self._later(UNKNOWN, f"reconcile failed: {exc}", self._backoff())
                return
            if found is not None:
                log.info(
                    "outbox %s: found at the provider as %s; not resent",
                    c.id,
                    found.provider_message_id,
                )
                await _record_sent(self.outbox, c, found)
                return
            if c.attempts > self.cfg.max_attempts:
                await _record_failed(self.outbox, c, "not confirmed by the provider after retries")
                return
        await self._send()

    async def _send(self) -> None:
        """One request; the outcome decides the row's next status."""
        c = self.claim
        await asyncio.sleep(self.lane.limiter.delay())  # this lane's own bucket: one wait
        self.lane.limiter.take()
        try:
            receipt = await self.provider.send(c.outgoing())
        except SendOutcomeUnknown as exc:
            log.warning("outbox %s: %s; will reconcile before any resend", c.id, exc)
            await self._later(UNKNOWN, str(exc), self.cfg.reconcile_delay_s)
        except RateLimited as exc:
            await self._retry(str(exc), exc.retry_after_s)
        except (TransientProviderError, SessionNotWorking) as exc:
            await self._retry(str(exc), self._backoff())
        except ProviderError as exc:
            await _record_failed(self.outbox, c, str(exc))
        else:
            await _record_sent(self.outbox, c, receipt)

    def _backoff(self) -> float:
        base = self.cfg.backoff_s * 2.0 ** max(0, self.claim.attempts - 1)
        return float(min(base, self.cfg.max_backoff_s))

    async def _retry(self, error: str, delay_s: float) -> None:
        """Surely not sent: queue again, unless the attempts are spent."""
        if self.claim.attempts >= self.cfg.max_attempts:
            await _record_failed(self.outbox, self.claim, error)
            return
        log.info("outbox %s: not sent (%s); retry in %.1fs", self.claim.id, error, delay_s)
        await self._later(QUEUED, error, delay_s)

    async def _later(self, status: str, error: str, delay_s: float) -> None:
        c, o = self.claim, T_OUTBOX.c
        now = datetime.now(UTC)
        async with self.outbox.store.write() as conn:
            await conn.execute(
                update(T_OUTBOX)
                .where(o.id == c.id, o.status == SENDING, o.attempts == c.attempts)
                .values(
                    status=status,
                    last_error=error[:2000],
                    next_attempt_at=now + timedelta(seconds=delay_s),
                    updated_at=now,
                )
            )

    async def _reconcile(self) -> SendReceipt | None:
        """Our fromMe message in the chat, if the provider has it and no other row owns it."""
        c = self.claim
        # The last attempt started at most `timeout_s` before the row was last touched.
        started = max(c.created_at.timestamp(), c.touched_at.timestamp() - self.cfg.timeout_s)
        since = started - self.cfg.reconcile_window_s
        candidates = await self.provider.sent_messages(c.to_jid, since=since)
        taken = await self._owned_elsewhere([m.provider_message_id for m in candidates])
        return match_sent(c.outgoing(), candidates, since=since, exclude=taken)

    async def _owned_elsewhere(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        o = T_OUTBOX.c
        q = select(o.provider_message_id).where(
            o.session_id == self.claim.session_id,
            o.provider_message_id.in_(ids),
            o.id != self.claim.id,
        )
        async with self.outbox.store.read() as conn:
            return {r[0] for r in await conn.execute(q)}


def match_sent(
    out: Outgoing, candidates: Sequence[Message], *, since: float, exclude: set[str]
) -> SendReceipt | None:
    """The oldest fromMe message that is this send: same text (text) or same type and caption
    (media), not before `since`, not typed on the phone (WAHA `source: app`, Evolution
    `source: android|ios`), not owned by another outbox row."""
    types = _ECHO_TYPES[out.kind]
    best: Message | None = None
    for msg in candidates:
        if not msg.from_me or msg.provider_message_id in exclude:
            continue
        if providers.typed_on_phone(msg):
            continue
        if msg.timestamp.timestamp() < since or msg.type not in types:
            continue
        if (msg.body or None) != (out.text or None) and out.kind != "voice":
            continue
        if best is None or msg.timestamp < best.timestamp:
            best = msg
    if best is None:
        return None
    return SendReceipt(
        provider_message_id=best.provider_message_id, timestamp=best.timestamp.timestamp()
    )


# --- outcomes -----------------------------------------------------------------------------------


async def _record_sent(outbox: Outbox, claim: Claim, receipt: SendReceipt) -> None:
    """Mark SENT and give the message row the provider's id, in one transaction with events."""

    async def work(conn: AsyncConnection, sink: EventSink) -> bool:
        o = T_OUTBOX.c
        now = datetime.now(UTC)
        res = await conn.execute(
            update(T_OUTBOX)
            .where(o.id == claim.id, o.status == SENDING, o.attempts == claim.attempts)
            .values(
                status=SENT,
                provider_message_id=receipt.provider_message_id,
                last_error=None,
                next_attempt_at=None,
                updated_at=now,
            )
            .returning(o.id)
        )
        if res.first() is None:
            return False
        if claim.message_id is not None:
            await _Adopt(conn, sink, claim, receipt).run()
        return True

    if not await outbox.pipeline.record(work):
        log.warning("outbox %s: another sender took this row over; outcome left to it", claim.id)


async def _record_failed(outbox: Outbox, claim: Claim, error: str) -> None:
    """Mark FAILED and the message's ack ERROR (`chat:message-ack`)."""
    log.warning("outbox %s: failed: %s", claim.id, error)

    async def work(conn: AsyncConnection, sink: EventSink) -> None:
        o, mc = T_OUTBOX.c, T_MESSAGES.c
        now = datetime.now(UTC)
        res = await conn.execute(
            update(T_OUTBOX)
            .where(o.id == claim.id, o.status == SENDING, o.attempts == claim.attempts)
            .values(status=FAILED, last_error=error[:2000], next_attempt_at=None, updated_at=now)
            .returning(o.id)
        )
        if res.first() is None or claim.message_id is None:
            return
        pending = or_(mc.ack.is_(None), mc.ack == int(AckLevel.PENDING))
        await conn.execute(
            update(T_MESSAGES)
            .where(mc.id == claim.message_id, pending)
            .values(ack=int(AckLevel.ERROR))
        )
        sink.emit(
            claim.tenant_id,
            MESSAGE_ACK,
            claim.chat_id,
            claim.message_id,
            ack=int(AckLevel.ERROR),
            ackName="ERROR",
            error=error[:500],
            outboxId=claim.id,
        )

    await outbox.pipeline.record(work)


class _Adopt:
    """Give our message row the provider's id: merge an echo that got in first, and apply the
    acks (edits, revokes) parked while the id was unknown."""

    def __init__(
        self, conn: AsyncConnection, sink: EventSink, claim: Claim, receipt: SendReceipt
    ) -> None:
        self.conn, self.sink, self.claim, self.receipt = conn, sink, claim, receipt
        self.pmid = receipt.provider_message_id
        self.values: dict[str, Any] = {"provider_message_id": self.pmid}

    async def run(self) -> None:
        mc = T_MESSAGES.c
        mine = (
            await self.conn.execute(select(mc.id, mc.ack).where(mc.id == self.claim.message_id))
        ).first()
        if mine is None:
            return
        ack = await self._merge_echo(mine.ack)
        ack = await self._drain_parked(ack)
        if self.receipt.timestamp is not None:
            self.values["sent_at"] = datetime.fromtimestamp(self.receipt.timestamp, UTC)
        if ack != mine.ack and ack is not None:
            self.values["ack"] = ack
            level = AckLevel(ack)
            self._emit(MESSAGE_ACK, ack=ack, ackName=level.name)
        await self.conn.execute(update(T_MESSAGES).where(mc.id == mine.id).values(**self.values))

    def _emit(self, type_: str, **data: Any) -> None:
        c = self.claim
        self.sink.emit(c.tenant_id, type_, c.chat_id, c.message_id, **data)

    async def _merge_echo(self, ack: int | None) -> int | None:
        """The echo was ingested before we knew the id: keep our row (clients and the outbox
        point at it) with the furthest ack, drop the echo's."""
        mc = T_MESSAGES.c
        q = select(mc.id, mc.ack).where(
            mc.session_id == self.claim.session_id,
            mc.provider_message_id == self.pmid,
            mc.id != self.claim.message_id,
        )
        echo = (await self.conn.execute(q)).first()
        if echo is None:
            return ack
        await self.conn.execute(delete(T_MESSAGES).where(mc.id == echo.id))
        self._emit(CHAT_UPDATED, mergedMessageId=echo.id, messageId=self.claim.message_id)
        return _furthest(ack, echo.ack)

    async def _drain_parked(self, ack: int | None) -> int | None:
        p = T_PENDING.c
        rows = await self.conn.execute(
            delete(T_PENDING)
            .where(p.session_id == self.claim.session_id, p.provider_message_id == self.pmid)
            .returning(p.ack, p.edit_body, p.edited_at, p.revoked_at)
        )
        for r in rows:
            ack = _furthest(ack, r.ack)
            if r.edited_at is not None:
                self.values.update(body=r.edit_body, edited=True, edited_at=r.edited_at)
                self._emit(MESSAGE_EDITED, body=r.edit_body)
            if r.revoked_at is not None:
                self.values.update(revoked=True, revoked_at=r.revoked_at)
                self._emit(MESSAGE_REVOKED)
        return ack


def _furthest(current: int | None, other: int | None) -> int | None:
    """Acks only move forward; ERROR only replaces nothing or PENDING (as ingest does)."""
    if other is None:
        return current
    if current is None:
        return other
    if other == AckLevel.ERROR:
        return other if current == AckLevel.PENDING else current
    return max(current, other)


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
