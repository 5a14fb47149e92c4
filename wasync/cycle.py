"""What one poll cycle did (`wasync.poller`): counted as it runs, logged as one line, and
handed to what watches the session's health (`wasync.healthwatch`)."""

from __future__ import annotations

from dataclasses import dataclass

from wasync.ingest import IngestResult


@dataclass(slots=True)
class CycleStats:
    """What one poll cycle did; logged as one line. `requests` are the cycle's own;
    `check_requests` those of the ack check that ran in it."""

    requests: int = 0
    chats: int = 0
    fetched: int = 0
    new: int = 0
    recovered: int = 0  # of `new`, those a webhook should have delivered (see the poller)
    duplicate: int = 0
    quarantined: int = 0
    status: str | None = None
    error: str | None = None
    seconds: float = 0.0
    check_requests: int = 0
    rechecked: int = 0

    def add(self, result: IngestResult) -> None:
        """Count one ingest."""
        self.new += result.new
        self.duplicate += result.duplicate
        self.quarantined += result.quarantined
