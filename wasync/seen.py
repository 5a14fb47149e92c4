"""`Seen`: what one poller has already handed to the pipeline, so rows read again (the overlap
window, a chat read once more, the ack check) are not sent again unchanged.

Bounded (least recently seen first out) and in memory only: after a restart everything is
sent once more, and ingest's unique keys make that harmless. A message is remembered with
its ack and time; an edit with its text, a revoke, a poll voter with the options chosen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from wasync.events import Ack, Edit, Event, Message, PollVote, Reaction, Revoke, Unparsed

SEEN_CAPACITY = 20_000


class Seen:
    """The events one poller has ingested, by what makes them the same event again."""

    def __init__(self, capacity: int = SEEN_CAPACITY) -> None:
        self.capacity = capacity
        self._messages: OrderedDict[str, tuple[int | None, float | None]] = OrderedDict()
        self._updates: OrderedDict[Hashable, object] = OrderedDict()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._messages

    def ack_of(self, message_id: str) -> int | None:
        """The ack the message had when last seen."""
        seen = self._messages.get(message_id)
        return seen[0] if seen else None

    def time_of(self, message_id: str) -> float | None:
        """The time the message had when last seen (Evolution moves it on an edit)."""
        seen = self._messages.get(message_id)
        return seen[1] if seen else None

    def known(self, ev: Event) -> bool:
        """True when `ev` says nothing this poller has not already ingested."""
        if isinstance(ev, Message | Reaction | Ack):
            seen = self._messages.get(ev.provider_message_id)
            return seen is not None and seen[0] == _ack(ev)
        key = _update_key(ev)
        return key is not None and key in self._updates and self._updates[key] == _value(ev)

    def remember(self, ev: Event) -> None:
        """Note that `ev` was ingested (a message's time may have moved: an Evolution edit)."""
        if isinstance(ev, Message | Reaction | Ack):
            key = ev.provider_message_id
            stamp = ev.timestamp if isinstance(ev, Message | Reaction) else None
            ts = stamp.timestamp() if stamp is not None else self.time_of(key)
            _put(self._messages, key, (_ack(ev), ts), self.capacity)
            return
        update = _update_key(ev)
        if update is not None:
            _put(self._updates, update, _value(ev), self.capacity)


def _ack(ev: Message | Reaction | Ack) -> int | None:
    ack = ev.ack if isinstance(ev, Message | Ack) else None
    return int(ack) if ack is not None else None


def _update_key(ev: Event) -> Hashable | None:
    if isinstance(ev, Edit):
        return ("edit", ev.provider_message_id)
    if isinstance(ev, Revoke):
        return ("revoke", ev.provider_message_id)
    if isinstance(ev, PollVote):
        return ("vote", ev.provider_message_id, ev.voter)
    if isinstance(ev, Unparsed):  # kept once: read again, it is nothing new
        return ("unparsed", ev.provider_message_id, ev.reason)
    return None


def _value(ev: Event) -> object:
    if isinstance(ev, Edit):
        return ev.body
    if isinstance(ev, PollVote):
        return ev.options
    return True


def _put(store: OrderedDict[Any, Any], key: Hashable, value: object, capacity: int) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > capacity:
        store.popitem(last=False)
