"""Polls: votes applied as updates of the poll message, never stored as messages of their own.

A poll is a `messages` row of type `poll` whose `extra["poll"]` holds its `options` (and how
many one may choose, `selectable`); a `PollVote` event sets `extra["poll"]["votes"][voter]`
to the options the voter chose now (WhatsApp sends each voter's whole current choice, so the
last vote replaces the earlier ones; no options takes the vote back) and logs one
`chat:poll-vote` with the tally. A vote that repeats what is stored changes nothing and is
not announced again; a vote for a poll we do not hold is counted as ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, select, update

from wasync.eventlog import POLL_VOTE
from wasync.events import MessageType, PollVote
from wasync.ingest.base import Key, TxState, group
from wasync.ingest.statements import T_MESSAGES

# A stored poll as votes see it: id, tenant, chat id, type, extra.
_Poll = tuple[int, str, int, str, dict[str, Any]]


class Polls:
    """The poll votes of one transaction."""

    def __init__(self, tx: TxState) -> None:
        self.tx = tx

    def apply(self) -> None:
        """Apply the jobs' votes, in order, to the polls they name."""
        votes = [
            (job, ev)
            for job in self.tx.jobs
            for ev in job.events
            if isinstance(ev, PollVote) and self.tx.tenant(job, ev.session_id) is not None
        ]
        if not votes:
            return
        polls = self._polls({(ev.session_id, ev.provider_message_id) for _, ev in votes})
        changed: dict[Key, _Poll] = {}
        for job, ev in votes:
            key = (ev.session_id, ev.provider_message_id)
            poll = changed.get(key) or polls.get(key)
            if poll is None or poll[3] != MessageType.POLL.value:
                job.result.ignored += 1
                continue
            voted = _with_vote(poll[4], ev)
            if voted is not None:
                changed[key] = (*poll[:4], voted)
                self._announce(poll, voted, ev)
        self._store(changed.values())

    def _polls(self, keys: set[Key]) -> dict[Key, _Poll]:
        c, found = T_MESSAGES.c, {}
        for session_id, ids in group(keys).items():
            rows = self.tx.conn.execute(
                select(c.id, c.provider_message_id, c.tenant_id, c.chat_id, c.type, c.extra).where(
                    c.session_id == session_id, c.provider_message_id.in_(ids)
                )
            )
            for r in rows:
                extra = dict(r.extra) if isinstance(r.extra, Mapping) else {}
                poll = (r.id, r.tenant_id, r.chat_id, r.type, extra)
                found[(session_id, r.provider_message_id)] = poll
        return found

    def _announce(self, poll: _Poll, extra: Mapping[str, Any], ev: PollVote) -> None:
        votes = extra["poll"]["votes"]
        tally = {option: 0 for option in extra["poll"].get("options") or []}
        for chosen in votes.values():
            for option in chosen:
                tally[option] = tally.get(option, 0) + 1
        msg_id, tenant, chat_id = poll[0], poll[1], poll[2]
        self.tx.log.emit(
            tenant,
            POLL_VOTE,
            chat_id,
            msg_id,
            voter=ev.voter,
            options=list(ev.options),
            tally=tally,
        )

    def _store(self, polls: Any) -> None:
        rows = [{"b_id": p[0], "b_extra": p[4]} for p in polls]
        if rows:
            c = T_MESSAGES.c
            stmt = update(T_MESSAGES).where(c.id == bindparam("b_id"))
            self.tx.conn.execute(stmt.values(extra=bindparam("b_extra", type_=c.extra.type)), rows)


def _with_vote(extra: Mapping[str, Any], ev: PollVote) -> dict[str, Any] | None:
    """`extra` with the vote applied, or None when it already says so."""
    poll = dict(extra.get("poll") or {})
    votes = dict(poll.get("votes") or {})
    chosen = list(ev.options)
    if votes.get(ev.voter, []) == chosen:
        return None
    if chosen:
        votes[ev.voter] = chosen
    else:
        votes.pop(ev.voter, None)
    poll["votes"] = votes
    return {**extra, "poll": poll}
