"""Sessions: provider session states (`session:status`) and poll cursors."""

from __future__ import annotations

from sqlalchemy import case, or_, update

from wasync.eventlog import SESSION_STATUS
from wasync.events import SessionStatus
from wasync.ingest.base import Job, TxState
from wasync.ingest.statements import T_CURSORS, T_SESSIONS


def apply_statuses(tx: TxState) -> None:
    """Each session's latest state in the batch; a change is logged for the whole tenant."""
    latest: dict[int, tuple[Job, SessionStatus]] = {}
    for job in tx.jobs:
        for ev in job.events:
            if isinstance(ev, SessionStatus) and tx.tenant(job, ev.session_id) is not None:
                latest[ev.session_id] = (job, ev)
    c = T_SESSIONS.c
    for session_id, (_job, ev) in sorted(latest.items()):
        _record_engine(tx, session_id, ev)
        res = tx.conn.execute(
            update(T_SESSIONS)
            .where(c.id == session_id, or_(c.status.is_(None), c.status != ev.status))
            .values(status=ev.status, status_at=ev.timestamp or tx.now)
            .returning(c.name)
        )
        name = res.scalar_one_or_none()
        if name is not None:
            tx.log.emit(
                tx.memory.tenants[session_id],
                SESSION_STATUS,
                None,
                None,
                sessionId=session_id,
                session=name,
                status=ev.status,
                **dict(ev.detail),
            )


def _record_engine(tx: TxState, session_id: int, ev: SessionStatus) -> None:
    """`sessions.engine` as the provider reports it (WAHA's `GET /api/sessions/{name}` and
    `session.status` webhooks carry `engine`), so it is known without configuring it."""
    engine = ev.detail.get("engine")
    if not isinstance(engine, str) or not engine:
        return
    c = T_SESSIONS.c
    tx.conn.execute(
        update(T_SESSIONS)
        .where(c.id == session_id, or_(c.engine.is_(None), c.engine != engine))
        .values(engine=engine)
    )


def advance_cursors(tx: TxState) -> None:
    """Move poll cursors forward (never back), in the transaction that stores what they cover."""
    best: dict[tuple[int, str], float] = {}
    for job in tx.jobs:
        for cur in job.cursors:
            key = (cur.session_id, cur.scope)
            best[key] = max(cur.ts, best.get(key, cur.ts))
    if not best:
        return
    rows = [
        {"session_id": s, "scope": scope, "ts": ts, "updated_at": tx.now}
        for (s, scope), ts in sorted(best.items())
    ]
    stmt = tx.insert(T_CURSORS)
    c, ex = T_CURSORS.c, stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["session_id", "scope"],
        set_={"ts": case((ex.ts > c.ts, ex.ts), else_=c.ts), "updated_at": ex.updated_at},
    )
    tx.conn.execute(stmt, rows)
