"""Shared fixtures: every store test runs on a real SQLite file and on a real Postgres.

Postgres tests need `WASYNC_TEST_PG_URL` (CI always sets it); each test gets its own fresh
database, dropped afterwards. Without the variable they are skipped with one line.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import hypothesis
import pytest
from sqlalchemy.engine import make_url

from wasync.config import Settings, parse
from wasync.pipeline import Pipeline, PublishedEvent
from wasync.registry import Registry, sync
from wasync.store import Store

# The fuzz suite (tests/test_fuzz.py): a bounded number of examples in every run, a few
# seconds; HYPOTHESIS_PROFILE=long for a thorough one. Examples share a test's fixtures (one
# database per test, many bodies posted to it), which is what `function_scoped_fixture` warns of.
_SHARED = [
    hypothesis.HealthCheck.function_scoped_fixture,
    hypothesis.HealthCheck.too_slow,
    hypothesis.HealthCheck.data_too_large,
]
hypothesis.settings.register_profile(
    "ci", max_examples=40, deadline=None, database=None, suppress_health_check=_SHARED
)
hypothesis.settings.register_profile(
    "long", max_examples=5000, deadline=None, database=None, suppress_health_check=_SHARED
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PG_URL = os.environ.get("WASYNC_TEST_PG_URL")
SKIP_PG = "Postgres tests skipped: set WASYNC_TEST_PG_URL (CI sets it)"
_PG_SKIPPED = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without WASYNC_TEST_PG_URL, drop the Postgres variants (reported in one line)."""
    if PG_URL:
        return
    pg = [i for i in items if "[postgres" in i.nodeid or "-postgres" in i.nodeid]
    if pg:
        config.hook.pytest_deselected(items=pg)
        items[:] = [i for i in items if i not in pg]
        config.stash[_PG_SKIPPED] = len(pg)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The one line saying Postgres tests did not run."""
    skipped = config.stash.get(_PG_SKIPPED, 0)
    if skipped:
        terminalreporter.write_line(f"{skipped} {SKIP_PG}", yellow=True)


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL: a SQLite file, or a new Postgres database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'wasync.db'}"
        return
    if not PG_URL:
        pytest.skip(SKIP_PG)
    async with fresh_pg_database(PG_URL) as url:
        yield url


@pytest.fixture(params=["postgres"])
async def pg_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh Postgres database, for behaviour only Postgres has (LISTEN/NOTIFY)."""
    if not PG_URL:
        pytest.skip(SKIP_PG)
    async with fresh_pg_database(PG_URL) as url:
        yield url


class fresh_pg_database:
    """Create a throwaway database next to the one in `base_url`, drop it on exit."""

    def __init__(self, base_url: str) -> None:
        self.base = make_url(base_url)
        self.name = f"wasync_t_{uuid.uuid4().hex[:12]}"

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=self.base.host or "127.0.0.1",
            port=self.base.port or 5432,
            user=self.base.username or "postgres",
            password=self.base.password,
            database=self.base.database or "postgres",
        )

    async def __aenter__(self) -> str:
        conn = await self._admin()
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()
        return self.base.set(database=self.name).render_as_string(hide_password=False)

    async def __aexit__(self, *exc: object) -> None:
        conn = await self._admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()


def free_port() -> int:
    """A loopback port nothing listens on right now (for servers on fixed ports, and for a
    provider that does not answer)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_for(url: str, **extra: object) -> Settings:
    """Two tenants with one WAHA and one Evolution session each; admins u1, u2 / u3."""
    data: dict[str, object] = {
        "database": {"url": url},
        "tenants": [
            {
                "id": "acme",
                "admins": ["u1", "u2"],
                "sessions": [
                    {"name": "default", "provider": "waha", "base_url": "http://127.0.0.1:3000"},
                    {"name": "evo", "provider": "evolution", "base_url": "http://127.0.0.1:8081"},
                ],
            },
            {
                "id": "globex",
                "admins": ["u3"],
                "sessions": [
                    {"name": "default", "provider": "waha", "base_url": "http://127.0.0.1:3001"},
                    {"name": "evo", "provider": "evolution", "base_url": "http://127.0.0.1:8082"},
                ],
            },
        ],
    }
    data.update(extra)
    return parse(data)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """An upgraded store on the parametrized backend."""
    async with Store(db_url) as st:
        await st.upgrade()
        yield st


@pytest.fixture
def settings(db_url: str) -> Settings:
    """The two-tenant settings on the parametrized backend."""
    return settings_for(db_url)


@pytest.fixture
async def registry(store: Store, settings: Settings) -> Registry:
    """The configured sessions, synced into the store."""
    return await sync(store, settings)


class Recorder:
    """A subscriber that keeps what it is published, in order."""

    def __init__(self) -> None:
        self.events: list[PublishedEvent] = []

    def publish(self, events: list[PublishedEvent]) -> None:  # type: ignore[override]
        """Record committed events."""
        self.events.extend(events)


@pytest.fixture
def recorder() -> Recorder:
    """A fresh Recorder."""
    return Recorder()


@pytest.fixture
async def pipeline(
    store: Store, settings: Settings, registry: Registry, recorder: Recorder
) -> AsyncIterator[Pipeline]:
    """A running pipeline on the store, publishing to `recorder`."""
    admins = {t.id: t.admins for t in settings.tenants}
    async with Pipeline(store, crm=settings.crm, admins=admins, subscribers=[recorder]) as p:
        yield p


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    """Only asyncio."""
    yield "asyncio"
