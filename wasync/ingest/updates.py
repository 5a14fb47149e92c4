"""Updates: acks, edits and revokes, merged by the one ack rule and applied or parked.

Whatever brings an update — an `Ack`/`Edit`/`Revoke` event, a duplicate message carrying its
ack, the updates parked for a message that just arrived, the echo merged into one of our
sends, a send that failed — notes it here; `apply()` then changes the stored messages once
each, logging `chat:message-ack` / `-edited` / `-revoked` only for a real change, and parks
in `pending_updates` what has no message yet. Parked rows are drained in one place, `drain()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, update

from wasync.eventlog import MESSAGE_ACK, MESSAGE_EDITED, MESSAGE_REVOKED
from wasync.events import Ack, AckLevel, Edit, Revoke
from wasync.ingest.acks import advances
from wasync.ingest.base import Job, Key, TxState, group
from wasync.ingest.statements import T_MESSAGES, T_PENDING

# A stored message as updates see it: id, tenant, chat id, ack, body, revoked.
Stored = tuple[int, str, int, int | None, str | None, bool]


class Updates:
    """The updates one transaction has noted, by message key."""

    def __init__(self, tx: TxState) -> None:
        self.tx = tx
        self.acks: dict[Key, int] = {}
        self.ack_data: dict[Key, dict[str, Any]] = {}  # extra event data (a send's error)
        self.edits: dict[Key, tuple[str | None, datetime]] = {}
        self.revokes: dict[Key, datetime] = {}

    def ack(self, key: Key, level: int | None, **data: Any) -> None:
        """Note an ack; the further one by the one rule wins."""
        if level is None:
            return
        if advances(self.acks.get(key), level):
            self.acks[key] = level
        if data:
            self.ack_data[key] = data

    def edit(self, key: Key, body: str | None, at: datetime | None) -> None:
        """Note an edit (the last one noted wins)."""
        self.edits[key] = (body, at or self.tx.now)

    def revoke(self, key: Key, at: datetime | None) -> None:
        """Note a revoke."""
        self.revokes[key] = at or self.tx.now

    def collect(self, jobs: Iterable[Job]) -> None:
        """Note the jobs' Ack, Edit and Revoke events (of known sessions)."""
        for job in jobs:
            for ev in job.events:
                if not isinstance(ev, Ack | Edit | Revoke):
                    continue
                if self.tx.tenant(job, ev.session_id) is None:
                    continue
                key = (ev.session_id, ev.provider_message_id)
                if isinstance(ev, Ack):
                    self.ack(key, ev.ack)
                elif isinstance(ev, Edit):
                    self.edit(key, ev.body, ev.timestamp)
                else:
                    self.revoke(key, ev.timestamp)

    def drain(self, keys: Iterable[Key]) -> None:
        """Take (and delete) the updates parked for these keys: their messages exist now."""
        p, tx = T_PENDING.c, self.tx
        for session_id, ids in group(keys).items():
            rows = tx.conn.execute(
                delete(T_PENDING)
                .where(p.session_id == session_id, p.provider_message_id.in_(ids))
                .returning(p.provider_message_id, p.ack, p.edit_body, p.edited_at, p.revoked_at)
            )
            for r in rows:
                key = (session_id, r.provider_message_id)
                self.ack(key, r.ack)
                if r.edited_at is not None:
                    self.edit(key, r.edit_body, r.edited_at)
                if r.revoked_at is not None:
                    self.revoke(key, r.revoked_at)

    def apply(self) -> None:
        """Change the stored messages; park the updates of messages not stored yet."""
        keys = set(self.acks) | set(self.edits) | set(self.revokes)
        if not keys:
            return
        current = self._current(keys)
        missing = sorted(keys - current.keys())
        if missing:
            self._park(missing)
        acks: list[dict[str, Any]] = []
        edits: list[dict[str, Any]] = []
        revokes: list[dict[str, Any]] = []
        emit = self.tx.log.emit
        for key, (msg_id, tenant, chat_id, ack, stored, revoked) in sorted(current.items()):
            new_ack = self.acks.get(key)
            if new_ack is not None and advances(ack, new_ack):
                acks.append({"b_id": msg_id, "b_ack": new_ack})
                name = AckLevel(new_ack).name
                data = self.ack_data.get(key, {})
                emit(tenant, MESSAGE_ACK, chat_id, msg_id, ack=new_ack, ackName=name, **data)
            # An edit that leaves the text as stored, or a revoke of a revoked message, changes
            # nothing: a poll that sees an edit its webhook already brought (Evolution keeps
            # the edited text on the row) must not announce it again.
            if key in self.edits and self.edits[key][0] != stored:
                body, at = self.edits[key]
                edits.append({"b_id": msg_id, "b_body": body, "b_at": at})
                emit(tenant, MESSAGE_EDITED, chat_id, msg_id, body=body)
            if key in self.revokes and not revoked:
                revokes.append({"b_id": msg_id, "b_at": self.revokes[key]})
                emit(tenant, MESSAGE_REVOKED, chat_id, msg_id)
        self._update_messages(acks, edits, revokes)

    def _update_messages(
        self, acks: list[dict[str, Any]], edits: list[dict[str, Any]], revokes: list[dict[str, Any]]
    ) -> None:
        """One executemany UPDATE per kind of change."""
        c = T_MESSAGES.c
        by_id = update(T_MESSAGES).where(c.id == bindparam("b_id"))
        at = bindparam("b_at", type_=c.edited_at.type)
        for params, values in (
            (acks, {"ack": bindparam("b_ack")}),
            (edits, {"body": bindparam("b_body"), "edited": True, "edited_at": at}),
            (revokes, {"revoked": True, "revoked_at": at}),
        ):
            if params:
                self.tx.conn.execute(by_id.values(**values), params)

    def _current(self, keys: set[Key]) -> dict[Key, Stored]:
        found: dict[Key, Stored] = {}
        tx = self.tx
        for session_id, ids in group(keys).items():
            rows = tx.conn.execute(tx.sql.current, {"sid": session_id, "ids": ids})
            for msg_id, pmid, tenant_id, chat_id, ack, body, revoked in rows:
                found[(session_id, pmid)] = (msg_id, tenant_id, chat_id, ack, body, bool(revoked))
        return found

    def _park(self, keys: list[Key]) -> None:
        """Keep updates for messages we have not seen yet (merged by the one rule in SQL)."""
        rows = []
        for key in keys:
            edit = self.edits.get(key)
            rows.append(
                {
                    "session_id": key[0],
                    "provider_message_id": key[1],
                    "ack": self.acks.get(key),
                    "edit_body": edit[0] if edit else None,
                    "edited_at": edit[1] if edit else None,
                    "revoked_at": self.revokes.get(key),
                    "created_at": self.tx.now,
                }
            )
        self.tx.conn.execute(self.tx.sql.park, rows)
