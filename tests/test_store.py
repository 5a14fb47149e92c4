"""`Store` over its drivers: results, errors and transactions, on SQLite and Postgres.

On SQLite these go through `wasync.store.sqlite`, whose cursors run each statement and fetch
its rows in one trip to aiosqlite's thread; here is what SQLAlchemy reads back from them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy.exc
from sqlalchemy import func, insert, select, text, update

from tests.conftest import PG_URL
from wasync.errors import StoreUnavailable
from wasync.store import Store
from wasync.store import models as m
from wasync.store.listener import CHANNEL

T_TENANTS = m.Tenant.__table__  # type: ignore[attr-defined]
T_LEADS = m.Lead.__table__  # type: ignore[attr-defined]
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def lead(phone: str) -> dict[str, object]:
    """A `leads` row for tenant acme."""
    return {
        "tenant_id": "acme",
        "first_name": "Lead",
        "last_name": phone[-4:],
        "email": f"{phone}@whatsapp.com",
        "phone": phone,
        "source": "WHATSAPP_CAMPAIGN",
        "status": "NEW",
        "score": 50,
        "created_at": NOW,
    }


async def add_tenant(store: Store) -> None:
    """Tenant acme, which leads belong to."""
    async with store.write() as conn:
        await conn.execute(insert(T_TENANTS), tenant("acme"))


async def test_statement_results(store: Store) -> None:
    """Rows, row counts and RETURNING come back as SQLAlchemy reports them."""
    await add_tenant(store)
    phones = [f"553198888{i:04d}" for i in range(150)]
    async with store.write() as conn:
        await conn.execute(insert(T_LEADS), [lead(p) for p in phones[:100]])
        returned = await conn.execute(
            insert(T_LEADS).returning(T_LEADS.c.phone), [lead(p) for p in phones[100:]]
        )
        assert sorted(returned.scalars()) == phones[100:]
        changed = await conn.execute(
            update(T_LEADS).where(T_LEADS.c.phone.in_(phones[:7])).values(score=90)
        )
        assert changed.rowcount == 7
    async with store.read() as conn:
        rows = (await conn.execute(select(T_LEADS.c.phone).order_by(T_LEADS.c.phone))).all()
        assert [r.phone for r in rows] == phones
        high = await conn.scalar(select(func.count()).where(T_LEADS.c.score == 90))
        assert high == 7


async def test_streamed_results(store: Store) -> None:
    """A streamed query yields every row, in chunks."""
    await add_tenant(store)
    phones = [f"553197777{i:04d}" for i in range(230)]
    async with store.write() as conn:
        await conn.execute(insert(T_LEADS), [lead(p) for p in phones])
    async with store.read() as conn:
        result = await conn.stream(select(T_LEADS.c.phone).order_by(T_LEADS.c.phone))
        chunks = [chunk async for chunk in result.partitions(100)]
    assert [len(c) for c in chunks] == [100, 100, 30]
    assert [r.phone for c in chunks for r in c] == phones


async def test_failed_statement_rolls_back(store: Store) -> None:
    """A constraint violation surfaces as IntegrityError and nothing of its transaction stays;
    the connection serves the next transaction."""
    await add_tenant(store)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        async with store.write() as conn:
            await conn.execute(insert(T_LEADS), lead("5531911110000"))
            await conn.execute(insert(T_LEADS), lead("5531911110000"))
    async with store.write() as conn:
        await conn.execute(insert(T_LEADS), lead("5531911112222"))
    async with store.read() as conn:
        phones = (await conn.execute(select(T_LEADS.c.phone))).scalars().all()
    assert phones == ["5531911112222"]


async def test_run_write_returns_and_rolls_back(store: Store) -> None:
    """`run_write` commits what its work wrote and returns its value; an exception rolls
    the whole transaction back."""
    await add_tenant(store)

    def add(phone: str, fail: bool, conn: sqlalchemy.Connection) -> int:
        conn.execute(insert(T_LEADS), lead(phone))
        if fail:
            raise RuntimeError("boom")
        return int(conn.scalar(select(func.count()).select_from(T_LEADS)) or 0)

    assert await store.run_write(lambda c: add("5531933330000", False, c)) == 1
    with pytest.raises(RuntimeError):
        await store.run_write(lambda c: add("5531933331111", True, c))
    async with store.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(T_LEADS)) == 1


async def traced(store: Store) -> list[str]:
    """Every statement SQLite runs on the writer's (one, reused) connection from now on."""
    seen: list[str] = []
    async with store.write() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver._execute(driver._conn.set_trace_callback, seen.append)
    seen.clear()  # the COMMIT of the block above, if any
    return seen


