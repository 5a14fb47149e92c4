"""`wasync backfill`: a bounded, resumable walk of history through the one pipeline.

Chats come from each session's chat list (every page, then the first page again for chats that
moved to the top meanwhile); `--chat` keeps one. A chat's `[since, until]`, minus the windows
already checkpointed, is read in **timestamp windows**, not by offsets alone: some WAHA engines
ignore offsets and Evolution's pages shift while you read (waha.md 3, evolution.md 5.2). A
window starts at a day, doubles while it fits in one page, and is halved while it needs more
than `max_pages` pages or comes back short of Evolution's `total`. Inside a window,
`poller.window_pages` pages by offset, or by narrowing `until` when offsets are ignored; rows
read twice are dropped here, and the store's unique key is the guarantee.

Events go through `Pipeline.ingest(source="backfill", realtime="summary")`: leads and chats as
usual, no admin notification unless `--notify`, and one `chat:updated` per chat and batch
instead of one frame per message. A session's walkers (`chats_in_flight` chats at once) keep
reading while its previous batch of up to `flush_events` events is stored; each window's
checkpoint row (`backfill_checkpoints`) is
written in its own transaction once the batch holding its last page has committed: a crash in
between only means that window is read again and deduplicated. Ctrl-C (or SIGTERM) stops after
the pages in flight, stores what was read, and prints the summary; the same command continues.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import case, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync import phones
from wasync.config import Settings
from wasync.errors import (
    FatalProviderError,
    ProviderError,
    StoreUnavailable,
    TransientProviderError,
)
from wasync.events import ChatKind, Event, Message, Reaction
from wasync.pipeline import IngestResult, Pipeline
from wasync.poller import MAX_PAGES, window_pages
from wasync.providers.base import ChatHead, Page, Provider
from wasync.registry import Registry, SessionRef, provider_for, sync
from wasync.store import Store
from wasync.store import models as m

log = logging.getLogger(__name__)

SOURCE = "backfill"
T_CHECKPOINTS = m.BackfillCheckpoint.__table__  # type: ignore[attr-defined]
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_SESSIONS = m.Session.__table__  # type: ignore[attr-defined]
T_IDENTITIES = m.Identity.__table__  # type: ignore[attr-defined]
DAY_S = 86_400.0
REREADS = 3
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BackfillUsageError(ValueError):
    """A bad command line (date, tenant, session, chat); the CLI prints it and exits 2."""


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatFilter:
    """`--chat`: a canonical phone (matched in any jid form, or through a known LID) or a jid."""

    text: str
    phone: str | None = None
    jid: str | None = None

    def matches(self, chat_id: str, lid_phones: Mapping[str, str]) -> bool:
        """True when a listed chat is the wanted one."""
        phone = phones.canonical_phone(chat_id) or lid_phones.get(chat_id.lower())
        if self.phone is not None and phone == self.phone:
            return True
        return self.jid is not None and chat_id.lower() == self.jid


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What to backfill and how; built by `make_options` from the command line.

    Windows start at `window_s`, double up to `max_window_s` while they fit in one page, and are
    halved (down to `min_window_s`) while they need more than `max_pages` pages. `fetch_only`
    reads the providers and never opens the database (benchmarks).
    """

    since: float
    until: float
    tenant: str | None = None
    session: str | None = None
    chat: ChatFilter | None = None
    max_messages: int | None = None
    dry_run: bool = False
    fetch_only: bool = False
    notify: bool = False
    page_size: int = 100
    window_s: float = DAY_S
    max_window_s: float = 32 * DAY_S
    min_window_s: float = 1.0
    max_pages: int = 10
    chats_in_flight: int = 4
    flush_events: int = 2_000


