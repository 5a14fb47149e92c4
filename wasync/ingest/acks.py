"""The one ack rule: the order in which delivery states replace each other.

    (no ack) < PENDING < ERROR < SERVER < DEVICE < READ < PLAYED

A message's stored ack only ever moves right. ERROR stands above PENDING (a failed send, or
GOWS' `ack: null, ackName: UNKNOWN` for our own message, replaces "not sent yet", and a stale
PENDING that arrives later never hides it) and below SERVER (a message the server took after
all is not an error). Because this is one total order, merging acks is `max` by rank:
associative and commutative, so the stored ack does not depend on how updates happened to be
batched. Every path uses it: the in-batch merge, updates of stored messages, updates parked
in `pending_updates` (in Python and in the SQL that merges a parked row, `rank_sql`), echoes
merged into our sends, and a send marked failed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case

from wasync.ackrank import ACK_RANK as _RANK
from wasync.events import AckLevel


def rank(level: int | None) -> int:
    """Where `level` (an `AckLevel` value, or None for no ack) stands in the order."""
    return _RANK[None if level is None else AckLevel(level)]


def advances(current: int | None, new: int | None) -> bool:
    """True when `new` replaces the stored `current`."""
    return rank(new) > rank(current)


def furthest(a: int | None, b: int | None) -> int | None:
    """The further of two acks (None when both are None)."""
    return b if rank(b) > rank(a) else a


def rank_sql(column: Any) -> Any:
    """`rank()` as SQL over an ack column (NULL ranks lowest)."""
    whens = [(column.is_(None), 0)]
    whens += [(column == int(level), r) for level, r in _RANK.items() if level is not None]
    return case(*whens, else_=0)
