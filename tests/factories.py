"""Small builders for wasync events in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from wasync.events import Ack, AckLevel, Address, ChatKind, Media, Message, MessageType
from wasync.phones import address

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def msg(
    session_id: int,
    pmid: str,
    *jids: str,
    from_me: bool = False,
    body: str | None = "oi",
    at: int = 0,
    ack: AckLevel | None = None,
    type_: MessageType = MessageType.TEXT,
    media: Media | None = None,
    sender: str | None = None,
) -> Message:
    """A message in the chat given by `jids` (phone jid, LID, group...), `at` seconds after T0."""
    chat = address(*jids)
    assert chat is not None
    return Message(
        session_id=session_id,
        provider_message_id=pmid,
        chat=chat,
        from_me=from_me,
        type=type_,
        body=body,
        timestamp=T0 + timedelta(seconds=at),
        ack=ack,
        media=media,
        sender=address(sender) if sender else None,
        push_name="Cliente",
        raw={"id": pmid},
    )


def ack(session_id: int, pmid: str, level: AckLevel) -> Ack:
    """An ack for `pmid`."""
    return Ack(session_id=session_id, provider_message_id=pmid, ack=level)


def group(jid: str) -> Address:
    """A group address."""
    return Address(jid=jid, kind=ChatKind.GROUP)