async def test_sqlite_transactions_begin_with_their_first_statement(tmp_path: Path) -> None:
    """SQLite's driver (`wasync.store.sqlite`) runs a transaction's BEGIN on the trip of its
    first statement: the same statements in the same order as a BEGIN of its own, and a
    transaction that runs none costs nothing at all. (SQLite only: Postgres' driver is
    asyncpg's.)"""
    async with Store(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}") as store:
        await store.upgrade()
        seen = await traced(store)
        async with store.write():
            pass
        assert seen == []
        await add_tenant(store)
        assert [s.split(" ")[0] for s in seen] == ["BEGIN", "INSERT", "COMMIT"]
        assert seen[0] == "BEGIN IMMEDIATE"
        seen.clear()
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            await add_tenant(store)
        assert [s.split(" ")[0] for s in seen] == ["BEGIN", "INSERT", "ROLLBACK"]


async def test_a_sqlite_begin_that_cannot_take_the_lock_fails_its_statement(
    tmp_path: Path,
) -> None:
    """Another connection holds the write lock: the BEGIN IMMEDIATE now run with the first
    statement fails that statement (SQLite's busy timeout spent), as `database is locked`, a
    store outage; nothing is left half-open and the next transaction works. A block that
    catches the error and goes on still runs its next statements in one transaction, which
    its failure rolls back whole (they must not commit one by one)."""
    path = tmp_path / "w.db"
    async with Store(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=50) as store:
        await store.upgrade()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="unavailable") as failed:
            await add_tenant(store)
        assert str(getattr(failed.value.__cause__, "statement", "")).startswith("INSERT")
        with pytest.raises(RuntimeError, match="the block fails"):
            async with store.write() as conn:
                with pytest.raises(sqlalchemy.exc.OperationalError, match="locked"):
                    await conn.execute(insert(T_TENANTS), tenant("e1"))
                blocker.execute("ROLLBACK")
                await conn.execute(insert(T_TENANTS), tenant("e2"))
                raise RuntimeError("the block fails: nothing of it may stay")
        await add_tenant(store)
        async with store.read() as conn:
            ids = (await conn.execute(select(T_TENANTS.c.id))).scalars().all()
        assert ids == ["acme"]
        blocker.close()


def tenant(tenant_id: str) -> dict[str, object]:
    """A `tenants` row."""
    return {"id": tenant_id, "name": tenant_id.upper(), "created_at": NOW}


async def test_a_pooled_connection_whose_backend_was_terminated_is_not_handed_out(pg_url: str):
    """Postgres: a backend terminated while its connection sat in the pool (a restart, an
    admin) costs the next transaction nothing: the pool replaces the closed connection."""
    async with Store(pg_url) as store:
        ended = asyncio.Event()
        async with store.read() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
            raw = (await conn.get_raw_connection()).driver_connection
            raw.add_termination_listener(lambda _conn: ended.set())
        admin = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg", "postgresql"))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            for _ in range(1500):  # until it has exited (30 s at most)
                gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1"
                if await admin.fetchval(gone, pid):
                    break
                await asyncio.sleep(0.02)
        finally:
            await admin.close()
        await asyncio.wait_for(ended.wait(), 30)  # the client's side read the socket's end
        async with store.read() as conn:
            again = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
        assert again != pid


