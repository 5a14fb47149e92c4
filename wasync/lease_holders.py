"""Who holds which session's lease, as `wasync sessions` and `/readyz` read it: the live
`session_leases` rows on Postgres; on SQLite the one running daemon (`wasync.nodelock`).
The leases themselves are taken and renewed by `wasync.leases`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from wasync.nodelock import file_lock_holder
from wasync.store import Store
from wasync.store import models as m

T_LEASES = m.SessionLease.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    """Who holds a session's lease, and until when (None: the SQLite node, no expiry)."""

    session_id: int
    node_id: str
    expires_at: datetime | None


async def holders(store: Store) -> dict[int, Holder]:
    """The live lease of each session: Postgres rows not expired; on SQLite the running
    daemon's node for every session (none when no `wasync run` holds the file)."""
    if store.is_sqlite:
        node = file_lock_holder(store)
        if node is None:
            return {}
        async with store.read() as conn:
            ids = await conn.scalars(select(m.Session.__table__.c.id))  # type: ignore[attr-defined]
            return {int(s): Holder(session_id=int(s), node_id=node, expires_at=None) for s in ids}
    c = T_LEASES.c
    q = select(c.session_id, c.node_id, c.expires_at).where(c.expires_at > func.now())
    async with store.read() as conn:
        rows = await conn.execute(q)
        return {
            int(r.session_id): Holder(
                session_id=int(r.session_id), node_id=r.node_id, expires_at=r.expires_at
            )
            for r in rows
        }
