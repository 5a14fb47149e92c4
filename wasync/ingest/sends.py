"""Our sends: queued (outbox row + outbound message), accepted (adopt the provider's id),
failed (ack ERROR).

A send's chat, lead, placeholder message and events are written here, by the same rooms as an
inbound message: a phone we write to first gets its chat and lead through `Contacts` (so its
`lead:created` carries the chat id and reaches only who may see that chat), the message row
through `message_row`, its acks through `Updates` and the one ack rule. The outbox row moves
with them in the same transaction; outcomes are fenced on the claim's `attempts`, so a
sender whose lease was taken over cannot overwrite the new owner's work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update

from wasync.eventlog import CHAT_UPDATED, NEW_MESSAGE
from wasync.events import (
    AckLevel,
    Address,
    ChatKind,
    ClaimRef,
    Message,
    OutboxStatus,
    SendAccepted,
    SendFailed,
    SendQueued,
)
from wasync.ingest.base import Item, Job, TxState
from wasync.ingest.contacts import Contacts
from wasync.ingest.messages import Messages, message_row
from wasync.ingest.statements import T_MESSAGES, T_OUTBOX
from wasync.ingest.updates import Updates
from wasync.phones import phone_jid

PLACEHOLDER = "wasync-"  # provider_message_id of a message row until the provider names it
OUTBOX_VIEW = tuple(
    T_OUTBOX.c[n]
    for n in (
        "id",
        "tenant_id",
        "session_id",
        "chat_id",
        "message_id",
        "to_jid",
        "kind",
        "status",
        "attempts",
        "provider_message_id",
        "last_error",
        "idempotency_key",
        "created_at",
    )
)
Queued = tuple[Mapping[Any, Any], bool]  # an outbox row (OUTBOX_VIEW) and whether it is new


def by_key(tenant_id: str, key: str) -> Any:
    """The outbox row of a tenant's idempotency key."""
    o = T_OUTBOX.c
    return select(*OUTBOX_VIEW).where(o.tenant_id == tenant_id, o.idempotency_key == key)


