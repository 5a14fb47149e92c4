"""The SQLite driver connection: aiosqlite, one trip to its thread per statement.

aiosqlite runs every `sqlite3` call on the connection's own thread, and SQLAlchemy's adaptor
makes four calls per statement (open a cursor, execute, fetch, close): four round trips
between the event loop and that thread, each about 100 µs on a small VM, while the statement
itself often takes 10 µs. `Connection.cursor()` here returns a cursor whose `execute` opens a
`sqlite3` cursor, runs the statement, fetches its rows and closes it in one trip. A batch of
ingest (six statements) went from 19 trips to 6. The price: a streamed query
(`AsyncConnection.stream`) is buffered whole, as a non-streamed one always is; wasync streams
none.

It plugs into SQLAlchemy through `create_async_engine(async_creator=...)`, the public seam
for bringing one's own driver connection; the dialect stays `sqlite+aiosqlite`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

_Description = tuple[tuple[str, None, None, None, None, None, None], ...] | None


@dataclass(slots=True)
class _Outcome:
    """What a statement left on its `sqlite3` cursor, read on the connection's thread."""

    description: _Description = None
    rowcount: int = -1
    lastrowid: int | None = None
    rows: list[Any] = field(default_factory=list)


class _BeginFailed(Exception):
    """The BEGIN owed before a statement failed: no transaction is open (see `run`)."""

    def __init__(self, error: sqlite3.Error) -> None:
        super().__init__(error)
        self.error = error


def _run(
    conn: sqlite3.Connection, sql: str, params: Any, *, many: bool, begin: str | None
) -> _Outcome:
    """Run one statement to completion on a fresh `sqlite3` cursor (on the thread), after
    the `BEGIN` the transaction is still owed, if any."""
    cur = conn.cursor()
    try:
        if begin is not None:
            try:
                cur.execute(begin)
            except sqlite3.Error as exc:
                raise _BeginFailed(exc) from None
        if many:
            cur.executemany(sql, params)
        else:
            cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        return _Outcome(cur.description, cur.rowcount, cur.lastrowid, rows)
    finally:
        cur.close()


class Cursor:
    """A DB-API-shaped async cursor whose rows arrive with `execute`."""

    arraysize = 1

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._outcome = _Outcome()

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def description(self) -> _Description:
        """Column descriptions of the last statement, or None if it returned no rows."""
        return self._outcome.description

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed (-1 for a query)."""
        return self._outcome.rowcount

    @property
    def lastrowid(self) -> int | None:
        """The rowid of the last row inserted."""
        return self._outcome.lastrowid

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> Cursor:
        """Run `sql` and buffer its rows, in one trip to the connection's thread."""
        self._outcome = await self._conn.run(sql, parameters or (), many=False)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> Cursor:
        """Run `sql` once per parameter set, in one trip."""
        self._outcome = await self._conn.run(sql, parameters, many=True)
        return self

    async def fetchall(self) -> list[Any]:
        """The remaining rows."""
        rows, self._outcome.rows = self._outcome.rows, []
        return rows

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        """Up to `size` (default `arraysize`) of the remaining rows."""
        n = self.arraysize if size is None else size
        rows, self._outcome.rows = self._outcome.rows[:n], self._outcome.rows[n:]
        return rows

    async def fetchone(self) -> Any | None:
        """The next row, or None."""
        rows = await self.fetchmany(1)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Drop buffered rows (the `sqlite3` cursor was closed on the thread already)."""
        self._outcome.rows = []


class Connection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors cost one thread trip per statement, and whose
    transactions begin on the trip of their first statement."""

    _begin: str | None = None  # the BEGIN the next statement runs first

    def cursor(self) -> Cursor:  # type: ignore[override]
        """A cursor; opening it needs no trip to the thread."""
        return Cursor(self)

    def begin(self, sql: str) -> None:
        """Begin a transaction with `sql` (`BEGIN`, `BEGIN IMMEDIATE`) on the trip of its
        first statement instead of one of its own: a read is two trips, not three (an
        idle daemon's reads and every ingest batch pay one trip less). A transaction that
        ends before any statement never reached the thread: its end costs no trip either.
        `BEGIN IMMEDIATE` takes the write lock just before the first statement, as it would
        have a trip earlier; if it fails, that statement fails with its error."""
        self._begin = sql

    async def run(self, sql: str, params: Any, *, many: bool) -> _Outcome:
        """Run one statement on the connection's thread and return its outcome."""
        begin, self._begin = self._begin, None
        try:
            # `_execute` is how aiosqlite's own cursors reach the thread.
            outcome: _Outcome = await self._execute(  # type: ignore[no-untyped-call]
                _run, self._conn, sql, params, many=many, begin=begin
            )
        except _BeginFailed as failed:
            # Still owed: a caller that catches this error and goes on must not run its next
            # statements outside a transaction (each would commit on its own).
            self._begin = begin
            raise failed.error from None
        return outcome

    async def commit(self) -> None:
        """Commit (nothing to do for a transaction no statement began)."""
        if not self._unbegun():
            await super().commit()

    async def rollback(self) -> None:
        """Roll back (nothing to do for a transaction no statement began). `sqlite3` itself
        does nothing when no transaction is open, as after a `BEGIN` that failed."""
        if not self._unbegun():
            await super().rollback()

    def _unbegun(self) -> bool:
        """True (and the BEGIN dropped) when the transaction ending ran no statement."""
        unbegun, self._begin = self._begin is not None, None
        return unbegun


async def connect(database: str, **kwargs: Any) -> Connection:
    """Open `database` (a path, or a `file:` URI with `uri=True`) as `sqlite3.connect` would."""

    def connector() -> sqlite3.Connection:
        conn: sqlite3.Connection = sqlite3.connect(database, **kwargs)
        return conn

    conn = Connection(connector, iter_chunk_size=64)
    # As SQLAlchemy does for aiosqlite: a connection left open must not keep the process alive.
    conn._thread.daemon = True
    await conn
    return conn