def parse_when(text: str, *, end_of_day: bool = False) -> float:
    """Epoch seconds of an ISO date (`2026-01-31`: midnight UTC, or its last second with
    `end_of_day`) or date-time (`2026-01-31T12:00`, UTC unless it carries an offset)."""
    raw = text.strip()
    try:
        if _DATE_ONLY.match(raw):
            day = date.fromisoformat(raw)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start.timestamp() + (DAY_S - 1 if end_of_day else 0)
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise BackfillUsageError(
            f"bad date {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def parse_chat(text: str) -> ChatFilter:
    """`--chat`: a jid (`…@c.us`, `…@s.whatsapp.net`, `…@lid`, `…@g.us`) or a phone number."""
    raw = text.strip()
    if "@" in raw:
        return ChatFilter(text=text, jid=raw.lower(), phone=phones.canonical_phone(raw))
    try:
        return ChatFilter(text=text, phone=phones.parse_phone(raw))
    except ValueError as exc:
        raise BackfillUsageError(f"--chat: {exc}") from None


def make_options(
    settings: Settings,
    *,
    since: str,
    until: str | None = None,
    tenant: str | None = None,
    session: str | None = None,
    chat: str | None = None,
    now: float | None = None,
    **extra: Any,
) -> Options:
    """Validate the command line against the config; raise BackfillUsageError on a problem."""
    start = parse_when(since)
    end = parse_when(until, end_of_day=True) if until else (now or time.time())
    if start >= end:
        raise BackfillUsageError("--since must be before --until (or before now)")
    check_selection(settings, tenant, session)
    chat_filter = parse_chat(chat) if chat else None
    return Options(
        since=float(math.floor(start)),
        until=float(math.ceil(end)),
        tenant=tenant,
        session=session,
        chat=chat_filter,
        **extra,
    )


def check_selection(settings: Settings, tenant: str | None, session: str | None) -> None:
    """Unknown tenant, unknown session, or a session name shared by tenants without `--tenant`."""
    tenants = [t for t in settings.tenants if tenant is None or t.id == tenant]
    if tenant is not None and not tenants:
        known = ", ".join(t.id for t in settings.tenants) or "none configured"
        raise BackfillUsageError(f"unknown tenant {tenant!r} (tenants: {known})")
    if session is None:
        return
    owners = [t.id for t in tenants if any(s.name == session for s in t.sessions)]
    if not owners:
        where = f" in tenant {tenant!r}" if tenant else ""
        raise BackfillUsageError(f"unknown session {session!r}{where}")
    if len(owners) > 1:
        raise BackfillUsageError(
            f"session {session!r} exists in tenants {', '.join(owners)}: pass --tenant"
        )


def selected(refs: Iterable[SessionRef], options: Options) -> list[SessionRef]:
    """The sessions to walk: the named one (even if disabled), else every enabled one."""
    out = []
    for ref in refs:
        if options.tenant is not None and ref.tenant_id != options.tenant:
            continue
        if options.session is not None:
            if ref.name == options.session:
                out.append(ref)
        elif ref.config.enabled:
            out.append(ref)
    return out


# --- windows and checkpoints --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """A closed time range `[start, end]` in epoch seconds; `messages` read in it."""

    start: float
    end: float
    messages: int = 0


def gaps(since: float, until: float, done: Iterable[Window]) -> list[tuple[float, float]]:
    """The parts of `[since, until]` that no done window covers, oldest first."""
    out: list[tuple[float, float]] = []
    cursor = since
    for w in sorted(done, key=lambda w: w.start):
        if w.end <= cursor:
            continue
        if w.start > cursor:
            out.append((cursor, min(w.start, until)))
        cursor = max(cursor, w.end)
        if cursor >= until:
            return out
    if cursor < until:
        out.append((cursor, until))
    return out


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


async def _has_table(conn: AsyncConnection, name: str) -> bool:
    return bool(await conn.run_sync(lambda sync_conn: inspect(sync_conn).has_table(name)))


async def load_checkpoints(store: Store | None, session_id: int) -> dict[str, list[Window]]:
    """Done windows of a session, by chat id (nothing for a database without the table)."""
    if store is None or session_id <= 0:
        return {}
    c = T_CHECKPOINTS.c
    done: dict[str, list[Window]] = {}
    async with store.read() as conn:
        if not await _has_table(conn, T_CHECKPOINTS.name):
            return {}
        rows = await conn.execute(
            select(c.chat_jid, c.window_start, c.window_end, c.messages).where(
                c.session_id == session_id
            )
        )
        for r in rows:
            window = Window(_epoch(r.window_start), _epoch(r.window_end), r.messages)
            done.setdefault(r.chat_jid, []).append(window)
    return done


async def save_checkpoints(
    store: Store, session_id: int, windows: Sequence[tuple[str, Window]]
) -> None:
    """Mark (chat, window) pairs done, in one transaction; a window seen again keeps its
    widest end."""
    rows = [
        {
            "session_id": session_id,
            "chat_jid": chat_jid,
            "window_start": _utc(w.start),
            "window_end": _utc(w.end),
            "messages": w.messages,
            "done_at": m.utcnow(),
        }
        for chat_jid, w in windows
    ]
    insert = sqlite.insert if store.is_sqlite else postgresql.insert
    stmt = insert(T_CHECKPOINTS)
    c, ex = T_CHECKPOINTS.c, stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["session_id", "chat_jid", "window_start"],
        set_={
            "window_end": case((ex.window_end > c.window_end, ex.window_end), else_=c.window_end),
            "messages": ex.messages,
            "done_at": ex.done_at,
        },
    )
    async with store.write() as conn:
        await conn.execute(stmt, rows)


