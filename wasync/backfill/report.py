"""What a backfill did: counts per batch, a row per session, the run's report, and the
Observer that shows them while the walk runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class Counts:
    """What a sink did with a batch."""

    new: int = 0
    duplicate: int = 0
    rejected: int = 0


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
    media: dict[str, int] | None = None  # `--media`: outcomes (stored, expired, failed, pending)

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
