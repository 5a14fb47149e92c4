"""One token bucket, for the webhook limiter (429), and the per-session send limit kept in
the database (`SendSlots`) so that it holds across processes and nodes.

GCRA (the generic cell rate algorithm), which is a token bucket kept as one number: the
theoretical arrival time of the next unit. `rate_per_s` units a second, at most `burst` at
once; the clock is a parameter, so tests move time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync.store import Store


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


# The database's clock in epoch seconds: one clock for every process and node.
_NOW = {
    "postgresql": "CAST(extract(epoch FROM clock_timestamp()) AS double precision)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
_GREATEST = {"postgresql": "greatest", "sqlite": "max"}


class SendSlots:
    """The per-session send limit kept in the database (`send_slots`), so the daemon, `wasync
    send`, a campaign and every node together keep `rate_per_minute` and `burst`.

    The same GCRA as `TokenBucket`, its one number (`tat`) in a row per session: `reserve`
    moves it on by one interval in one atomic upsert (`... RETURNING` under the row lock, or
    SQLite's write lock) and answers how long to wait before sending in the slot it got.
    A slot reserved and not used is lost, never given to two senders.
    """

    def __init__(self, store: Store, rate_per_s: float, burst: int) -> None:
        self.store = store
        self.interval = 1.0 / rate_per_s
        self.tolerance = (max(1, burst) - 1) * self.interval
        now, greatest = _NOW[store.dialect], _GREATEST[store.dialect]
        self._sql = text(
            f"INSERT INTO send_slots (session_id, tat) VALUES (:sid, {now} + :t) "
            f"ON CONFLICT (session_id) DO UPDATE SET tat = {greatest}(send_slots.tat, {now}) + :t "
            f"RETURNING tat - {now}"
        )

    async def reserve(self, session_id: int) -> float:
        """Take the session's next slot; the seconds to wait until it (0: send now)."""
        async with self.store.write() as conn:
            return await self.reserve_in(conn, session_id)

    async def reserve_in(self, conn: AsyncConnection, session_id: int) -> float:
        """`reserve` inside a write transaction of the caller's (the sender's claim: one
        transaction per send, not two)."""
        got = await conn.execute(self._sql, {"sid": session_id, "t": self.interval})
        ahead = float(got.scalar_one())
        return max(0.0, ahead - self.interval - self.tolerance)