# --- sinks: where the events of a walk go -------------------------------------------------------


@dataclass(slots=True)
class Counts:
    """What a sink did with a batch."""

    new: int = 0
    duplicate: int = 0
    rejected: int = 0


Done = Sequence[tuple[str, Window]]  # finished windows, by chat id


class Sink(Protocol):
    """Takes a session's events, then marks the windows they completed."""

    async def write(self, session_id: int, events: Sequence[Event], windows: Done) -> Counts:
        """Store (or count) `events`; checkpoint `windows` only after they are stored."""
        ...


class StoreSink:
    """The real thing: `Pipeline.ingest`, then the checkpoints in their own transaction."""

    def __init__(self, pipeline: Pipeline, store: Store, *, notify: bool) -> None:
        self.pipeline = pipeline
        self.store = store
        self.notify = notify

    async def write(self, session_id: int, events: Sequence[Event], windows: Done) -> Counts:
        """Ingest, then checkpoint."""
        counts = Counts()
        if events:
            result = await self._ingest(events)
            counts = Counts(result.new, result.duplicate, result.rejected + result.ignored)
        if windows:
            await save_checkpoints(self.store, session_id, windows)
        return counts

    async def _ingest(self, events: Sequence[Event]) -> IngestResult:
        """One retry for a batch that failed on data: another writer (the daemon) may have
        merged a chat this pipeline had cached; the failure emptied those caches."""
        for attempt in (1, 2):
            try:
                return await self.pipeline.ingest(
                    events, source=SOURCE, notify=self.notify, realtime="summary"
                )
            except StoreUnavailable:
                raise
            except Exception as exc:
                if attempt == 2:
                    raise
                log.warning("backfill batch failed (%s); retrying once", type(exc).__name__)
        raise AssertionError("unreachable")  # pragma: no cover


