"""Backfill on screen: log lines or a progress bar while it runs, the summary table after."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from wasync.backfill.report import BackfillReport, SessionStats

log = logging.getLogger(__name__)


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