class Sends:
    """The send commands of one transaction."""

    def __init__(
        self, tx: TxState, contacts: Contacts, messages: Messages, updates: Updates
    ) -> None:
        self.tx, self.contacts, self.messages, self.updates = tx, contacts, messages, updates

    def run(self, job: Job, command: SendQueued | SendAccepted | SendFailed) -> Any:
        """Carry out one command; see each method for its answer."""
        if isinstance(command, SendQueued):
            return self.queue(job, command)
        if isinstance(command, SendAccepted):
            return self.accept(command)
        return self.fail(command)

    # --- queued -------------------------------------------------------------------------------

    def queue(self, job: Job, cmd: SendQueued) -> Queued:
        """Write the outbox row, the outbound message and its event; an idempotency key used
        before (or a moment ago, by a concurrent writer) gives the first row back."""
        conn = self.tx.conn
        if cmd.idempotency_key is not None:
            found = conn.execute(by_key(cmd.tenant_id, cmd.idempotency_key)).first()
            if found is not None:
                return found._mapping, False
        item = self._item(job, cmd)
        outbox_id = self._outbox_row(cmd, item.chat_id)
        if outbox_id is None:  # the same key won a race a moment ago
            assert cmd.idempotency_key is not None
            return conn.execute(by_key(cmd.tenant_id, cmd.idempotency_key)).one()._mapping, False
        event = item.event
        assert isinstance(event, Message)
        pmid, extra = f"{PLACEHOLDER}{outbox_id}", {"outboxId": outbox_id}
        item.event = replace(event, provider_message_id=pmid, extra=extra)
        stmt = T_MESSAGES.insert().values(**message_row(item, self.tx)).returning(T_MESSAGES.c.id)
        message_id = int(conn.execute(stmt).scalar_one())
        o = T_OUTBOX.c
        conn.execute(update(T_OUTBOX).where(o.id == outbox_id).values(message_id=message_id))
        self.messages.bump_chats([item])
        self.tx.log.emit(cmd.tenant_id, NEW_MESSAGE, item.chat_id, message_id, outboxId=outbox_id)
        row = conn.execute(select(*OUTBOX_VIEW).where(o.id == outbox_id)).one()
        return row._mapping, True

    def _item(self, job: Job, cmd: SendQueued) -> Item:
        """The outbound message as an item in its chat (the phone's chat, made when new)."""
        if cmd.chat_id is None:
            assert cmd.phone is not None
            chat = Address(jid=phone_jid(cmd.phone), kind=ChatKind.DIRECT, phone=cmd.phone)
        else:
            chat = Address(jid=cmd.to_jid)
        message = Message(
            session_id=cmd.session_id,
            provider_message_id="",
            chat=chat,
            from_me=True,
            type=cmd.type,
            timestamp=self.tx.now,
            body=cmd.body,
            ack=AckLevel.PENDING,
            media=cmd.media,
        )
        item = Item(job=job, event=message, tenant_id=cmd.tenant_id, chat=chat)
        if cmd.chat_id is None:
            self.contacts.resolve([item])
        else:
            item.chat_id = cmd.chat_id
        return item

    def _outbox_row(self, cmd: SendQueued, chat_id: int) -> int | None:
        now = self.tx.now
        values = {
            "tenant_id": cmd.tenant_id,
            "session_id": cmd.session_id,
            "chat_id": chat_id,
            "idempotency_key": cmd.idempotency_key,
            "to_jid": cmd.to_jid,
            "kind": cmd.kind,
            "payload": dict(cmd.payload),
            "status": OutboxStatus.QUEUED.value,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        stmt = self.tx.insert(T_OUTBOX).values(**values)
        stmt = stmt.on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
        found = self.tx.conn.execute(stmt.returning(T_OUTBOX.c.id)).scalar_one_or_none()
        return int(found) if found is not None else None

    # --- outcomes -----------------------------------------------------------------------------

    def _settle(self, claim: ClaimRef, **values: Any) -> bool:
        """Move a row this claim still holds out of SENDING; False when it was taken over."""
        o = T_OUTBOX.c
        held = (o.id == claim.outbox_id, o.status == OutboxStatus.SENDING)
        stmt = (
            update(T_OUTBOX)
            .where(*held, o.attempts == claim.attempts)
            .values(next_attempt_at=None, updated_at=self.tx.now, **values)
            .returning(o.id)
        )
        return self.tx.conn.execute(stmt).first() is not None

    def accept(self, cmd: SendAccepted) -> bool:
        """SENT with the provider's id, given to our message row: an echo ingested before we
        knew the id is merged into it (our row stays: clients and the outbox point at it),
        and the updates parked for that id are applied. False when the claim was lost."""
        claim, pmid = cmd.claim, cmd.provider_message_id
        if not self._settle(claim, status=OutboxStatus.SENT.value, provider_message_id=pmid):
            return False
        mine = claim.message_id
        conn, mc = self.tx.conn, T_MESSAGES.c
        if mine is None or conn.execute(select(mc.id).where(mc.id == mine)).first() is None:
            return True
        key = (claim.session_id, pmid)
        echo = conn.execute(
            select(mc.id, mc.ack).where(
                mc.session_id == claim.session_id, mc.provider_message_id == pmid, mc.id != mine
            )
        ).first()
        if echo is not None:
            conn.execute(delete(T_MESSAGES).where(mc.id == echo.id))
            self.tx.log.emit(
                claim.tenant_id,
                CHAT_UPDATED,
                claim.chat_id,
                mine,
                mergedMessageId=echo.id,
                messageId=mine,
            )
            self.updates.ack(key, echo.ack)
        values: dict[str, Any] = {"provider_message_id": pmid}
        if cmd.timestamp is not None:
            values["sent_at"] = datetime.fromtimestamp(cmd.timestamp, UTC)
        conn.execute(update(T_MESSAGES).where(mc.id == mine).values(**values))
        self.updates.drain([key])
        return True

    def fail(self, cmd: SendFailed) -> bool:
        """FAILED, and the message's ack ERROR (by the one rule: it replaces only no ack or
        PENDING). False when the claim was lost."""
        claim, failed = cmd.claim, OutboxStatus.FAILED.value
        if not self._settle(claim, status=failed, last_error=cmd.error[:2000]):
            return False
        if claim.message_id is None:
            return True
        mc = T_MESSAGES.c
        q = select(mc.session_id, mc.provider_message_id).where(mc.id == claim.message_id)
        row = self.tx.conn.execute(q).first()
        if row is not None:
            key, error = (row.session_id, row.provider_message_id), cmd.error[:500]
            self.updates.ack(key, AckLevel.ERROR, error=error, outboxId=claim.outbox_id)
        return True