class DryRunSink:
    """Writes nothing: counts as new what the database does not hold yet (all without one),
    and what this run has not counted already (a row listed under two chats)."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.counted: set[tuple[int, str]] = set()

    async def write(self, session_id: int, events: Sequence[Event], windows: Done) -> Counts:
        """Look the message keys up, read-only."""
        keys = [k for k in (_key(ev) for ev in events) if k is not None]
        stored: set[str] = set()
        if keys and self.store is not None and session_id > 0:
            stored = await self._stored(session_id, set(keys))
        new = {k for k in keys if k not in stored and (session_id, k) not in self.counted}
        self.counted.update((session_id, k) for k in new)
        return Counts(new=len(new), duplicate=len(keys) - len(new))

    async def _stored(self, session_id: int, keys: set[str]) -> set[str]:
        assert self.store is not None
        c = T_MESSAGES.c
        async with self.store.read() as conn:
            if not await _has_table(conn, T_MESSAGES.name):
                return set()
            rows = await conn.execute(
                select(c.provider_message_id).where(
                    c.session_id == session_id, c.provider_message_id.in_(sorted(keys))
                )
            )
            return {r.provider_message_id for r in rows}


def _key(ev: Event) -> str | None:
    return ev.provider_message_id if isinstance(ev, Message | Reaction) else None


# --- progress and report ------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class SessionStats:
    """One session's backfill: a row of the summary. `seen` = `new` + `duplicate` +
    `rejected` (unknown session, ignored chat kinds, rows the provider module could not parse)."""

    label: str
    chats: int = 0
    chats_done: int = 0
    chats_failed: int = 0
    seen: int = 0
    new: int = 0
    duplicate: int = 0
    rejected: int = 0
    windows: int = 0
    requests: int = 0
    elapsed_s: float = 0.0
    error: str | None = None

    def add(self, counts: Counts) -> None:
        """Count a sink's answer."""
        self.new += counts.new
        self.duplicate += counts.duplicate
        self.rejected += counts.rejected


@dataclass(slots=True, kw_only=True)
class BackfillReport:
    """Every session's stats, and why the run stopped early (None: it finished)."""

    sessions: list[SessionStats] = field(default_factory=list)
    stopped: str | None = None
    dry_run: bool = False
    problem: str | None = None  # e.g. `--chat` matched no chat anywhere

    @property
    def ok(self) -> bool:
        """No session failed, no chat was left out by an error, nothing else went wrong."""
        fine = all(s.error is None and not s.chats_failed for s in self.sessions)
        return fine and self.problem is None


class Observer(Protocol):
    """Shows progress; called from the walk, must not block."""

    def started(self, stats: SessionStats) -> None:
        """The session's chat list is known."""

    def progressed(self, stats: SessionStats) -> None:
        """A batch was stored or a chat finished."""

    def finished(self, stats: SessionStats) -> None:
        """The session is done (or failed)."""


class LogObserver:
    """Plain log lines: at start, at most one per `interval_s` per session, and at the end."""

    def __init__(
        self, interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}

    def started(self, stats: SessionStats) -> None:
        """Log the chat count."""
        self._last[stats.label] = self.clock()
        log.info("backfill %s: %d chats to read", stats.label, stats.chats)

    def progressed(self, stats: SessionStats) -> None:
        """Log now and then."""
        if self.clock() - self._last.get(stats.label, 0.0) >= self.interval_s:
            self._last[stats.label] = self.clock()
            self._line(stats)

    def finished(self, stats: SessionStats) -> None:
        """Log the final line."""
        self._line(stats)

    def _line(self, s: SessionStats) -> None:
        log.info(
            "backfill %s: %d/%d chats, %d seen, %d new, %d duplicate, %d rejected%s",
            s.label,
            s.chats_done,
            s.chats,
            s.seen,
            s.new,
            s.duplicate,
            s.rejected,
            f", error: {s.error}" if s.error else "",
        )


class RichObserver:
    """A progress bar per session on a terminal: chats done / total, messages seen / new."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._tasks: dict[str, TaskID] = {}

    def started(self, stats: SessionStats) -> None:
        """Add the session's bar."""
        self._tasks[stats.label] = self.progress.add_task(
            stats.label, total=stats.chats or 1, seen=0, new=0
        )

    def progressed(self, stats: SessionStats) -> None:
        """Move the bar."""
        task = self._tasks.get(stats.label)
        if task is not None:
            self.progress.update(task, completed=stats.chats_done, seen=stats.seen, new=stats.new)

    def finished(self, stats: SessionStats) -> None:
        """Final position (a failed session may have no bar)."""
        self.progressed(stats)


