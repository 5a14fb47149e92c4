"""What a chat list's head says, and when it calls for reading the chat.

A head is a hint, never proof of "nothing new" (issue: same-second arrivals in a quiet chat
were skipped). Evolution's `findChats` shows any row of the chat's newest second (DISTINCT ON
without a tie-breaker, evolution.md 5.3), so a message in the same second as the one we hold
can hide behind it. Two things catch it without extra requests in the common case: the
chat's unread count (a customer's new message raises it) is part of what the poller compares,
and a chat read because its head moved is read once more on the next cycle while its newest
message is younger than the overlap window (its last second may still be filling).
"""

from __future__ import annotations

from dataclasses import dataclass

from wasync.providers.base import ChatHead
from wasync.seen import Seen


@dataclass(frozen=True, slots=True)
class HeadSig:
    """What the poller compares between two looks at a chat's head."""

    last_id: str | None
    last_ack: int | None
    last_ts: float | None
    unread: int | None
    last_rev: str | None

    @classmethod
    def of(cls, head: ChatHead) -> HeadSig:
        """The signature of a head."""
        return cls(head.last_id, head.last_ack, head.last_ts, head.unread, head.last_rev)


def unchanged(before: HeadSig | None, now: HeadSig, seen: Seen) -> bool:
    """Nothing to do: the same head, or only which row of the same second it shows changed to
    another one we hold with the ack we hold (Evolution picks any row of the second)."""
    if before is None:
        return False
    if before == now:
        return True
    same_second = before.last_ts == now.last_ts and before.unread == now.unread
    if not same_second or now.last_id is None or now.last_id not in seen:
        return False
    return seen.ack_of(now.last_id) == now.last_ack and before.last_rev == now.last_rev


def head_is_enough(
    before: HeadSig | None, now: HeadSig, head: ChatHead, cursor: float | None, seen: Seen
) -> bool:
    """The head's own message carries all that changed (its ack, an edit or revoke in place):
    no need to read the chat. Never when the unread count rose: a new message may hide."""
    if before is not None and _rose(before.unread, now.unread):
        return False
    if cursor is not None and head.last_ts is not None and head.last_ts < cursor:
        return True  # an older message's ack moved (the head is not our newest)
    return head.last_id is not None and head.last_id in seen and not _rewritten(head, seen)


def _rose(before: int | None, now: int | None) -> bool:
    return before is not None and now is not None and now > before


def _rewritten(head: ChatHead, seen: Seen) -> bool:
    """The chat's last message is one we stored, now with a later time: Evolution rewrote
    its row for an edit (evolution.md 4.3). Reading the window brings the edit."""
    ts = seen.time_of(head.last_id or "")
    return ts is not None and (head.last_ts or 0) > ts + 1
