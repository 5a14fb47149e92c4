"""What `wasync backfill` runs on a terminal or in a log: signals, the run, the summary, the
exit code."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress

from rich.console import Console

from wasync.backfill.options import Options
from wasync.backfill.present import RichObserver, progress_bar, summary_table
from wasync.backfill.report import BackfillReport
from wasync.backfill.runner import run_backfill
from wasync.config import Settings

log = logging.getLogger(__name__)


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
    if report.media is not None:
        counts = " ".join(f"{k}={v}" for k, v in sorted(report.media.items())) or "none to fetch"
        out.print(f"media: {counts}", highlight=False)
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