def progress_bar(console: Console) -> Progress:
    """The rich progress display used on a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} chats"),
        TextColumn("{task.fields[seen]} seen / {task.fields[new]} new"),
        TimeElapsedColumn(),
        console=console,
    )


def summary_table(report: BackfillReport) -> Table:
    """The end-of-run table: one row per session."""
    title = "backfill (dry run: nothing written)" if report.dry_run else "backfill"
    table = Table(title=title, title_justify="left")
    for name in ("session", "chats", "seen", "new", "duplicates", "rejected", "elapsed"):
        if name == "session":
            table.add_column(name, overflow="fold")
        else:
            table.add_column(name, justify="right")
    table.add_column("note")
    for s in report.sessions:
        chats = str(s.chats) if s.chats_done == s.chats else f"{s.chats_done}/{s.chats}"
        note = s.error or (f"{s.chats_failed} chats failed" if s.chats_failed else "")
        table.add_row(
            s.label,
            chats,
            str(s.seen),
            str(s.new),
            str(s.duplicate),
            str(s.rejected),
            f"{s.elapsed_s:.1f}s",
            note,
        )
    return table


# --- the walk -----------------------------------------------------------------------------------


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
        self.skipped += page.size - len(page.events)
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
        run: Backfill,
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
            _utc(lo).isoformat(),
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
        skipped = page.size - len(page.events)
        self.stats.seen += new + skipped
        self.stats.rejected += skipped
        self.run.count(new + skipped)
        await self.batch.add(fresh)
        return new


class Batch:
    """A session's events and finished windows on their way to the sink, in big batches.

    Walkers add and go on reading while the previous batch is stored (one at a time, in
    order: a window's checkpoint is written only after every batch holding its events).
    """

    def __init__(self, run: Backfill, session_id: int, stats: SessionStats) -> None:
        self.run = run
        self.session_id = session_id
        self.stats = stats
        self.events: list[Event] = []
        self.windows: list[tuple[str, Window]] = []
        self._lock = asyncio.Lock()
        self._writing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Store what is left, also after a provider error; on cancellation, stop writing."""
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            if self._writing is not None:
                self._writing.cancel()
            return
        await self.flush()
        await self._wait()

    async def add(self, events: Sequence[Event]) -> None:
        """Buffer events; start storing once `flush_events` are waiting."""
        self.events.extend(events)
        if len(self.events) >= self.run.options.flush_events:
            await self.flush()

    def done(self, chat_jid: str, window: Window) -> None:
        """A window whose events are all buffered (or stored) already."""
        self.windows.append((chat_jid, window))

    async def flush(self) -> None:
        """Wait for the batch being stored, then start storing this one."""
        async with self._lock:
            if not self.events and not self.windows:
                return
            await self._wait()
            events, self.events = self.events, []
            windows, self.windows = self.windows, []
            self._writing = asyncio.create_task(self._write(events, windows))

    async def _wait(self) -> None:
        task, self._writing = self._writing, None
        if task is not None:
            await task

    async def _write(self, events: list[Event], windows: list[tuple[str, Window]]) -> None:
        counts = await self.run.sink.write(self.session_id, events, windows)
        self.stats.add(counts)
        self.run.observer.progressed(self.stats)


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


class Backfill:
    """One backfill run over several sessions; a session's errors end up in its stats."""

    def __init__(
        self,
        settings: Settings,
        options: Options,
        *,
        client: httpx.AsyncClient,
        sink: Sink,
        store: Store | None,
        observer: Observer,
        stop: asyncio.Event | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.options = options
        self.client = client
        self.sink = sink
        self.store = store
        self.observer = observer
        self.stop = stop or asyncio.Event()
        self.clock = clock
        self.stopped: str | None = None
        self.seen = 0

    @property
    def stopping(self) -> bool:
        """True once Ctrl-C, SIGTERM or `--max-messages` asked the walk to stop."""
        return self.stop.is_set()

    def halt(self, reason: str) -> None:
        """Stop after the pages in flight; the first reason is the one reported."""
        self.stopped = self.stopped or reason
        self.stop.set()

    def count(self, n: int) -> None:
        """Messages seen; stops the run at `--max-messages`."""
        self.seen += n
        limit = self.options.max_messages
        if limit is not None and self.seen >= limit:
            self.halt(f"--max-messages {limit} reached")

    async def run(self, refs: Sequence[SessionRef]) -> BackfillReport:
        """Walk every session concurrently."""
        report = BackfillReport(dry_run=self.options.dry_run or self.options.fetch_only)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self.session(ref)) for ref in refs]
        report.sessions = [t.result() for t in tasks]
        wanted = self.options.chat
        if wanted is not None and not any(s.chats for s in report.sessions):
            report.problem = f"no chat matches --chat {wanted.text!r}"
        if self.stopped is None and self.stop.is_set():
            self.stopped = "interrupted"
        report.stopped = self.stopped
        return report

    async def session(self, ref: SessionRef) -> SessionStats:
        """Backfill one session; provider and store errors end up in its stats."""
        stats = SessionStats(label=ref.label)
        started = self.clock()
        provider = provider_for(ref, self.client, self.settings.poll)
        try:
            await self._session(ref, provider, stats)
        except* ProviderError as group:  # Unauthorized, SessionNotWorking, or a failed list
            stats.error = str(group.exceptions[0])
        except* StoreUnavailable as group:
            stats.error = str(group.exceptions[0])
            self.halt("database unavailable")
        stats.requests = provider.requests
        stats.elapsed_s = self.clock() - started
        self.observer.finished(stats)
        return stats

    async def _session(self, ref: SessionRef, provider: Provider, stats: SessionStats) -> None:
        state = await provider.state()
        if not state.working:
            stats.error = f"session is {state.status}, not working"
            return
        heads = await self._chats(ref, provider)
        done = await load_checkpoints(self.store, ref.id)
        stats.chats = len(heads)
        self.observer.started(stats)
        queue = deque(heads)
        workers = max(1, min(self.options.chats_in_flight, len(heads)))
        async with Batch(self, ref.id, stats) as batch, asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(self._worker(ref, provider, queue, done, batch))

    async def _worker(
        self,
        ref: SessionRef,
        provider: Provider,
        queue: deque[ChatHead],
        done: Mapping[str, Sequence[Window]],
        batch: Batch,
    ) -> None:
        stats = batch.stats
        while queue and not self.stopping:
            head = queue.popleft()
            walk = ChatWalk(self, ref, provider, head, batch)
            try:
                await walk.run_chat(done.get(head.chat_id, ()))
            except (TransientProviderError, FatalProviderError) as exc:
                stats.chats_failed += 1
                log.warning("backfill %s chat %s failed: %s", ref.label, head.chat_id, exc)
                continue
            stats.chats_done += walk.complete
            self.observer.progressed(stats)

    async def _chats(self, ref: SessionRef, provider: Provider) -> list[ChatHead]:
        """The chat list, without chats quiet since `--since`, unwanted kinds, other chats."""
        heads = await list_chats(provider, self.options.page_size)
        crm = self.settings.crm
        dropped = {
            ChatKind.BROADCAST: not crm.keep_status_broadcast,
            ChatKind.NEWSLETTER: not crm.keep_newsletters,
        }
        heads = [
            h
            for h in heads
            if not dropped.get(phones.kind_of(h.chat_id), False)
            and (h.last_ts is None or h.last_ts >= self.options.since)
        ]
        wanted = self.options.chat
        if wanted is None:
            return heads
        lids = await lid_phones(self.store, ref.tenant_id) if wanted.phone else {}
        return [h for h in heads if wanted.matches(h.chat_id, lids)]


