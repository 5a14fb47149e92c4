"""What `/readyz` asks: may this node take traffic? Named checks, each answering None (ready)
or one short reason; the database and its schema are always checked, the daemon adds the
rest as it starts them (the scheduler; a node holding session leases adds `leases`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy.exc
from sqlalchemy import text

from wasync.errors import StoreUnavailable
from wasync.store import Store
from wasync.store.migrate import packaged_head

Check = Callable[[], Awaitable[str | None]]
OK = "ok"


class Readiness:
    """The checks of one node. `required` names checks the daemon adds later: until it does,
    each reports "not started" (a node whose scheduler is not running is not ready)."""

    def __init__(self, store: Store, *, required: Sequence[str] = (), timeout_s: float = 2.0):
        self.store = store
        self.timeout_s = timeout_s
        self._head: str | None = None
        self._checks: dict[str, Check] = {"database": self._database, "migrations": self._schema}
        for name in required:
            self._checks[name] = _not_started

    def add(self, name: str, check: Check) -> None:
        """Add (or replace) the check `name`."""
        self._checks[name] = check

    async def run(self) -> dict[str, str]:
        """Every check's answer, `ok` or its reason, in the order they were added; a check
        that raises or takes longer than `timeout_s` fails with that."""
        out: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                async with asyncio.timeout(self.timeout_s):
                    reason = await check()
            except TimeoutError:
                reason = f"no answer within {self.timeout_s:g} s"
            except StoreUnavailable as exc:  # names the error's type, never the URL
                reason = str(exc)
            except Exception as exc:  # a check is a question: a failure is its answer
                reason = f"{type(exc).__name__}"
            out[name] = reason or OK
        return out

    async def _database(self) -> str | None:
        async with self.store.read() as conn:
            await conn.execute(text("SELECT 1"))
        return None

    async def _schema(self) -> str | None:
        if self._head is None:
            self._head = await asyncio.to_thread(packaged_head)
        try:
            async with self.store.read() as conn:
                found = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        except sqlalchemy.exc.DBAPIError:  # no such table: never migrated
            found = None
        if found == self._head:
            return None
        return f"schema at {found or 'none'}, packaged {self._head}"


async def _not_started() -> str | None:
    return "not started"
