"""Quiet, useful logs through a database outage: one WARNING when it starts, one INFO when
it ends, instead of a line (or a traceback) at every retry of every loop.

Loops that retry on their own (the sender's lanes, its gauge, the hub's fan-out) report each
failure and success to an `Outage`; it speaks only when the state changes. Errors that are
not an outage are bugs and keep their traceback, logged once while they repeat.
"""

from __future__ import annotations

import logging


class Outage:
    """The up/down state of the store as seen by one component (`what` names it)."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger, self.what = logger, what
        self.down = False
        self._failing: str | None = None

    def failed(self, exc: BaseException) -> None:
        """The store did not answer: a WARNING the first time, then nothing until `ok()`."""
        if not self.down:
            self.logger.warning("%s: store unavailable (%s); retrying quietly", self.what, exc)
            self.down = True

    def broken(self, exc: BaseException) -> None:
        """Something else went wrong: its traceback once, while the same error repeats."""
        signature = f"{type(exc).__name__}: {exc}"
        if signature != self._failing:
            self.logger.error("%s: %s", self.what, signature, exc_info=exc)
            self._failing = signature

    def ok(self) -> None:
        """It worked: an INFO if the store was down, and the next error is news again."""
        if self.down:
            self.logger.info("%s: store is back", self.what)
            self.down = False
        self._failing = None
