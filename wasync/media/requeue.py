"""Media put back in the queue by hand: `wasync media retry` (FAILED media, for the daemon to
fetch again) and `wasync backfill --media` (history's untracked media, fetched here within a
budget)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import httpx

from wasync.config import Settings
from wasync.events import MediaRequeue, MediaStatus
from wasync.media.backends import open_store
from wasync.media.worker import MediaWorker
from wasync.pipeline import Pipeline
from wasync.registry import Registry, SessionRef
from wasync.store import Store


def _when(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


async def retry_failed(
    settings: Settings,
    store: Store,
    *,
    sessions: Collection[SessionRef] | None = None,
    tenant_id: str | None = None,
    since: float | None = None,
) -> int:
    """FAILED media (of these sessions, sent since `since`) back to PENDING; how many."""
    ids = None if sessions is None else frozenset(r.id for r in sessions)
    command = MediaRequeue(
        statuses=frozenset({MediaStatus.FAILED}),
        tenant_id=tenant_id,
        session_ids=ids,
        since=_when(since),
    )
    async with Pipeline.from_settings(store, settings) as pipeline:
        queued = await pipeline.execute(command, source="cli")
    return len(queued)


async def fetch_history(
    settings: Settings,
    registry: Registry,
    store: Store,
    sessions: Collection[SessionRef],
    *,
    since: float,
    until: float,
    budget: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Counter[str]:
    """Queue up to `budget` untracked media of `sessions` sent in `[since, until]`, newest
    first, and fetch them now; counts by outcome (`pending`: left for the daemon's retries)."""
    command = MediaRequeue(
        statuses=frozenset({MediaStatus.NONE}),
        session_ids=frozenset(r.id for r in sessions),
        since=_when(since),
        until=_when(until),
        limit=budget,
    )
    async with AsyncExitStack() as stack:
        pipeline = await stack.enter_async_context(Pipeline.from_settings(store, settings))
        ids = await pipeline.execute(command, source="backfill")
        if not ids:
            return Counter()
        media = await stack.enter_async_context(open_store(settings.media, settings.database.url))
        client = await stack.enter_async_context(httpx.AsyncClient(transport=transport))
        worker = MediaWorker(
            settings.media,
            pipeline=pipeline,
            store=store,
            media=media,
            registry=registry,
            client=client,
            poll=settings.poll,
            only=ids,
        )
        async with worker:
            await worker.idle.wait()
            await asyncio.sleep(0)
        outcomes = Counter(worker.outcomes)
    settled = sum(n for name, n in outcomes.items() if name != "retry")
    outcomes["pending"] = max(0, len(ids) - settled)
    outcomes.pop("retry", None)
    return outcomes