async def lid_phones(store: Store | None, tenant_id: str) -> dict[str, str]:
    """Known `lid -> phone` pairs of a tenant (read-only), to match `--chat` on LID chats."""
    if store is None:
        return {}
    c = T_IDENTITIES.c
    async with store.read() as conn:
        if not await _has_table(conn, T_IDENTITIES.name):
            return {}
        rows = await conn.execute(select(c.lid, c.phone).where(c.tenant_id == tenant_id))
        return {r.lid.lower(): r.phone for r in rows}


# --- composition --------------------------------------------------------------------------------


async def known_sessions(store: Store | None, settings: Settings) -> Registry:
    """The configured sessions with their database ids, read-only (dry run): a session the
    database does not know yet gets a negative id and nothing counts as stored for it."""
    ids: dict[tuple[str, str], int] = {}
    if store is not None:
        async with store.read() as conn:
            if await _has_table(conn, T_SESSIONS.name):
                c = T_SESSIONS.c
                rows = await conn.execute(select(c.id, c.tenant_id, c.name))
                ids = {(r.tenant_id, r.name): int(r.id) for r in rows}
    refs: dict[int, SessionRef] = {}
    for tenant in settings.tenants:
        for cfg in tenant.sessions:
            sid = ids.get((tenant.id, cfg.name), -(len(refs) + 1))
            refs[sid] = SessionRef(id=sid, tenant_id=tenant.id, config=cfg)
    return Registry(refs)


