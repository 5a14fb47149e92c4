"""One token bucket, for the webhook limiter (429) and the per-session send limiter.

GCRA (the generic cell rate algorithm), which is a token bucket kept as one number: the
theoretical arrival time of the next unit. `rate_per_s` units a second, at most `burst` at
once; the clock is a parameter, so tests move time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up (it starts full)."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = 1.0 / rate_per_s
        self.tolerance = (max(1, burst) - 1) * self.interval
        self.clock = clock
        self.tat = clock()

    def delay(self) -> float:
        """Seconds until a token is there (0 when one is there now)."""
        return max(0.0, self.tat - self.tolerance - self.clock())

    def take(self) -> None:
        """Spend one token now (after waiting `delay()`)."""
        self.tat = max(self.tat, self.clock()) + self.interval

    def try_take(self) -> float:
        """Spend a token if one is there and return 0.0; else the seconds until one is."""
        wait = self.delay()
        if wait == 0:
            self.take()
        return wait
