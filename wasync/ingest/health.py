"""Session health: what message flow says of each session, in the transaction that carries it.

Every transaction with messages records, per session (one upsert for the batch): the newest
inbound message's provider time, that a webhook delivered a message (new or a duplicate: it
came), and the webhook-vs-poll lag of messages that came by both (seconds polling saw a
message after its webhook; negative when polling stored it first and the webhook came
later). The `ObserveHealth` command, run after each poll cycle, applies the rules of
`wasync.health` to the row and logs a `session:health` event when the state changes;
`RecordPolls` moves only the last poll time of many sessions whose idle cycles changed nothing
else (one statement for all of them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, func, or_, select, update

from wasync.eventlog import SESSION_HEALTH
from wasync.events import Message
from wasync.health import (
    FIELDS,
    OK,
    ObserveHealth,
    RecordPolls,
    SessionHealth,
    decide,
    from_row,
)
from wasync.ingest.base import Item, TxState, group
from wasync.ingest.statements import T_MESSAGES, T_SESSIONS
from wasync.store import models as m
from wasync.store.statements import in_list, upsert
from wasync.store.types import as_utc

T_HEALTH = m.SessionHealthRow.__table__  # type: ignore[attr-defined]
WEBHOOK, POLL = "webhook", "poll"


def _stored_statement(*, pg: bool) -> Any:
    c = T_MESSAGES.c
    return select(c.provider_message_id, c.source, c.created_at).where(
        c.session_id == bindparam("sid", type_=Integer()),
        in_list(c.provider_message_id, "ids", pg=pg),
    )


_STORED = {pg: _stored_statement(pg=pg) for pg in (False, True)}


def _flow_statement(*, pg: bool) -> Any:
    """The batch's upsert: the newest inbound time wins, a webhook delivery and a lag replace
    what was there only when the batch has one."""
    stmt = upsert(T_HEALTH, pg=pg)
    c, ex = T_HEALTH.c, stmt.excluded
    newer = and_(
        ex.last_inbound_at.is_not(None),
        or_(c.last_inbound_at.is_(None), ex.last_inbound_at > c.last_inbound_at),
    )
    return stmt.on_conflict_do_update(
        index_elements=["session_id"],
        set_={
            "last_inbound_at": case((newer, ex.last_inbound_at), else_=c.last_inbound_at),
            "last_webhook_at": func.coalesce(ex.last_webhook_at, c.last_webhook_at),
            "webhook_lag_s": func.coalesce(ex.webhook_lag_s, c.webhook_lag_s),
            "updated_at": ex.updated_at,
        },
    )


_FLOW = {pg: _flow_statement(pg=pg) for pg in (False, True)}


def record_flow(tx: TxState, new: list[Item], dupes: list[Item]) -> None:
    """Note the batch's inbound messages, webhook deliveries and cross-source lags."""
    inbound: dict[int, datetime] = {}
    for it in new:
        ev = it.event
        if isinstance(ev, Message) and not ev.from_me:
            at = min(as_utc(ev.timestamp), tx.now)  # a phone clock ahead moves nothing ahead
            inbound[ev.session_id] = max(at, inbound.get(ev.session_id, at))
    hooked = {
        it.event.session_id
        for it in (*new, *dupes)
        if it.job.source == WEBHOOK and isinstance(it.event, Message)
    }
    lags = _lags(tx, dupes)
    sessions = sorted(inbound.keys() | hooked | lags.keys())
    if not sessions:
        return
    rows = [
        {
            "session_id": sid,
            "last_inbound_at": inbound.get(sid),
            "last_webhook_at": tx.now if sid in hooked else None,
            "webhook_lag_s": lags.get(sid),
            "recovered_total": 0,
            "created_at": tx.now,
            "updated_at": tx.now,
        }
        for sid in sessions
    ]
    tx.conn.execute(_FLOW[tx.pg], rows if len(rows) > 1 else rows[0])  # one: no executemany


