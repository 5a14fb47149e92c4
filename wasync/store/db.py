"""`Store`: one owner for the database engines, SQLite (embedded) or Postgres.

SQLite runs in WAL mode with a busy timeout, over `wasync.store.sqlite` (aiosqlite, one
thread trip per statement); write transactions start with `BEGIN IMMEDIATE`
so two writers (the daemon and `wasync backfill`) queue on the lock instead of failing with
"database is locked" on upgrade. Postgres uses asyncpg.

`Store.run_write(work)` runs a whole transaction of synchronous code (the ingest pipeline's)
through SQLAlchemy's `run_sync`; on Postgres it can take an advisory lock with the BEGIN and
send a NOTIFY with the COMMIT, a round trip each instead of two more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Self, TypeVar

import asyncpg
import sqlalchemy.exc
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wasync.config import DatabaseConfig
from wasync.errors import StoreUnavailable
from wasync.store import sqlite as sqlite_driver
from wasync.store.listener import CHANNEL

log = logging.getLogger(__name__)
T = TypeVar("T")

# Postgres advisory lock keys (arbitrary constants, "wasync" in ASCII).
INGEST_LOCK = 0x776173796E63
MIGRATE_LOCK = 0x776173796E64


# SQLSTATE classes meaning "the server is not there for us": connection exception (08),
# insufficient resources (53), operator intervention / shutdown (57P), and 55000 as raised
# for a database that is not accepting connections.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "55000")


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database cannot be reached", not "this data is bad"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unavailable_one(current):
            return True
        current = current.__cause__ or getattr(current, "orig", None)
    return False


# A pooled Postgres connection unused for longer than this is pinged before it is handed
# out; a busier one only has its socket checked (see `_check_on_checkout`).
PING_IDLE_S = 10.0


def _check_on_checkout(engine: AsyncEngine) -> None:
    """Hand out no dead Postgres connection, at less than a round trip per checkout.

    SQLAlchemy's `pool_pre_ping` costs asyncpg three round trips at every checkout (BEGIN,
    an empty query, ROLLBACK: pgbouncer's transaction mode wants the transaction), several
    per webhook batch. A backend that was terminated or restarted has closed its socket,
    which asyncpg has seen by the time the connection is taken again (`is_closed()`: no round
    trip); a connection idle for `PING_IDLE_S` is pinged as well, for a peer that vanished
    without closing. A closed one is replaced (`DisconnectionError`); a failed ping
    replaces every pooled connection (`InvalidatePoolError`), as `pool_pre_ping` does."""
    sync = engine.sync_engine

    @event.listens_for(sync, "connect")
    @event.listens_for(sync, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:  # a new connection is fresh too
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(sync, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        driver = dbapi_conn.driver_connection
        if driver.is_closed():
            raise sqlalchemy.exc.DisconnectionError("connection closed by the server")
        if driver.is_in_transaction():  # never hand out a transaction (and its locks)
            raise sqlalchemy.exc.DisconnectionError("connection returned inside a transaction")
        idle = time.monotonic() - record.info.get("checked_in", float("-inf"))
        if idle < PING_IDLE_S:
            return
        try:
            sync.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # as pool_pre_ping: the server is likely gone for them all
            raise sqlalchemy.exc.InvalidatePoolError("connection lost") from exc


def is_conflict(exc: BaseException) -> bool:
    """True for "try the same transaction again": a deadlock or a serialization failure
    (SQLSTATE class 40), never a verdict on the data."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return False
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state.startswith("40"):
            return True
        current = current.__cause__ or getattr(current, "orig", None)
    return False


def _unavailable_one(exc: BaseException) -> bool:
    if isinstance(exc, StoreUnavailable | OSError | asyncio.TimeoutError):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlalchemy.exc.InterfaceError | sqlalchemy.exc.TimeoutError):
        return True
    if isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc):  # `run_write`'s own
        return True
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES):
        return True
    if isinstance(exc, sqlalchemy.exc.OperationalError):
        orig = str(exc.orig).lower()
        return "locked" in orig or "unable to open" in orig or "disk i/o" in orig
    text = str(exc).lower()
    return "connection was closed" in text or "not currently accepting connections" in text


