"""One session's poll cycle: cursor → fetch what changed → `Pipeline.ingest()`.

Chat lists (WAHA `chats/overview`, Evolution `findChats`) say which chats have a newer last
message than we hold; only those are read, from their cursor minus an overlap window so late
or same-second messages are not skipped (`wasync.heads`: a head is a hint, never proof).
Engines that list every chat's messages at once (WAHA GOWS/NOWEB, `chatId=all`) are read as
one stream: first the newest second we hold and what follows it (a row can land in that same
second after we read it: WAHA's timestamps are whole seconds), then, when that showed a row we
had not seen, the overlap window behind it. An idle cycle is one request either way. Messages
that are not new (acks, edits, revokes, reactions) are read again on a slower cadence by the
ack check (`wasync.recheck`), counted apart. Cursors advance in the transaction that stores
what they cover; duplicates are harmless.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import select

from wasync.config import PollConfig
from wasync.cycle import CycleStats
from wasync.errors import (
    FatalProviderError,
    ProviderError,
    Quarantined,
    SessionBlocked,
    SessionNotWorking,
    StoreUnavailable,
    TransientProviderError,
    Unauthorized,
    about_one_read,
)
from wasync.events import Event, SessionStatus
from wasync.heads import HeadSig, head_is_enough, unchanged
from wasync.healthwatch import HealthWatch
from wasync.metrics import Metrics
from wasync.paging import MAX_PAGES, window_pages
from wasync.pipeline import CursorUpdate, Pipeline
from wasync.providers.base import ChatHead, Page, Provider
from wasync.recheck import Recheck
from wasync.seen import Seen
from wasync.store import Store
from wasync.store import models as m
from wasync.stream import Stream

log = logging.getLogger(__name__)

SESSION_SCOPE = "*"
# A cursor never runs further ahead of our clock than this (nor than half the overlap window):
# a row dated in the future (a broken phone clock, a hostile provider) hides, at most, what
# the overlap window reads again once real time has passed the cursor.
MAX_AHEAD_S = 60.0


class Poller:
    """Polls one provider session into the pipeline; `cycle()` is what the scheduler runs."""

    def __init__(
        self,
        provider: Provider,
        pipeline: Pipeline,
        store: Store,
        poll: PollConfig,
        *,
        label: str = "",
        source: str = "poll",
        metrics: Metrics | None = None,
        reconciling: bool = False,
        clock: Callable[[], float] = time.time,
        health: HealthWatch | None = None,
    ) -> None:
        self.provider = provider
        self.pipeline = pipeline
        self.store = store
        self.poll = poll
        self.label = label or provider.name
        self.source = source
        self.clock = clock
        self.metrics = metrics
        self.reconciling = reconciling  # webhooks are on: what polling stores first was missed
        # ... if it is dated from the time this poller started: an older message (the history
        # the first sync stores, what came while the daemon was down) no webhook of this
        # daemon could have delivered, so it says nothing about the provider's webhooks. The
        # provider dates messages in whole seconds.
        self.live_since = datetime.fromtimestamp(int(clock()), UTC)
        self.health = health  # told of each cycle that ended without an error
        self.status: str | None = None
        self.blocked: str | None = None  # why the session cannot be polled (its fix)
        self._engine: str | None = None
        self._working = False  # the last status recorded can serve (`SessionState.working`)
        self._cursors: dict[str, float] | None = None
        self._heads: dict[str, HeadSig] = {}
        self._confirm: set[str] = set()  # chats to read once more: their newest second is young
        self.seen = Seen()
        self._state_checked_at = float("-inf")
        self._stats = CycleStats()  # the cycle in progress (the ack check ingests into it)
        self.recheck = Recheck(
            provider,
            store,
            poll,
            ingest=lambda events: self.ingest(events, self._stats),
            seen=self.seen,
            chat_ids=lambda: [s for s in self._cursors or {} if s != SESSION_SCOPE],
            session_cursor=self.session_cursor,
            clock=clock,
        )
        # The one-stream strategy (chatId=all); its first late walk with the first ack check.
        self.stream = Stream(self, first_late_at=self.recheck.next_at)
        self._failing: str | None = None  # the unexpected error last logged with its traceback
        self.last: CycleStats | None = None

    @property
    def session_id(self) -> int:
        """The polled session's database id."""
        return self.provider.session_id

    async def cycle(self) -> CycleStats:
        """Run one poll cycle; never raises (errors are counted and logged)."""
        stats = self._stats = CycleStats()
        started, requests0, began = time.perf_counter(), self.provider.requests, self.clock()
        try:
            await self._cycle(stats)
        except SessionBlocked as exc:
            self._block(str(exc))
        except SessionNotWorking as exc:
            await self._set_status(exc.status_name or "NOT_WORKING", stats, working=False)
        except Unauthorized as exc:
            await self._set_status("UNAUTHORIZED", stats, working=False, reason=str(exc))
            stats.error = "unauthorized"
        except (TransientProviderError, ProviderError) as exc:
            stats.error = str(exc)
        except StoreUnavailable as exc:
            stats.error = f"store: {exc}"
        except Exception as exc:  # a bug or an answer nobody foresaw: the next cycle still runs
            stats.error = f"{type(exc).__name__}: {exc}"[:300]
            if stats.error != self._failing:  # its traceback once, not every cycle
                log.error("poll %s: unexpected error", self.label, exc_info=exc)
            self._failing = stats.error
        else:
            self._failing = None
        stats.requests = self.provider.requests - requests0 - stats.check_requests
        stats.seconds = time.perf_counter() - started
        self.last = stats
        if self.metrics is not None:
            outcome = "error" if stats.error else "ok"
            self.metrics.child(self.metrics.poll_cycles, outcome).inc()
            self.metrics.poll_requests.inc(stats.requests)
            self.metrics.ack_checks.inc(stats.check_requests)
        self._log(stats)
        if self.health is not None and stats.error is None and self.blocked is None:
            await self.health.record(
                self.session_id, stats, started=began, working=self._working, status=self.status
            )
        return stats

    def capped(self, ts: float) -> float:
        """A cursor never moves more than `MAX_AHEAD_S` (or half the overlap window) past our
        clock: one message dated in the year 9999 must not hide every later one."""
        return min(ts, self._ahead_limit())

    def cursor_top(self, page: Page) -> float | None:
        """The newest time of a page the stream's cursor may move to: rows dated beyond the
        cap are stored but left out, or a future-dated row would carry the cursor along just
        ahead of our clock, above every real row, until its date had passed."""
        limit = self._ahead_limit()
        if page.max_ts is None or page.max_ts <= limit:
            return page.max_ts
        times = [t.timestamp() for ev in page.events if (t := getattr(ev, "timestamp", None))]
        return max((t for t in times if t <= limit), default=None)

    def _ahead_limit(self) -> float:
        return self.clock() + min(MAX_AHEAD_S, self.poll.overlap_s / 2)

    async def _cycle(self, stats: CycleStats) -> None:
        if self._cursors is None:
            self._cursors = await self._load_cursors()
        due = self.clock() - self._state_checked_at >= self.poll.status_interval_s
        if due or not self._working or self.blocked:
            state = await self.provider.state()
            self._state_checked_at = self.clock()
            await self._set_status(state.status, stats, working=state.working, engine=state.engine)
            if not state.working:
                return
            if state.blocker:
                self._block(state.blocker)
                return
            self._unblock()
        stream = await self.provider.supports_all_chats()
        if stream:
            await self.stream.poll(stats)
        else:
            await self._poll_heads(stats)
        requests0 = self.provider.requests
        if stream and self.stream.late_due():
            await self.stream.late(stats)
        if self.recheck.due():
            stats.rechecked += await self.recheck.run()
        stats.check_requests = self.provider.requests - requests0

    def _block(self, reason: str) -> None:
        """The session is up but cannot be polled: one WARNING saying how to fix it (not an
        error per cycle); the next cycles only ask for the state until it is fixed."""
        if self.blocked != reason:
            log.warning("session %s cannot be polled: %s", self.label, reason)
        self.blocked = reason

    def _unblock(self) -> None:
        if self.blocked is not None:
            log.info("session %s can be polled again", self.label)
        self.blocked = None

    # --- chat-list strategy -----------------------------------------------------------------

    async def _poll_heads(self, stats: CycleStats) -> None:
        floor = self.session_cursor() - self.poll.overlap_s
        newest = None
        offset = 0
        listed: set[str] = set()
        failed: tuple[ChatHead, ProviderError] | None = None  # a chat whose read failed
        streak = 0
        for _ in range(MAX_PAGES):
            heads = await self.provider.chat_heads(limit=self.poll.page_size, offset=offset)
            if listed.issuperset(h.chat_id for h in heads):
                break  # nothing new: the end, or a server that ignores the offset (Evolution 2.2)
            listed.update(h.chat_id for h in heads)
            for head in heads:
                if head.last_ts is None:
                    continue
                if head.last_ts < floor:
                    break
                newest = max(newest or head.last_ts, head.last_ts)
                try:
                    await self._sync_chat(head, stats, newest)
                except (TransientProviderError, FatalProviderError) as exc:
                    # One chat the provider cannot read (a WEBJS 500) does not hold back
                    # the chats after it and the ack check; two in a row is the provider.
                    streak += 1
                    if not about_one_read(exc) or streak > 1:
                        raise
                    failed = failed or (head, exc)
                    continue
                streak = 0
            else:
                if len(heads) >= self.poll.page_size:
                    offset += self.poll.page_size
                    continue
            break
        if failed is not None:
            # The session cursor stays: the next cycle lists the failed chats again, and one
            # with no cursor of its own is read from it (from its head, its older rows would
            # be missed).
            stats.error = f"chat {failed[0].chat_id}: {failed[1]}"[:300]
            return
        if newest is not None and (top := self.capped(newest)) > self.session_cursor():
            await self.ingest([], stats, CursorUpdate(session_id=self.session_id, ts=top))

    async def _sync_chat(self, head: ChatHead, stats: CycleStats, newest: float) -> None:
        """Read a chat whose head moved (or that is owed a second read); `newest` is the
        newest head of the listing: the provider's "now", against which a chat's newest
        second is judged young (our clock may run ahead of the provider's)."""
        before, sig = self._heads.get(head.chat_id), HeadSig.of(head)
        confirm = head.chat_id in self._confirm
        if not confirm and unchanged(before, sig, self.seen):
            self._heads[head.chat_id] = sig
            return
        stats.chats += 1
        assert self._cursors is not None
        cursor = self._cursors.get(head.chat_id)
        self._confirm.discard(head.chat_id)
        if not confirm and head_is_enough(before, sig, head, cursor, self.seen):
            await self.ingest(self.provider.head_events(head), stats)
        else:
            since = (cursor if cursor is not None else self.session_cursor()) - self.poll.overlap_s
            top = await self.fetch_window(head.chat_id, since, stats)
            ts = self.capped(max(t for t in (top, head.last_ts, cursor) if t is not None))
            await self.ingest(
                [], stats, CursorUpdate(session_id=self.session_id, scope=head.chat_id, ts=ts)
            )
            self._cursors[head.chat_id] = ts
            if not confirm and min(self.clock(), newest) - ts < self.poll.overlap_s:
                self._confirm.add(head.chat_id)  # its newest second may still fill: once more
        self._heads[head.chat_id] = sig

    async def fetch_window(
        self, chat_id: str | None, since: float, stats: CycleStats, until: float | None = None
    ) -> float | None:
        """Read every message of a chat in `[since, until]` into the pipeline; return the
        newest timestamp seen. Pages by offset, and by narrowing `until` when an engine
        ignores offsets; re-reads when Evolution's untied ordering hid rows."""
        newest: float | None = None
        pages = window_pages(
            self.provider,
            chat_id,
            since=since,
            until=until,
            page_size=self.poll.page_size,
            reread_ties=True,
        )
        async for page in pages:
            stats.fetched += page.size
            await self.ingest(page.events, stats)
            if page.max_ts is not None:
                newest = max(newest or page.max_ts, page.max_ts)
        return newest

    # --- state --------------------------------------------------------------------------------

    async def ingest(
        self, events: Sequence[Event], stats: CycleStats, cursor: CursorUpdate | None = None
    ) -> None:
        """Hand what this poller has not seen yet (and the cursor) to the pipeline; count it."""
        fresh: list[Event] = []
        for ev in events:
            if self.seen.known(ev):
                self.seen.remember(ev)  # its time may have moved (an Evolution edit)
            else:
                fresh.append(ev)
        if not fresh and cursor is None:
            return
        try:
            result = await self.pipeline.ingest(fresh, source=self.source, cursor=cursor)
        except Quarantined as exc:  # kept in dead_letters; the rest and the cursor committed
            result = exc.result
        stats.add(result)
        recovered = 0
        if self.reconciling:
            recovered = sum(1 for t in result.new_times if t >= self.live_since)
            stats.recovered += recovered
        if self.metrics is not None:
            m = self.metrics
            m.child(m.ingested, self.source).inc(result.new)
            m.child(m.duplicates, self.source).inc(result.duplicate)
            m.child(m.quarantined, self.source).inc(result.quarantined)
            m.count_unparsed(self.provider.name, fresh)
            m.reconciled.inc(recovered)
        for ev in fresh:
            self.seen.remember(ev)
        if cursor is not None and cursor.scope == SESSION_SCOPE:
            assert self._cursors is not None
            self._cursors[SESSION_SCOPE] = max(cursor.ts, self._cursors.get(SESSION_SCOPE, 0.0))

    async def _set_status(
        self,
        status: str,
        stats: CycleStats,
        *,
        working: bool,
        reason: str = "",
        engine: str | None = None,
    ) -> None:
        """Record the session's status (a `SessionStatus` event when it changed, carrying the
        engine the provider reported) and whether it can serve, which decides if the next
        cycle asks for the state first."""
        stats.status = status
        if status != self.status or (engine is not None and engine != self._engine):
            if status == "UNAUTHORIZED" or self.status == "UNAUTHORIZED":
                log.warning("session %s: %s %s", self.label, status.lower(), reason)
            detail = {"engine": engine} if engine else {}
            event = SessionStatus(session_id=self.session_id, status=status, detail=detail)
            with contextlib.suppress(Quarantined):  # kept in dead_letters: nothing more to do
                await self.pipeline.ingest([event], source=self.source)
            self.status = status
            self._engine = engine or self._engine
        self._working = working

    def session_cursor(self) -> float:
        """The newest time read from the session's stream (or the initial look-back)."""
        assert self._cursors is not None
        start = self.clock() - self.poll.initial_lookback_h * 3600
        return self._cursors.get(SESSION_SCOPE, start)

    async def _load_cursors(self) -> dict[str, float]:
        table = m.Cursor.__table__  # type: ignore[attr-defined]
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(table.c.scope, table.c.ts).where(table.c.session_id == self.session_id)
            )
            return {r.scope: float(r.ts) for r in rows}

    def _log(self, stats: CycleStats) -> None:
        idle = not (stats.new or stats.chats or stats.error or stats.check_requests)
        if idle and not self.poll.log_idle_cycles:
            return
        failed = bool(stats.error)  # a failed poll is a warning
        log.log(
            logging.WARNING if failed else logging.INFO,
            "poll %s: chats=%d fetched=%d new=%d dup=%d requests=%d%s%s%s in %.2fs",
            *(self.label, stats.chats, stats.fetched, stats.new, stats.duplicate, stats.requests),
            f" ack_check={stats.check_requests}" if stats.check_requests else "",
            f" quarantined={stats.quarantined}" if stats.quarantined else "",
            f" error={stats.error}" if stats.error else "",
            stats.seconds,
            extra={"event": "poll.failed" if failed else "poll.cycle"},
        )