def _lags(tx: TxState, dupes: list[Item]) -> dict[int, float]:
    """Per session, the lag of the batch's last message seen by the other source."""
    crossing = [
        (it.event.session_id, it.event.provider_message_id, it.job.source)
        for it in dupes
        if it.job.source in (WEBHOOK, POLL) and isinstance(it.event, Message)
    ]
    if not crossing:
        return {}
    by_session = group((sid, (pmid, source)) for sid, pmid, source in crossing)
    lags: dict[int, float] = {}
    for sid, pairs in sorted(by_session.items()):
        params = {"sid": sid, "ids": [pmid for pmid, _ in pairs]}
        stored = {r[0]: (r[1], r[2]) for r in tx.conn.execute(_STORED[tx.pg], params)}
        for pmid, source in pairs:
            first_source, first_at = stored.get(pmid, (source, None))
            if first_at is None or first_source == source:
                continue
            seconds = (tx.now - first_at).total_seconds()
            lags[sid] = seconds if source == POLL else -seconds
    return lags


_POLLED = (
    update(T_HEALTH)
    .where(
        T_HEALTH.c.session_id == bindparam("sid", type_=Integer()),
        or_(T_HEALTH.c.last_poll_at.is_(None), T_HEALTH.c.last_poll_at < bindparam("at")),
    )
    .values(last_poll_at=bindparam("at"), updated_at=bindparam("now"))
)


_ROWS = {
    pg: select(T_HEALTH).where(in_list(T_HEALTH.c.session_id, "ids", pg=pg)) for pg in (False, True)
}


def record_polls(tx: TxState, cmd: RecordPolls) -> dict[int, SessionHealth]:
    """Move each session's `last_poll_at` forward (never back: a cycle written since by
    `observe` may be newer); a session without a row yet is left to `observe`. Answers the
    rows as they are now (what webhooks recorded meanwhile included)."""
    rows = [{"sid": sid, "at": at, "now": tx.now} for sid, at in cmd.polled]
    if not rows:
        return {}
    tx.conn.execute(_POLLED, rows if len(rows) > 1 else rows[0])
    params = {"ids": [sid for sid, _ in cmd.polled]}
    found = tx.conn.execute(_ROWS[tx.pg], params).mappings()
    return {int(r["session_id"]): from_row(int(r["session_id"]), r) for r in found}


def observe(tx: TxState, cmd: ObserveHealth) -> SessionHealth | None:
    """Apply `wasync.health.decide` to the session's row; None for an unknown session."""
    h, s = T_HEALTH.c, T_SESSIONS.c
    found = tx.conn.execute(
        select(s.tenant_id, s.name, T_HEALTH)
        .select_from(T_SESSIONS.outerjoin(T_HEALTH, h.session_id == s.id))
        .where(s.id == cmd.session_id)
    ).first()
    if found is None:
        return None
    row = found._mapping
    prev = from_row(cmd.session_id, row) if row["session_id"] is not None else None
    before = prev or SessionHealth(session_id=cmd.session_id, created_at=tx.now)
    after = decide(before, cmd, tx.now)
    values = {name: getattr(after, name) for name in FIELDS}
    values.update(recovered_recent=[list(p) for p in after.recent], updated_at=tx.now)
    stmt = tx.insert(T_HEALTH).values(session_id=cmd.session_id, created_at=tx.now, **values)
    tx.conn.execute(stmt.on_conflict_do_update(index_elements=["session_id"], set_=values))
    if after.state != before.state and (before.state is not None or after.state != OK):
        _announce(tx, str(row["tenant_id"]), str(row["name"]), before, after)
    return after


def _announce(
    tx: TxState, tenant: str, name: str, before: SessionHealth, after: SessionHealth
) -> None:
    """The `session:health` row: for the tenant's admins (`wasync.scopes.visible`)."""
    tx.log.emit(
        tenant,
        SESSION_HEALTH,
        None,
        None,
        sessionId=after.session_id,
        session=name,
        state=after.state,
        previousState=before.state,
        reason=after.reason,
        lastPollAt=_iso(after.last_poll_at),
        lastInboundAt=_iso(after.last_inbound_at),
        webhookLagS=after.webhook_lag_s,
        recoveredLastHour=after.recovered_last_hour(tx.now),
    )


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None
