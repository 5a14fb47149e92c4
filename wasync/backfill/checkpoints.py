"""Backfill checkpoints: the windows of a chat already read and stored (`backfill_checkpoints`),
and the gaps left between them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync.store import Store
from wasync.store import models as m

T_CHECKPOINTS = m.BackfillCheckpoint.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Window:
    """A closed time range `[start, end]` in epoch seconds; `messages` read in it."""

    start: float
    end: float
    messages: int = 0


def gaps(since: float, until: float, done: Iterable[Window]) -> list[tuple[float, float]]:
    """The parts of `[since, until]` that no done window covers, oldest first."""
    out: list[tuple[float, float]] = []
    cursor = since
    for w in sorted(done, key=lambda w: w.start):
        if w.end <= cursor:
            continue
        if w.start > cursor:
            out.append((cursor, min(w.start, until)))
        cursor = max(cursor, w.end)
        if cursor >= until:
            return out
    if cursor < until:
        out.append((cursor, until))
    return out


def utc(ts: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


async def has_table(conn: AsyncConnection, name: str) -> bool:
    """Whether the database has table `name` yet (a dry run reads an old or empty one)."""
    return bool(await conn.run_sync(lambda sync_conn: inspect(sync_conn).has_table(name)))


async def load_checkpoints(store: Store | None, session_id: int) -> dict[str, list[Window]]:
    """Done windows of a session, by chat id (nothing for a database without the table)."""
    if store is None or session_id <= 0:
        return {}
    c = T_CHECKPOINTS.c
    done: dict[str, list[Window]] = {}
    async with store.read() as conn:
        if not await has_table(conn, T_CHECKPOINTS.name):
            return {}
        rows = await conn.execute(
            select(c.chat_jid, c.window_start, c.window_end, c.messages).where(
                c.session_id == session_id
            )
        )
        for r in rows:
            window = Window(r.window_start.timestamp(), r.window_end.timestamp(), r.messages)
            done.setdefault(r.chat_jid, []).append(window)
    return done


async def save_checkpoints(
    store: Store, session_id: int, windows: Sequence[tuple[str, Window]]
) -> None:
    """Mark (chat, window) pairs done, in one transaction; a window seen again keeps its
    widest end."""
    rows = [
        {
            "session_id": session_id,
            "chat_jid": chat_jid,
            "window_start": utc(w.start),
            "window_end": utc(w.end),
            "messages": w.messages,
            "done_at": m.utcnow(),
        }
        for chat_jid, w in windows
    ]
    insert = sqlite.insert if store.is_sqlite else postgresql.insert
    stmt = insert(T_CHECKPOINTS)
    c, ex = T_CHECKPOINTS.c, stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["session_id", "chat_jid", "window_start"],
        set_={
            "window_end": case((ex.window_end > c.window_end, ex.window_end), else_=c.window_end),
            "messages": ex.messages,
            "done_at": ex.done_at,
        },
    )
    async with store.write() as conn:
        await conn.execute(stmt, rows)
