"""Quiet, useful logs through a database outage: one WARNING when it starts, one INFO when
it ends, instead of a line (or a traceback) at every retry of every loop.

Loops that retry on their own (the sender's lanes, its gauge, the hub's fan-out) report each
failure and success to an `Outage`; it speaks only when the state changes. Errors that are
not an outage are bugs and keep their traceback, logged once while they repeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# A failure this soon after the store came back is the same outage going on (connections
# being cut one by one, a server restarting): no second WARNING, and no second INFO for it.
SETTLE_S = 2.0


class Outage:
    """The up/down state of the store as seen by one component (`what` names it)."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        down: str = "store unavailable (%s); retrying quietly",
        back: str = "store is back",
    ) -> None:
        """`down` (with the error for `%s`) and `back` are the two lines, after `what: `;
        the store's outage by default, any other condition that comes and goes otherwise."""
        self.logger, self.what, self.clock = logger, what, clock
        self.down_line, self.back_line = down, back
        self.down = False
        self._failing: str | None = None
        self._back_at = float("-inf")  # when `ok()` last said the store is back
        self._quiet = False  # down again within SETTLE_S of coming back: said already

    def failed(self, exc: BaseException) -> None:
        """The store did not answer: a WARNING the first time, then nothing until `ok()` (nor
        when it fails again within `SETTLE_S` of coming back: the outage was not over)."""
        if self.down:
            return
        self.down = True
        if self.clock() - self._back_at < SETTLE_S:
            self._quiet = True
            return
        self.logger.warning("%s: %s", self.what, self.down_line % (exc,))

    def broken(self, exc: BaseException) -> None:
        """Something else went wrong: its traceback once, while the same error repeats."""
        signature = _signature(exc)
        if signature != self._failing:
            self.logger.error("%s: %s", self.what, signature, exc_info=exc)
            self._failing = signature

    def ok(self) -> None:
        """It worked: an INFO if the store was down, and the next error is news again."""
        if self.down:
            self.down = False
            if self._quiet:
                self._quiet = False
            else:
                self.logger.info("%s: %s", self.what, self.back_line)
                self._back_at = self.clock()
        self._failing = None


def _signature(exc: BaseException) -> str:
    """What makes an error "the same error again". A database error's text ends with the
    parameters its statement ran with (a time that moves at every retry): it is the driver's
    error and the statement that say whether it repeats."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return f"{type(exc).__name__}: {exc}"
    statement = getattr(exc, "statement", None)
    return f"{type(exc).__name__}: {orig}" + (f" [SQL: {statement}]" if statement else "")