async def test_a_failed_statement_names_no_parameter(db_url: str):
    """A statement's error (what a traceback logs) carries its SQL but none of its values:
    they are customers' numbers and texts."""
    async with Store(db_url) as store:
        await store.upgrade()
        with pytest.raises(sqlalchemy.exc.DBAPIError) as info:
            async with store.read() as conn:
                query = text("SELECT body FROM no_such_table WHERE phone = :phone")
                await conn.execute(query, {"phone": "5531988887777"})
    assert "no_such_table" in str(info.value) and "5531988887777" not in str(info.value)


LOCK_KEY = 0x7465737431  # an advisory lock key of these tests' own


IN_TRANSACTION = """SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND state LIKE 'idle in transaction%'"""


async def no_backend_left_in_a_transaction(admin: asyncpg.Connection) -> bool:
    """True once no backend of this database sits idle inside a transaction (30 s at most:
    a dropped connection's backend takes a moment to notice and exit)."""
    for _ in range(1500):
        if await admin.fetchval(IN_TRANSACTION) == 0:
            return True
        await asyncio.sleep(0.02)
    return False


def held_advisory_locks(conn: sqlalchemy.Connection) -> int:
    """How many advisory locks this connection's backend holds (Postgres)."""
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    return int(conn.scalar(text(held)) or 0)


async def test_run_write_takes_its_lock_with_the_begin_and_notifies_with_the_commit(
    db_url: str,
) -> None:
    """`run_write(work, lock=, notify=)`: the work runs holding the lock (Postgres), its rows
    commit, and listeners hear `notify`'s payload (quotes and all) once it has committed. On
    SQLite (one writer, no listeners) the same call just commits."""
    async with Store(db_url) as store:
        await store.upgrade()
        await add_tenant(store)
        heard: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        listener = None
        if not store.is_sqlite:
            listener = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))

            async def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
                count = await listener.fetchval("SELECT count(*) FROM leads")  # type: ignore[union-attr]
                heard.put_nowait((payload, count))

            tasks: set[asyncio.Task[None]] = set()

            def spawn(*args: Any) -> None:
                task = asyncio.ensure_future(on_notify(*args))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            await listener.add_listener(CHANNEL, spawn)

        def work(conn: sqlalchemy.Connection) -> int:
            conn.execute(insert(T_LEADS), lead("5531944440000"))
            return 0 if store.is_sqlite else held_advisory_locks(conn)

        try:
            payload = "it's \\' 1"  # a quote, a backslash: the literal holds them as they are
            held = await store.run_write(work, lock=LOCK_KEY, notify=lambda _n: payload)
            if listener is not None:
                assert held == 1
                assert await asyncio.wait_for(heard.get(), 30) == (payload, 1)
                # no payload: nothing is sent
                await store.run_write(lambda c: None, lock=LOCK_KEY, notify=lambda _r: None)
                await store.run_write(lambda c: None, notify=lambda _r: "2")
                assert await asyncio.wait_for(heard.get(), 30) == ("2", 1)
        finally:
            if listener is not None:
                await listener.close()
        async with store.read() as conn:
            assert await conn.scalar(select(func.count()).select_from(T_LEADS)) == 1


