"""The backfill walk: a chat's missing history read window by window, halving a window that
needs too many pages or comes back short of the provider's `total`."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Protocol

from wasync.backfill.batch import Batch
from wasync.backfill.checkpoints import Window, gaps, utc
from wasync.backfill.options import Options
from wasync.events import Event, Message, Reaction, Unparsed
from wasync.paging import MAX_PAGES, window_pages
from wasync.providers.base import ChatHead, Page, Provider
from wasync.registry import SessionRef

log = logging.getLogger(__name__)

REREADS = 3


class Run(Protocol):
    """What a walk asks of the run it belongs to (`Backfill`)."""

    options: Options

    @property
    def stopping(self) -> bool:
        """True once the run was asked to stop."""
        ...

    def count(self, n: int) -> None:
        """Messages seen (`--max-messages` stops the run)."""
        ...


@dataclass(slots=True)
class _Read:
    """What reading one window (and its halves) took."""

    width: float
    limit: int
    page_size: int
    narrowest: float = 0.0  # the widest window read without halving; set in __post_init__
    pages: int = 0
    fresh: int = 0
    skipped: int = 0
    total: int | None = None
    stopped: bool = False
    split: bool = False
    incomplete: bool = False  # still short of `total` after re-reads: not checkpointed

    def __post_init__(self) -> None:
        self.narrowest = self.narrowest or self.width

    @property
    def overflow(self) -> bool:
        """It took, or (by the provider's `total`) will take, more pages than allowed."""
        return self.pages > self.limit or (self.total or 0) > self.limit * self.page_size

    def add(self, page: Page) -> None:
        """Count one page (an empty one only ends a walk: it is not counted)."""
        self.pages += 1 if page.size else 0
        self.skipped += skipped(page)
        self.total = page.total if page.total is not None else self.total

    def halves(self, left: _Read, right: _Read | None) -> _Read:
        """This read, followed by its two halves."""
        parts = [p for p in (left, right) if p is not None]
        return replace(
            self,
            narrowest=min(p.narrowest for p in parts),
            pages=self.pages + sum(p.pages for p in parts),
            fresh=self.fresh + sum(p.fresh for p in parts),
            stopped=right is None or any(p.stopped for p in parts),
            split=True,
            incomplete=any(p.incomplete for p in parts),
        )

    def absorb(self, again: _Read) -> None:
        """Another pass over the same window."""
        self.pages += again.pages
        self.fresh += again.fresh
        self.skipped = max(self.skipped, again.skipped)
        self.total = again.total if again.total is not None else self.total
        self.stopped = again.stopped


class ChatWalk:
    """Reads one chat's missing windows, oldest first, into the sink."""

    def __init__(
        self,
        run: Run,
        ref: SessionRef,
        provider: Provider,
        head: ChatHead,
        batch: Batch,
    ) -> None:
        self.run = run
        self.opts = run.options
        self.ref = ref
        self.provider = provider
        self.head = head
        self.batch = batch
        self.stats = batch.stats
        self.size = self.opts.window_s
        self.known: dict[str, float] = {}  # ids read in this window, with their time
        self.previous: dict[str, float] = {}  # ... and in the one before (shared edge)
        self.complete = False

    async def run_chat(self, done: Sequence[Window]) -> None:
        """Walk every gap, oldest first; `complete` when none was cut short."""
        for lo, hi in gaps(self.opts.since, self.opts.until, done):
            if not await self._gap(lo, hi):
                return
        self.complete = True

    async def _gap(self, lo: float, hi: float) -> bool:
        """Read `[lo, hi]` window by window; False when the run is stopping."""
        start = lo
        while start < hi:
            end = min(start + self.size, hi)
            self.previous, self.known = self.known, {}
            read = await self._window(start, end)
            if read.stopped:
                return False
            if not read.incomplete:
                self.batch.done(self.head.chat_id, Window(start, end, read.fresh))
            self.stats.windows += 1
            self.size = self._next_size(read)
            start = end
        return True

    def _next_size(self, read: _Read) -> float:
        if read.split:
            return max(float(round(read.narrowest)), self.opts.min_window_s)
        if read.pages <= 1:
            return min(self.size * 2, self.opts.max_window_s)
        return self.size

    async def _window(self, lo: float, hi: float) -> _Read:
        """Read `[lo, hi]` completely: halved while it needs more than `max_pages` pages or
        comes back short of the provider's `total` (Evolution's untied ordering). The halves
        do not overlap: `[lo, mid - 1 ms]` and `[mid, hi]`, so one second is the floor."""
        splittable = hi - lo >= max(self.opts.min_window_s, 1.0)
        read = await self._pages(lo, hi, self.opts.max_pages if splittable else MAX_PAGES)
        if read.stopped or not (read.overflow or self._short(read, lo, hi)):
            return read
        if not splittable:
            return await self._reread(lo, hi, read)
        mid = float(math.ceil((lo + hi) / 2))
        left = await self._window(lo, mid - 0.001)
        right = None if left.stopped else await self._window(mid, hi)
        return read.halves(left, right)

    async def _reread(self, lo: float, hi: float, read: _Read) -> _Read:
        """A window too narrow to halve that came back short: read it again (each pass sees
        another order of the tied rows); give up after a few passes, without a checkpoint."""
        for _ in range(REREADS):
            read.absorb(await self._pages(lo, hi, MAX_PAGES))
            if read.stopped or not self._short(read, lo, hi):
                return read
        read.incomplete = True
        log.warning(
            "backfill %s chat %s: %d of %s rows at %s after %d reads; rerun to retry",
            self.ref.label,
            self.head.chat_id,
            self._between(lo, hi),
            read.total,
            utc(lo).isoformat(),
            REREADS + 1,
        )
        return read

    def _short(self, read: _Read, lo: float, hi: float) -> bool:
        """Fewer rows read in `[lo, hi]` (by any pass) than the provider's `total` for it:
        Evolution swapped tied rows between pages."""
        return read.total is not None and self._between(lo, hi) + read.skipped < read.total

    def _between(self, lo: float, hi: float) -> int:
        return sum(1 for ts in self.known.values() if lo <= ts <= hi)

    async def _pages(self, lo: float, hi: float, limit: int) -> _Read:
        read = _Read(width=hi - lo, limit=limit, page_size=self.opts.page_size)
        pages = window_pages(
            self.provider,
            self.head.chat_id,
            since=lo,
            until=hi,
            page_size=self.opts.page_size,
            max_pages=limit + 1,
        )
        async with aclosing(pages) as stream:
            async for page in stream:
                read.add(page)
                read.fresh += await self._take(page)
                if read.overflow:
                    break
                if self.run.stopping:
                    read.stopped = True
                    break
        return read

    async def _take(self, page: Page) -> int:
        """Buffer the page's events not read before in this chat; return how many were new."""
        fresh: list[Event] = []
        for ev in page.events:
            if isinstance(ev, Message | Reaction):
                key = ev.provider_message_id
                if key in self.known:
                    continue
                self.known[key] = ev.timestamp.timestamp() if ev.timestamp else 0.0
                if key in self.previous:  # on the edge shared with the last window
                    continue
            fresh.append(ev)
        new = sum(1 for ev in fresh if isinstance(ev, Message | Reaction))
        rejected = skipped(page)
        self.stats.seen += new + rejected
        self.stats.rejected += rejected
        self.run.count(new + rejected)
        await self.batch.add(fresh)
        return new


def skipped(page: Page) -> int:
    """The page's rows that are no message: not even an object, or kept unparsed."""
    unparsed = sum(1 for ev in page.events if isinstance(ev, Unparsed))
    return page.size - len(page.events) + unparsed


async def list_chats(provider: Provider, page_size: int) -> list[ChatHead]:
    """Every chat of the provider's chat list, newest activity first. The first page is read
    again at the end: a chat that got a message meanwhile jumped there, past our offset."""
    heads: dict[str, ChatHead] = {}
    offset = 0
    for _ in range(MAX_PAGES):
        page = await provider.chat_heads(limit=page_size, offset=offset)
        known = len(heads)
        for head in page:
            heads.setdefault(head.chat_id, head)
        if len(page) < page_size or len(heads) == known:  # short, or offset ignored
            break
        offset += page_size
    if offset:
        for head in await provider.chat_heads(limit=page_size, offset=0):
            heads.setdefault(head.chat_id, head)
    return list(heads.values())