class Store:
    """The database: a write engine and a read engine (the same one on Postgres)."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 5) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        self._busy_timeout_ms = busy_timeout_ms
        self._pool_size = pool_size
        self.writer: AsyncEngine
        self.reader: AsyncEngine
        self._by_hand: AsyncEngine

    @classmethod
    def from_config(cls, db: DatabaseConfig) -> Store:
        """The store a `[database]` section describes."""
        return cls(db.url, busy_timeout_ms=db.busy_timeout_ms, pool_size=db.pool_size)

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite backend."""
        return self.dialect == "sqlite"

    async def __aenter__(self) -> Self:
        if self.is_sqlite:
            self._prepare_sqlite_path()
            self.writer = self._sqlite_engine(immediate=True)
            self.reader = self._sqlite_engine(immediate=False)
        else:
            # asyncpg prepares every statement; after five runs Postgres may switch to a generic
            # plan, and for `session_id = $1 AND provider_message_id IN (...)` that plan used
            # only session_id and filtered every message of the session (5 ms per batch at
            # 2,000 rows, growing with the table; measured). Custom plans use the whole key.
            self.writer = create_async_engine(
                self.url,
                hide_parameters=True,  # see `_sqlite_engine`
                pool_size=self._pool_size,
                max_overflow=10,
                connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
            )
            _check_on_checkout(self.writer)
            self.reader = self.writer
            # The same pool, for `run_write`'s transactions sent by hand (see `_run_pg`).
            self._by_hand = self.writer.execution_options(isolation_level="AUTOCOMMIT")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()

    def _prepare_sqlite_path(self) -> None:
        database = self.url.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    def _sqlite_engine(self, *, immediate: bool) -> AsyncEngine:
        (database,), kwargs = self.url.get_dialect()().create_connect_args(self.url)
        kwargs["timeout"] = self._busy_timeout_ms / 1000
        engine = create_async_engine(
            self.url,
            async_creator=partial(sqlite_driver.connect, database, **kwargs),
            # A failed statement's error (logged with its traceback) names no parameter:
            # they are customers' numbers, names and message texts.
            hide_parameters=True,
        )
        busy = self._busy_timeout_ms

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={busy}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            # On the first statement's trip to the connection's thread (`sqlite.Connection`)
            driver: sqlite_driver.Connection = conn.connection.driver_connection
            driver.begin("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; commits on success, rolls back on error."""
        with _outages_unavailable():
            async with self.writer.begin() as conn:
                yield conn

    async def run_write(
        self,
        work: Callable[[Connection], T],
        *,
        lock: int | None = None,
        notify: Callable[[T], str | None] | None = None,
    ) -> T:
        """Run `work(conn)` in one write transaction on a synchronous connection; commit when
        it returns, roll back when it raises, and return what it returns.

        `work` runs on the event loop's thread inside SQLAlchemy's greenlet bridge (one for the
        whole transaction rather than one per statement); the driver calls under it still
        await their I/O, so the loop keeps serving while the database works.

        Postgres only (SQLite's one writer needs neither): `lock`, an advisory lock key, is
        held from the BEGIN to the end of the transaction; `notify(result)`, when it gives a
        payload, is sent on the event log's channel (`listener.CHANNEL`) with the COMMIT, so
        listeners hear of it once it is committed. Each rides in the same round trip as the
        BEGIN or the COMMIT (one simple-protocol query) rather than costing one of its own.
        """
        if self.is_sqlite or (lock is None and notify is None):
            async with self.write() as conn:
                return await conn.run_sync(work)
        with _outages_unavailable():
            return await self._run_pg(work, lock, notify)

    async def _run_pg(
        self,
        work: Callable[[Connection], T],
        lock: int | None,
        notify: Callable[[T], str | None] | None,
    ) -> T:
        """`run_write` on Postgres with the transaction's edges sent by hand: SQLAlchemy's
        connection is in autocommit mode (it sends no BEGIN of its own), asyncpg sends ours."""
        async with self._by_hand.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            begin = "BEGIN" if lock is None else f"BEGIN; SELECT pg_advisory_xact_lock({int(lock)})"
            try:
                await raw.execute(begin)
                result = await conn.run_sync(work)
                payload = notify(result) if notify is not None else None
                commit = "COMMIT" if payload is None else f"{_notify_sql(payload)}; COMMIT"
                await raw.execute(commit)
            except BaseException as exc:
                await _abandon(conn, raw, exc)
                raise
            return result

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction."""
        with _outages_unavailable():
            async with self.reader.connect() as conn:
                yield conn

    async def upgrade(self) -> None:
        """Apply the Alembic migrations shipped in the package (idempotent, node-safe)."""
        from wasync.store.migrate import upgrade_connection

        try:
            async with self.writer.begin() as conn:
                if not self.is_sqlite:
                    lock = text("SELECT pg_advisory_xact_lock(:k)")
                    await conn.execute(lock, {"k": MIGRATE_LOCK})
                await conn.run_sync(upgrade_connection)
        except Exception as exc:
            if is_unavailable(exc):
                where = self.url.render_as_string(hide_password=True)
                raise StoreUnavailable(f"cannot reach {where} ({type(exc).__name__})") from exc
            raise


@contextmanager
def _outages_unavailable() -> Iterator[None]:
    """Raise an error meaning "the database cannot be reached" as `StoreUnavailable`."""
    try:
        yield
    except Exception as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        raise


def _notify_sql(payload: str) -> str:
    """`SELECT pg_notify(CHANNEL, payload)` with the payload as an escape-string literal (a
    simple query has no parameters): `E'...'` with its backslashes and quotes doubled reads
    the same whatever `standard_conforming_strings` says."""
    if "\x00" in payload:
        raise ValueError("a NOTIFY payload cannot hold NUL")
    quoted = payload.replace("\\", "\\\\").replace("'", "''")
    return f"SELECT pg_notify('{CHANNEL}', E'{quoted}')"


async def _abandon(conn: AsyncConnection, raw: Any, exc: BaseException) -> None:
    """End a transaction sent by hand that failed: ROLLBACK, or, when that cannot be trusted
    (a cancelled query, a lost connection), drop the connection: one still inside the
    transaction would go back to the pool holding its locks."""
    if isinstance(exc, Exception) and not raw.is_closed():
        try:
            await raw.execute("ROLLBACK")
            return
        except Exception:  # the connection is no good: drop it below
            log.debug("ROLLBACK failed; dropping the connection", exc_info=True)
        except BaseException:  # cancelled during the ROLLBACK: drop it all the same
            await conn.invalidate()
            raise
    await conn.invalidate()