def _sqlite_file_missing(url: str) -> bool:
    """A dry run must not create the SQLite file it would read."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return not Path(parsed.database).expanduser().exists()


async def _open_store(stack: AsyncExitStack, settings: Settings, options: Options) -> Store | None:
    if options.fetch_only or (options.dry_run and _sqlite_file_missing(settings.database.url)):
        return None
    db = settings.database
    store = Store.from_config(db)
    return await stack.enter_async_context(store)


async def run_backfill(
    settings: Settings,
    options: Options,
    *,
    observer: Observer | None = None,
    stop: asyncio.Event | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> BackfillReport:
    """Open what a backfill needs (store, pipeline, HTTP client), walk, close; the report."""
    async with AsyncExitStack() as stack:
        store = await _open_store(stack, settings, options)
        sink: Sink
        if store is None or options.dry_run:
            registry = await known_sessions(store, settings)
            sink = DryRunSink(store)
        else:
            await store.upgrade()
            registry = await sync(store, settings)
            sink = StoreSink(await _pipeline(stack, store, settings), store, notify=options.notify)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, limits=httpx.Limits(max_connections=100))
        )
        run = Backfill(
            settings,
            options,
            client=client,
            sink=sink,
            store=store,
            observer=observer or LogObserver(),
            stop=stop,
        )
        return await run.run(selected(registry, options))


async def _pipeline(stack: AsyncExitStack, store: Store, settings: Settings) -> Pipeline:
    return await stack.enter_async_context(Pipeline.from_settings(store, settings))


def _on_signals(stop: asyncio.Event) -> None:
    """First Ctrl-C / SIGTERM: stop after the pages in flight. A second Ctrl-C aborts."""
    loop = asyncio.get_running_loop()

    def first() -> None:
        log.warning("stopping after the pages in flight (Ctrl-C again to abort)")
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, first)


async def backfill_cli(settings: Settings, options: Options) -> BackfillReport:
    """What `wasync backfill` runs: a progress bar on a terminal, log lines otherwise, then the
    summary table on stdout."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    stop = asyncio.Event()
    _on_signals(stop)
    err = Console(stderr=True)
    if err.is_terminal:
        with progress_bar(err) as bar:
            report = await run_backfill(settings, options, observer=RichObserver(bar), stop=stop)
    else:
        report = await run_backfill(settings, options, stop=stop)
    out = Console()
    if not out.is_terminal:  # a log file: do not squeeze the table into 80 columns
        out = Console(width=max(out.width, 120))
    out.print(summary_table(report))
    if report.problem:
        out.print(report.problem, highlight=False)
    if report.stopped:
        note = f"stopped early: {report.stopped}; run the same command to continue"
        out.print(note, highlight=False)
    return report


def exit_code(report: BackfillReport) -> int:
    """0 when done (or stopped at --max-messages), 1 when something failed, 130 on Ctrl-C."""
    if not report.ok:
        return 1
    return 130 if report.stopped == "interrupted" else 0


__all__ = [
    "Backfill",
    "BackfillReport",
    "BackfillUsageError",
    "ChatFilter",
    "Options",
    "SessionStats",
    "Window",
    "backfill_cli",
    "exit_code",
    "gaps",
    "make_options",
    "parse_when",
    "run_backfill",
    "summary_table",
]
