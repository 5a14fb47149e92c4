"""Quarantine: keep the events of a transaction that cannot be stored in `dead_letters`.

An event is refused before the store by `wasync.ingest.normalize` (a key longer than its
column, text no column takes), or by the store itself, found by the pipeline retrying the
job in halves. Either way the job's last transaction writes one `quarantined` row per refused
event (its session, provider id, reason, and the event as JSON), or, for a row the provider
listed that its parser refused (`Unparsed`), one `unparsed` row holding that row as the
provider sent it (`wasync replay` parses it again once the parser can), in the transaction that
moves the job's cursor past it: polling goes on after it, and a webhook is answered 2xx once
it is kept. The same event refused again (a poll overlap, a provider retry) is kept once.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from wasync import deadletters
from wasync.events import Unparsed
from wasync.ingest.base import TxState
from wasync.ingest.normalize import Refusal
from wasync.ingest.statements import T_SESSIONS

log = logging.getLogger(__name__)


def keep(tx: TxState) -> None:
    """Write the jobs' refused events; count them on their jobs."""
    todo = [(job, r) for job in tx.jobs for r in job.refused]
    if not todo:
        return
    sessions = _sessions(tx, {_session_id(r) for _, r in todo})
    for job, refusal in todo:
        job.result.quarantined += 1
        sid = _session_id(refusal)
        tenant, name, provider = sessions.get(sid, (None, None, None))
        ev = refusal.event
        pmid = getattr(ev, "provider_message_id", None) or None
        # The provider's own row, as it sent it (`wasync replay` reads it), or the event.
        unparsed, body = (
            (True, deadletters.raw_body(ev.raw))
            if isinstance(ev, Unparsed)
            else (False, deadletters.event_body(ev))
        )
        row = deadletters.row(
            kind=deadletters.UNPARSED if unparsed else deadletters.QUARANTINED,
            source=job.source,
            body=body,
            error=refusal.reason,
            now=tx.now,
            provider=provider,
            session_name=name,
            tenant_id=tenant,
            session_id=sid,
            provider_message_id=pmid,
        )
        if tx.conn.execute(deadletters.same_row(row)).first() is None:
            tx.conn.execute(deadletters.T_DEAD.insert(), row)
            log.warning(
                "session %s/%s: %s %s quarantined in dead_letters: %s",
                tenant,
                name,
                "unparsed row" if unparsed else type(ev).__name__.lower(),
                (pmid or "")[:80],
                row["error"],
            )


def _session_id(refusal: Refusal) -> int:
    return int(refusal.event.session_id)


def _sessions(tx: TxState, ids: set[int]) -> dict[int, tuple[str, str, str]]:
    c = T_SESSIONS.c
    rows = tx.conn.execute(select(c.id, c.tenant_id, c.name, c.provider).where(c.id.in_(ids)))
    return {int(r.id): (r.tenant_id, r.name, r.provider) for r in rows}
