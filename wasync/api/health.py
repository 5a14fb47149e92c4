"""`/healthz` (is the database answering?), `/readyz` (may this node take traffic? see
`wasync.readiness`) and `/metrics` (Prometheus)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wasync.api.doc import Op, documented
from wasync.metrics import Metrics
from wasync.readiness import OK, Readiness
from wasync.store import Store

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def health_routes(
    store: Store, metrics: Metrics, readiness: Readiness | None = None
) -> list[BaseRoute]:
    """The health, readiness and metrics routes."""
    return [
        documented(
            Route("/healthz", _health(store), methods=["GET"]),
            Op(
                summary="Is the database answering",
                tag="health",
                auth="none",
                response="Health",
                errors=(503,),
            ),
        ),
        documented(
            Route("/readyz", _ready(readiness or Readiness(store)), methods=["GET"]),
            Op(
                summary="May this node take traffic: database, schema, scheduler, leases",
                tag="health",
                auth="none",
                response="Ready",
                errors=(503,),
            ),
        ),
        documented(
            Route("/metrics", _metrics(metrics), methods=["GET"]),
            Op(summary="Prometheus metrics", tag="health", auth="none", media_type="text/plain"),
        ),
    ]


def _health(store: Store) -> Any:
    async def health(_request: Request) -> Response:
        try:
            async with asyncio.timeout(2):
                async with store.read() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception:
            body = {"status": "degraded", "database": "unavailable", "pid": os.getpid()}
            return JSONResponse(body, 503)
        # `pid`: which process answered (`wasync run --workers N` serves one port from N)
        return JSONResponse({"status": "ok", "database": store.dialect, "pid": os.getpid()})

    return health


def _ready(readiness: Readiness) -> Any:
    async def ready(_request: Request) -> Response:
        """200 with every check when all pass; 503 naming the failing ones."""
        checks = await readiness.run()
        failing = [name for name, answer in checks.items() if answer != OK]
        if failing:
            body = {"status": "unavailable", "failing": failing, "checks": checks}
            return JSONResponse(body, 503)
        return JSONResponse({"status": "ok", "checks": checks})

    return ready


def _metrics(metrics: Metrics) -> Any:
    async def render(_request: Request) -> Response:
        return Response(metrics.render(), media_type=METRICS_TYPE)

    return render
