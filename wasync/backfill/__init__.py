"""`wasync backfill`: a bounded, resumable walk of history through the one pipeline.

Chats come from each session's chat list (every page, then the first page again for chats that
moved to the top meanwhile); `--chat` keeps one. A chat's `[since, until]`, minus the windows
already checkpointed, is read in **timestamp windows**, not by offsets alone: some WAHA engines
ignore offsets and Evolution's pages shift while you read (waha.md 3, evolution.md 5.2). A
window starts at a day, doubles while it fits in one page, and is halved while it needs more
than `max_pages` pages or comes back short of Evolution's `total`. Inside a window,
`paging.window_pages` pages by offset, or by narrowing `until` when offsets are ignored; rows
read twice are dropped here, and the store's unique key is the guarantee.

Events go through `Pipeline.ingest(source="backfill", realtime="summary")`: leads and chats as
usual, no admin notification unless `--notify`, and one `chat:updated` per chat and batch
instead of one frame per message. A session's walkers (`chats_in_flight` chats at once) keep
reading while its previous batch of up to `flush_events` events is stored; each window's
checkpoint row (`backfill_checkpoints`) is
written in its own transaction once the batch holding its last page has committed: a crash in
between only means that window is read again and deduplicated. Ctrl-C (or SIGTERM) stops after
the pages in flight, stores what was read, and prints the summary; the same command continues.

The package, by seam: `options` (the command line), `checkpoints` (done windows and gaps),
`walk` (ChatWalk: windows, halving, re-reads), `batch` (Batch and the sinks), `report` and
`present` (stats, observers, progress bar, summary table), `runner` (`Backfill`,
`run_backfill`) and `cli` (`backfill_cli`, exit codes).
"""

from wasync.backfill.checkpoints import Window, gaps
from wasync.backfill.cli import backfill_cli, exit_code
from wasync.backfill.options import (
    BackfillUsageError,
    ChatFilter,
    Options,
    make_options,
    parse_chat,
    parse_when,
)
from wasync.backfill.present import LogObserver, RichObserver, progress_bar, summary_table
from wasync.backfill.report import BackfillReport, Observer, SessionStats
from wasync.backfill.runner import Backfill, run_backfill

__all__ = [
    "Backfill",
    "BackfillReport",
    "BackfillUsageError",
    "ChatFilter",
    "LogObserver",
    "Observer",
    "Options",
    "RichObserver",
    "SessionStats",
    "Window",
    "backfill_cli",
    "exit_code",
    "gaps",
    "make_options",
    "parse_chat",
    "parse_when",
    "progress_bar",
    "run_backfill",
    "summary_table",
]
