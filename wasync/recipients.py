"""Who `wasync send --to` means: a phone, a jid, or the id of a chat of the tenant.

A phone (`+55 11 98765-4321`, `5511987654321`) or a phone jid (`…@s.whatsapp.net`, `…@c.us`)
is checked with the provider, as the REST send to a phone is. A chat id (`123` or
`chat:123`), a group jid (`…@g.us`) or a LID (`…@lid`) names a chat wasync already has: the
message goes where the REST send to that chat goes, through the chat's own session unless
`--session` names another.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from wasync.outbox import Outbox, Target
from wasync.outgoing import SendRejected, parse_to
from wasync.phones import PHONE_SERVERS, split_jid
from wasync.store import models as m

# A bare number this short is a chat id: no phone with its country code has under 8 digits.
_CHAT_ID_DIGITS = 7


def chat_reference(to: str) -> tuple[str, Any] | None:
    """The chat column and value `to` names, or None when it is a phone (or a phone jid)."""
    value = to.strip()
    if value.lower().startswith("chat:"):
        value = value[5:].strip()
        if not value.isdigit():
            raise SendRejected(f"{to!r} is not a chat id (chat:<number>)")
        return "id", int(value)
    if value.isdigit() and len(value) <= _CHAT_ID_DIGITS:
        return "id", int(value)
    if "@" in value:
        user, server = split_jid(value)
        if server not in PHONE_SERVERS:
            return "jid", f"{user}@{server}"
    return None


async def resolve(outbox: Outbox, tenant: str, session: str | None, to: str) -> Target:
    """The target of `--to` for `tenant`: a known chat, or a phone checked with the provider."""
    ref = outbox.session(tenant, session)  # a bad tenant or session fails first
    found = chat_reference(to)
    if found is None:
        return await outbox.target_phone(ref, parse_to(to))
    column, value = found
    chat = await _chat(outbox, tenant, column, value)
    if chat is None:
        raise SendRejected(f"tenant {tenant!r} has no chat {to.strip()!r}")
    if session is None:
        own = outbox.registry.sessions.get(chat.session_id)
        if own is not None and own.config.enabled and own.tenant_id == tenant:
            ref = own
    return await outbox.target_chat(ref, chat)


async def _chat(outbox: Outbox, tenant: str, column: str, value: Any) -> Any:
    c = m.Chat.__table__.c  # type: ignore[attr-defined]
    q = select(c.id, c.tenant_id, c.session_id, c.kind, c.jid, c.phone)
    q = q.where(c.tenant_id == tenant, c[column] == value)
    async with outbox.store.read() as conn:
        return (await conn.execute(q)).first()