async def test_a_failed_run_write_leaves_no_lock_nor_transaction_behind(pg_url: str) -> None:
    """Postgres: work that raises under `run_write(lock=...)` is rolled back, nobody is
    notified, its lock is free at once and its pooled connection serves the next one."""
    async with Store(pg_url) as store:
        await store.upgrade()
        await add_tenant(store)

        def fail(conn: sqlalchemy.Connection) -> None:
            conn.execute(insert(T_LEADS), lead("5531955550000"))
            raise RuntimeError("boom")

        def bad_sql(conn: sqlalchemy.Connection) -> None:
            conn.execute(insert(T_LEADS), lead("5531955551111"))
            conn.execute(insert(T_LEADS), lead("5531955551111"))  # a unique violation

        admin = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
        heard: asyncio.Queue[str] = asyncio.Queue()
        await admin.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[-1]))
        try:
            with pytest.raises(RuntimeError):
                await store.run_write(fail, lock=LOCK_KEY, notify=lambda _r: "failed")
            with pytest.raises(sqlalchemy.exc.IntegrityError):
                await store.run_write(bad_sql, lock=LOCK_KEY, notify=lambda _r: "failed")
            assert await admin.fetchval(IN_TRANSACTION) == 0  # rolled back, not dropped
            assert await admin.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
            await admin.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
            done = await store.run_write(held_advisory_locks, lock=LOCK_KEY, notify=lambda _r: "ok")
            assert done == 1
            assert await asyncio.wait_for(heard.get(), 30) == "ok"  # the first one heard
        finally:
            await admin.close()
        async with store.read() as conn:
            assert await conn.scalar(select(func.count()).select_from(T_LEADS)) == 0


async def test_a_run_write_cancelled_while_waiting_for_its_lock_holds_nothing(
    pg_url: str,
) -> None:
    """Postgres: a `run_write` cancelled while its BEGIN waits for the lock (a shutdown)
    leaves no connection behind in the pool inside that transaction: once the other holder
    lets go, the lock is free and the next `run_write` takes it."""
    async with Store(pg_url) as store:
        await store.upgrade()
        admin = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await admin.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
            task = asyncio.create_task(store.run_write(held_advisory_locks, lock=LOCK_KEY))
            waiting = """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"""
            for _ in range(1500):  # until the BEGIN waits on the lock (30 s at most)
                if await admin.fetchval(waiting):
                    break
                await asyncio.sleep(0.02)
            assert await admin.fetchval(waiting) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await no_backend_left_in_a_transaction(admin)
            await admin.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
            assert (
                await asyncio.wait_for(store.run_write(held_advisory_locks, lock=LOCK_KEY), 30) == 1
            )
            assert await admin.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        finally:
            await admin.close()


async def test_a_connection_given_back_inside_a_transaction_is_not_handed_out(pg_url: str):
    """Postgres: a pooled connection that went back still inside a transaction (and its
    locks) is replaced at its next checkout, not handed to the next caller."""
    async with Store(pg_url) as store:
        # Autocommit: SQLAlchemy has no transaction of its own to roll back at the checkin.
        by_hand = store.writer.execution_options(isolation_level="AUTOCOMMIT")
        async with by_hand.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
            raw = (await conn.get_raw_connection()).driver_connection
            await raw.execute(f"BEGIN; SELECT pg_advisory_xact_lock({LOCK_KEY})")
            assert raw.is_in_transaction()
        async with store.read() as conn:
            again = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
            assert again != pid


async def test_a_run_write_whose_backend_dies_is_an_outage_and_the_next_one_works(
    pg_url: str,
) -> None:
    """Postgres: a backend that dies in the middle of a `run_write(lock=...)` (a restart, an
    admin) is `StoreUnavailable`, not a verdict on the data; nothing of it stays, and the
    next call gets a live connection and the lock."""
    async with Store(pg_url) as store:
        await store.upgrade()
        await add_tenant(store)

        def doomed(conn: sqlalchemy.Connection) -> None:
            conn.execute(insert(T_LEADS), lead("5531966660000"))
            conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

        with pytest.raises(StoreUnavailable):
            await store.run_write(doomed, lock=LOCK_KEY, notify=lambda _r: "x")
        assert await store.run_write(held_advisory_locks, lock=LOCK_KEY) == 1
        async with store.read() as conn:
            assert await conn.scalar(select(func.count()).select_from(T_LEADS)) == 0
