"""The one-stream strategy of `wasync.poller.Poller`: engines that list every chat's messages
at once (WAHA GOWS/NOWEB, `chats/all/messages`), read as one stream by time.

Each cycle a probe reads the newest second we hold and what follows it (when idle, that
second's rows, all known: one request); when it shows a row the poller has not seen, the
overlap window behind the cursor is read too, and stays owed until that walk has run. Every
`ack_interval_s` a late walk reads the overlap window and everything after it regardless,
passing over pages GOWS emptied by filtering after `limit` (its requests are counted with
the ack check's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

from wasync.config import PollConfig
from wasync.cycle import CycleStats
from wasync.events import Event, Message, Reaction
from wasync.paging import MAX_PAGES
from wasync.pipeline import CursorUpdate
from wasync.providers.base import Page, Provider
from wasync.seen import Seen


class Poller(Protocol):
    """What the stream needs of `wasync.poller.Poller` (a protocol: no import cycle)."""

    provider: Provider
    poll: PollConfig
    seen: Seen
    clock: Callable[[], float]

    @property
    def session_id(self) -> int: ...

    def session_cursor(self) -> float: ...

    def cursor_top(self, page: Page) -> float | None: ...

    async def ingest(
        self, events: Sequence[Event], stats: CycleStats, cursor: CursorUpdate | None = None
    ) -> None: ...


# A late walk passes over this many empty pages in a row where pages may come back short: GOWS
# fills `limit` before it drops reactions and protocol rows, so a page can be empty mid-stream.
LATE_EMPTY_PAGES = 2


class Stream:
    """One poller's stream state: the overlap walk owed, the next late walk."""

    def __init__(self, poller: Poller, *, first_late_at: float) -> None:
        self.poller = poller
        self._owed: float | None = None  # the overlap walk is owed from this cursor
        self._tail: tuple[float, float] | None = None  # a capped newest-first walk's rest
        self._late_at = first_late_at

    def late_due(self) -> bool:
        """Is the late walk due?"""
        return self.poller.clock() >= self._late_at

    async def poll(self, stats: CycleStats) -> None:
        """The newest second we hold and what follows it (when idle, that second's rows, all
        known), then, if that showed a row we had not seen, the overlap window behind it
        (late rows). A row that landed in our newest second after we read it is such a row:
        reading from the next second on would miss it for as long as the session stays quiet."""
        p = self.poller
        cursor = p.session_cursor()
        second = math.floor(cursor)
        if await self.walk(second, None, stats, probe=True):
            # The probe moved the cursor: the walk behind it is owed until it has run (a
            # failed walk is run by the next cycle, from the old cursor).
            self._owed = cursor if self._owed is None else min(self._owed, cursor)
        if self._owed is not None:
            await self.walk(self._owed - p.poll.overlap_s, second - 0.001, stats)
            self._owed = None
        if self._tail is not None:  # set again by a walk that is capped once more
            since, until = self._tail
            self._tail = None
            try:
                await self.walk(since, until, stats)
            except BaseException:
                self._tail = self._tail or (since, until)
                raise

    async def late(self, stats: CycleStats) -> None:
        """Every `ack_interval_s`, the overlap window behind the cursor and everything after
        it, read whether or not the probe saw anything: rows that surfaced late with an older
        time (a phone that was offline), and rows hidden behind a page GOWS emptied by its
        filtering after `limit`. Counted with the ack check's requests."""
        p = self.poller
        self._late_at = p.clock() + p.poll.ack_interval_s
        since = p.session_cursor() - p.poll.overlap_s
        await self.walk(since, None, stats, empty_ok=LATE_EMPTY_PAGES)

    async def walk(
        self,
        since: float,
        until: float | None,
        stats: CycleStats,
        *,
        probe: bool = False,
        empty_ok: int = 0,
    ) -> bool:
        """Page `[since, until]` of every chat, then move the session cursor to the newest
        row read; True when it held a row this poller had not seen. Only an empty page ends
        it where pages may come back short (GOWS/NOWEB drop rows after `limit`), except that a
        `probe` ends at a short page of known rows (the idle cycle's one request); a page of
        rows we hold moves the window to its newest second, and ends the walk when that does
        not advance. `empty_ok`: empty pages passed over before one ends it (short pages).

        The cursor moves once the walk has reached its end: WAHA before 2025.10.5 knows no
        `sortOrder` and lists newest first, and a walk cut short after its first page would
        otherwise leave the older rows behind the cursor, beyond the overlap window (a walk
        cut short is run again from the old cursor). A newest-first walk stopped by its page
        cap owes what lies below its oldest row to the next cycle."""
        p = self.poller
        seen: set[str] = set()
        page_no, novel, newest_first = 1, False, False
        held: float | None = None  # the newest time read, the cursor once the walk is whole
        oldest = math.inf  # the oldest row's time read
        for _ in range(MAX_PAGES):
            page = await p.provider.messages(
                None, since=since, until=until, limit=p.poll.page_size, page=page_no
            )
            if page.size == 0:
                if empty_ok > 0 and p.provider.short_pages:
                    empty_ok, page_no = empty_ok - 1, page_no + 1
                    continue
                break
            novel = novel or not all(p.seen.known(ev) for ev in page.events)
            fresh = [i for i in page.ids if i not in seen]
            seen.update(page.ids)
            stats.fetched += page.size
            older = page.max_ts is not None and page.max_ts < oldest < math.inf
            newest_first = newest_first or older or _newest_first(page)
            oldest = min(oldest, page.min_ts if page.min_ts is not None else math.inf)
            if (top := p.cursor_top(page)) is not None:
                held = max(held if held is not None else top, top)
            await p.ingest(page.events, stats)
            # A probe's short page of known rows ends it, unless pages come newest first:
            # rows of a walk cut short before (known since) may still have older ones below.
            if page.size < p.poll.page_size and (
                (probe and not novel and not newest_first) or not p.provider.short_pages
            ):
                break
            if fresh or newest_first:  # newest first, known rows are rows pushed down a page
                page_no += 1
            elif page.max_ts is not None and page.max_ts > since:
                since, page_no = page.max_ts, 1
            else:
                break
        else:
            if newest_first and oldest < math.inf:  # capped: the rows below are owed
                self._tail = (since, oldest if until is None else min(oldest, until))
        if held is not None and held > p.session_cursor():
            await p.ingest([], stats, CursorUpdate(session_id=p.session_id, ts=held))
        return novel


def _newest_first(page: Page) -> bool:
    """Whether a page lists newest first (its first row is newer than its last)."""
    times = [ev.timestamp for ev in page.events if isinstance(ev, Message | Reaction)]
    return len(times) > 1 and times[0] > times[-1]
