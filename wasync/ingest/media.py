"""Media: the `media_*` columns of messages, moved by the media worker's and the CLI's commands.

A new media message is PENDING from the transaction that inserts it (`messages.message_row`).
The worker claims due PENDING rows for a lease (`MediaClaim`: the claim bumps
`media_attempts`, which fences the outcome, so a worker whose lease was taken over cannot
overwrite the new owner's), then reports STORED, a retry or FAILED, or EXPIRED. Every change
of status logs one `chat:message-media` row with the message's chat id, so it reaches exactly
who may see the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update

from wasync.eventlog import MESSAGE_MEDIA
from wasync.events import (
    MEDIA_TYPES,
    MediaClaim,
    MediaCommand,
    MediaExpired,
    MediaFailed,
    MediaRequeue,
    MediaStatus,
    MediaStored,
)
from wasync.ingest.base import TxState
from wasync.ingest.statements import T_CHATS, T_MESSAGES

_M = T_MESSAGES.c
PENDING, STORED = MediaStatus.PENDING.value, MediaStatus.STORED.value
# What a claimed job carries to the worker (plus its chat's jid).
JOB_COLUMNS = (
    "id",
    "tenant_id",
    "chat_id",
    "session_id",
    "provider_message_id",
    "from_me",
    "type",
    "source",
    "created_at",
    "media_url",
    "media_mimetype",
    "media_filename",
    "media_size",
    "media_voice",
    "media_ref",
    "media_attempts",
    "media_reason",
)


def media_path(message_id: int) -> str:
    """Where a client fetches a stored file (`GET /api/messages/{id}/media`)."""
    return f"/api/messages/{message_id}/media"


class MediaRoom:
    """The media commands of one transaction."""

    def __init__(self, tx: TxState) -> None:
        self.tx = tx

    def run(self, command: MediaCommand) -> Any:
        """Carry out one command; see each method for its answer."""
        if isinstance(command, MediaClaim):
            return self.claim(command)
        if isinstance(command, MediaStored):
            return self.stored(command)
        if isinstance(command, MediaFailed):
            return self.failed(command)
        if isinstance(command, MediaExpired):
            return self.expired(command)
        return self.requeue(command)

    # --- claims -------------------------------------------------------------------------------

    def claim(self, cmd: MediaClaim) -> list[Mapping[str, Any]]:
        """Due PENDING rows, URLs that may expire first, then oldest: leased, attempts + 1."""
        if (cmd.sessions is not None and not cmd.sessions) or cmd.limit <= 0:
            return []
        ids = [int(r[0]) for r in self.tx.conn.execute(self._due(cmd))]
        if not ids:
            return []
        lease = self.tx.now + timedelta(seconds=cmd.lease_s)
        self.tx.conn.execute(
            update(T_MESSAGES)
            .where(_M.id.in_(ids), _M.media_status == PENDING)
            .values(media_next_at=lease, media_attempts=_M.media_attempts + 1)
        )
        columns = [_M[name] for name in JOB_COLUMNS]
        joined = T_MESSAGES.join(T_CHATS, T_CHATS.c.id == _M.chat_id)
        stmt = select(*columns, T_CHATS.c.jid.label("chat_jid")).select_from(joined)
        rows = self.tx.conn.execute(stmt.where(_M.id.in_(ids)).order_by(_M.id))
        return [dict(r._mapping) for r in rows]

    def _due(self, cmd: MediaClaim) -> Any:
        """The ids to claim: at most `per_session` per session, `limit` in all."""
        now = self.tx.now
        conds = [
            _M.media_status == PENDING,
            or_(_M.media_next_at.is_(None), _M.media_next_at <= now),
        ]
        if cmd.sessions is not None:
            conds.append(_M.session_id.in_(sorted(cmd.sessions)))
        if cmd.exclude:
            conds.append(_M.session_id.not_in(sorted(cmd.exclude)))
        if cmd.message_ids is not None:
            conds.append(_M.id.in_(list(cmd.message_ids)))
        # A provider URL may expire (WAHA deletes files after 180 s): those go first.
        later = case((_M.media_url.is_(None), 1), else_=0)
        rank = func.row_number().over(partition_by=_M.session_id, order_by=(later, _M.id))
        inner = select(_M.id, later.label("later"), rank.label("rank")).where(and_(*conds))
        due = inner.subquery("due")
        return (
            select(due.c.id)
            .where(due.c.rank <= cmd.per_session)
            .order_by(due.c.later, due.c.id)
            .limit(cmd.limit)
        )

    # --- outcomes -----------------------------------------------------------------------------

    def stored(self, cmd: MediaStored) -> bool:
        """STORED with key, size, checked mimetype and name (kept when the provider gave one).
        Not fenced: the bytes are in the store whoever fetched them."""
        values = {
            "media_status": STORED,
            "media_key": cmd.key,
            "media_size": cmd.size,
            "media_mimetype": cmd.mimetype,
            "media_filename": func.coalesce(_M.media_filename, cmd.filename),
            "media_stored_at": self.tx.now,
            "media_next_at": None,
            "media_reason": cmd.note,
        }
        where = and_(_M.id == cmd.message_id, _M.media_status != STORED)
        return self._set(where, values)

    def failed(self, cmd: MediaFailed) -> bool:
        """PENDING again after `retry_in_s` (no frame: the status stays), or FAILED."""
        fence = self._fence(cmd.message_id, cmd.attempts)
        reason = cmd.reason[:2000]
        if cmd.retry_in_s is None:
            values = {"media_status": MediaStatus.FAILED.value, "media_next_at": None}
            return self._set(fence, {**values, "media_reason": reason})
        later = self.tx.now + timedelta(seconds=cmd.retry_in_s)
        stmt = update(T_MESSAGES).where(fence).values(media_reason=reason, media_next_at=later)
        return self.tx.conn.execute(stmt.returning(_M.id)).first() is not None

    def expired(self, cmd: MediaExpired) -> bool:
        """EXPIRED with the provider's reason."""
        values = {
            "media_status": MediaStatus.EXPIRED.value,
            "media_next_at": None,
            "media_reason": cmd.reason[:2000],
        }
        return self._set(self._fence(cmd.message_id, cmd.attempts), values)

    def _fence(self, message_id: int, attempts: int) -> Any:
        """The row while the claim that made `attempts` still holds it."""
        return and_(_M.id == message_id, _M.media_status == PENDING, _M.media_attempts == attempts)

    def _set(self, where: Any, values: Mapping[str, Any]) -> bool:
        """Apply `values` to the row, log its `chat:message-media`; False when nothing matched."""
        stmt = update(T_MESSAGES).where(where).values(**values)
        row = self.tx.conn.execute(stmt.returning(*_FRAME_COLUMNS)).first()
        if row is None:
            return False
        self._emit([dict(row._mapping)])
        return True

    # --- requeue ------------------------------------------------------------------------------

    def requeue(self, cmd: MediaRequeue) -> list[int]:
        """Rows of `statuses` back to PENDING, from their first attempt; their message ids."""
        conds = [
            _M.media_status.in_(sorted(s.value for s in cmd.statuses)),
            _M.type.in_(sorted(t.value for t in MEDIA_TYPES)),
        ]
        if cmd.tenant_id is not None:
            conds.append(_M.tenant_id == cmd.tenant_id)
        if cmd.session_ids is not None:
            conds.append(_M.session_id.in_(sorted(cmd.session_ids)))
        if cmd.since is not None:
            conds.append(_M.sent_at >= cmd.since)
        if cmd.until is not None:
            conds.append(_M.sent_at <= cmd.until)
        pick = select(_M.id).where(*conds).order_by(_M.sent_at.desc(), _M.id.desc())
        if cmd.limit is not None:
            pick = pick.limit(cmd.limit)
        ids = [int(r[0]) for r in self.tx.conn.execute(pick)]
        if not ids:
            return []
        values = {"media_status": PENDING, "media_next_at": None, "media_attempts": 0}
        stmt = update(T_MESSAGES).where(_M.id.in_(ids)).values(media_reason=None, **values)
        rows = [dict(r._mapping) for r in self.tx.conn.execute(stmt.returning(*_FRAME_COLUMNS))]
        self._emit(sorted(rows, key=lambda r: int(r["id"])))
        return sorted(int(r["id"]) for r in rows)

    def _emit(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            self.tx.log.emit(
                row["tenant_id"],
                MESSAGE_MEDIA,
                row["chat_id"],
                row["id"],
                **frame_data(row),
            )


_FRAME_COLUMNS = tuple(
    _M[n]
    for n in (
        "id",
        "tenant_id",
        "chat_id",
        "media_status",
        "media_reason",
        "media_attempts",
        "media_mimetype",
        "media_size",
        "media_filename",
    )
)


def frame_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """The `chat:message-media` data: the new status and what a client shows of it."""
    data: dict[str, Any] = {
        "mediaStatus": row["media_status"],
        "mediaReason": row["media_reason"],
        "mediaAttempts": row["media_attempts"],
    }
    if row["media_status"] == STORED:
        data.update(
            mediaMimetype=row["media_mimetype"],
            mediaSize=row["media_size"],
            mediaFilename=row["media_filename"],
            mediaPath=media_path(int(row["id"])),
        )
    return data
