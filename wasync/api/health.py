"""`/healthz` (is the database answering?) and `/metrics` (Prometheus)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wasync.metrics import Metrics
from wasync.store import Store

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def health_routes(store: Store, metrics: Metrics) -> list[BaseRoute]:
    """The health and metrics routes."""
    return [
        Route("/healthz", _health(store), methods=["GET"]),
        Route("/metrics", _metrics(metrics), methods=["GET"]),
    ]


def _health(store: Store) -> Any:
    async def health(_request: Request) -> Response:
        try:
            async with asyncio.timeout(2):
                async with store.read() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "degraded", "database": "unavailable"}, 503)
        # `pid`: which process answered (`wasync run --workers N` serves one port from N)
        return JSONResponse({"status": "ok", "database": store.dialect, "pid": os.getpid()})

    return health


def _metrics(metrics: Metrics) -> Any:
    async def render(_request: Request) -> Response:
        return Response(metrics.render(), media_type=METRICS_TYPE)

    return render
