"""Event-log retention: rows older than `[events] retain_days` are deleted, oldest first.

The log is the WebSocket replay buffer and the CRM's change feed, not the record: messages,
chats and leads stay. A client that asks to resume from a pruned position gets a `resync`
frame. Ids are never reused (AUTOINCREMENT on SQLite, a sequence on Postgres), so `since`
stays meaningful after pruning.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select

from wasync.config import EventsConfig
from wasync.pipeline import T_EVENTS
from wasync.store import Store

log = logging.getLogger(__name__)


async def prune_events(store: Store, *, before: datetime, batch: int = 5000) -> int:
    """Delete event-log rows created before `before`, `batch` rows a transaction; return how
    many were deleted.

    Ids grow with time, so the old rows are the log's head: each step looks at the first
    `batch` rows in id order (the primary key; no scan of the table) and deletes the old ones
    among them, stopping at the first step that finds fewer than a full batch to delete.
    """
    e = T_EVENTS.c
    deleted = 0
    while True:
        head = select(e.id, e.created_at).order_by(e.id).limit(batch).subquery("head")
        async with store.write() as conn:
            last = (
                await conn.execute(select(func.max(head.c.id)).where(head.c.created_at < before))
            ).scalar()
            if last is None:
                break
            result = await conn.execute(delete(T_EVENTS).where(e.id <= last))
            step = int(result.rowcount or 0)
        deleted += step
        if step < batch:
            break
        await asyncio.sleep(0)  # let ingest in between batches
    return deleted


async def prune_job(store: Store, config: EventsConfig) -> None:
    """The scheduled job: prune what `retain_days` no longer keeps, log what went."""
    before = datetime.now(UTC) - timedelta(days=config.retain_days)
    deleted = await prune_events(store, before=before, batch=config.prune_batch)
    if deleted:
        log.info("event log: pruned %d rows older than %s", deleted, before.isoformat())
