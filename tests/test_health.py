"""`/readyz`: the database answers, its schema is the packaged head, the scheduler runs."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette

from wasync.api.health import health_routes
from wasync.metrics import Metrics
from wasync.readiness import Readiness
from wasync.scheduler import Scheduler
from wasync.store import Store


async def ready(readiness: Readiness) -> tuple[int, Any]:
    """GET /readyz through the app's routes (ASGI transport); status and JSON body."""
    app = Starlette(routes=health_routes(readiness.store, Metrics(), readiness))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wasync") as client:
        response = await client.get("/readyz")
    return response.status_code, response.json()


async def test_ready_when_migrated_and_the_scheduler_runs(db_url: str):
    """Not migrated: 503 naming `migrations`; migrated but the scheduler not started: 503
    naming `scheduler`; running: 200 with every check ok; stopping: 503 again."""
    async with Store(db_url) as store:
        readiness = Readiness(store, required=("scheduler",))
        status, body = await ready(readiness)
        assert status == 503 and body["failing"] == ["migrations", "scheduler"]
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["migrations"].startswith("schema at none, packaged 0")
        assert body["checks"]["scheduler"] == "not started"
        await store.upgrade()
        scheduler = Scheduler(interval_s=3600)
        readiness.add("scheduler", scheduler.readiness)
        status, body = await ready(readiness)
        assert status == 503 and body["failing"] == ["scheduler"]
        scheduler.start()
        try:
            status, body = await ready(readiness)
            assert status == 200, body
            assert body == {
                "status": "ok",
                "checks": {"database": "ok", "migrations": "ok", "scheduler": "ok"},
            }
        finally:
            await scheduler.stop()
        status, body = await ready(readiness)
        assert status == 503 and body["checks"]["scheduler"] == "stopping"


async def test_a_database_that_does_not_answer_is_named():
    """Postgres on a port nobody listens on: 503 naming `database` (and the schema it cannot
    read), the reason without the URL or its password."""
    url = "postgresql+asyncpg://wasync:s3cret-pw@127.0.0.1:1/nowhere"
    async with Store(url) as store:
        status, body = await ready(Readiness(store, timeout_s=10))
    assert status == 503 and body["failing"] == ["database", "migrations"]
    assert body["checks"]["database"].startswith("database unavailable")
    assert "s3cret-pw" not in str(body) and "127.0.0.1" not in str(body)


async def test_a_check_that_hangs_fails_by_its_timeout(tmp_path: Any):
    """A check that never answers is reported after `timeout_s`, and the others still run."""
    async with Store(f"sqlite+aiosqlite:///{tmp_path}/w.db") as store:
        await store.upgrade()
        readiness = Readiness(store, timeout_s=2)

        async def hangs() -> str | None:
            await asyncio.Event().wait()
            return None

        readiness.add("leases", hangs)
        status, body = await ready(readiness)
    assert status == 503 and body["failing"] == ["leases"]
    assert body["checks"]["leases"] == "no answer within 2 s"
