"""Contacts: identities (LID ↔ phone), chats, and the lead + admin notifications of a new number.

A LID-only chat is merged into the phone chat once the phone is learned (never two leads for
one person). Every direct chat with a phone gets a lead; a new lead notifies the tenant's
admins unless the job says not to (history, or a number we wrote to first). Inbound and
outbound contacts go through the same code, so they log the same rows: `chat:updated`
(created), `lead:created` and `notification:new`, each with its chat id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select, update

from wasync.eventlog import CHAT_UPDATED, LEAD_CREATED, NOTIFICATION_NEW, insert_returning
from wasync.events import Address, ChatKind, Message, Reaction
from wasync.ingest.base import ChatRow, Item, TxState, group
from wasync.ingest.statements import (
    T_CHATS,
    T_IDENTITIES,
    T_LEADS,
    T_MESSAGES,
    T_NOTIFICATIONS,
    T_OUTBOX,
)
from wasync.phones import phone_jid

Pair = tuple[str, str]  # (tenant, lid) or (tenant, jid) or (tenant, phone)


class Contacts:
    """Identities, chats, leads and notifications of one transaction."""

    def __init__(self, tx: TxState) -> None:
        self.tx = tx

    def resolve(self, items: list[Item]) -> None:
        """Give every item its chat id: learn identities, find, merge or create chats, and
        make sure each direct chat has its lead."""
        self._resolve_identities(items)
        self._resolve_chats(items)

    # --- identities ---------------------------------------------------------------------------

    def _resolve_identities(self, items: list[Item]) -> None:
        """Learn LID→phone pairs, and give LID-only addresses their phone when we know it."""
        tx = self.tx
        pairs: dict[Pair, str] = {}
        for it in items:
            for addr in (it.chat, it.event.sender):
                if addr is not None and addr.lid and addr.phone:
                    pairs[(it.tenant_id, addr.lid)] = addr.phone
        cache = tx.memory.identities
        tx.learned = {k: v for k, v in pairs.items() if cache.get(k) != v}
        if tx.learned:
            self._upsert_identities(tx.learned)
        unknown = {(it.tenant_id, it.chat.lid) for it in items if it.chat.lid and not it.chat.phone}
        unknown -= pairs.keys()
        known = {k: cache[k] for k in unknown if k in cache}
        if unknown - known.keys():
            known.update(self._lookup_identities(unknown - known.keys()))
        known.update(pairs)
        for it in items:
            lid = it.chat.lid
            if lid and not it.chat.phone and (it.tenant_id, lid) in known:
                phone = known[(it.tenant_id, lid)]
                it.chat = Address(jid=phone_jid(phone), kind=it.chat.kind, phone=phone, lid=lid)
        self._reactions_in_their_targets_chat(items)

    def _reactions_in_their_targets_chat(self, items: list[Item]) -> None:
        """A reaction from a LID we cannot pair yet goes to the chat of the message it reacts
        to: WAHA's reaction payloads carry no `_data`, so no phone form (`WAMessageReaction`),
        and a LID-only chat of its own would split one conversation in two."""
        lost = [
            it
            for it in items
            if isinstance(it.event, Reaction)
            and it.chat.kind is ChatKind.DIRECT
            and it.chat.lid
            and not it.chat.phone
        ]
        if not lost:
            return
        m, c = T_MESSAGES.c, T_CHATS.c
        found: dict[tuple[int, str], Any] = {}
        for session_id, targets in group(
            {(it.event.session_id, _target(it)) for it in lost}
        ).items():
            rows = self.tx.conn.execute(
                select(m.provider_message_id, c.jid, c.phone, c.lid, c.kind)
                .join(T_CHATS, T_CHATS.c.id == m.chat_id)
                .where(m.session_id == session_id, m.provider_message_id.in_(targets))
            )
            found.update({(session_id, r.provider_message_id): r for r in rows})
        for it in lost:
            row = found.get((it.event.session_id, _target(it)))
            if (
                row is None
                or row.kind != ChatKind.DIRECT.value
                or row.lid not in (None, it.chat.lid)
            ):
                continue
            it.chat = Address(jid=row.jid, kind=ChatKind.DIRECT, phone=row.phone, lid=row.lid)

    def _upsert_identities(self, pairs: Mapping[Pair, str]) -> None:
        rows = [
            {"tenant_id": t, "lid": lid, "phone": phone, "created_at": self.tx.now}
            for (t, lid), phone in sorted(pairs.items())
        ]
        stmt = self.tx.insert(T_IDENTITIES)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "lid"], set_={"phone": stmt.excluded.phone}
        )
        self.tx.conn.execute(stmt, rows)

    def _lookup_identities(self, keys: set[Pair]) -> dict[Pair, str]:
        found: dict[Pair, str] = {}
        c = T_IDENTITIES.c
        for tenant, lids in group(keys).items():
            rows = self.tx.conn.execute(
                select(c.lid, c.phone).where(c.tenant_id == tenant, c.lid.in_(lids))
            )
            found.update({(tenant, r.lid): r.phone for r in rows})
        return found

    # --- chats --------------------------------------------------------------------------------

    def _resolve_chats(self, items: list[Item]) -> None:
        tx = self.tx
        wanted: dict[Pair, Item] = {}
        for it in items:
            wanted.setdefault((it.tenant_id, it.chat.jid), it)
        # A pair known before this batch had its LID chat merged when it was learned.
        lid_keys = {
            (t, it.chat.lid)
            for (t, _), it in wanted.items()
            if it.chat.lid and it.chat.phone and (t, it.chat.lid) in tx.learned
        }
        cached = tx.memory.chats
        for key in wanted.keys() - lid_keys:
            if key in cached:
                tx.chats[key] = cached[key]
        self._select_chats((set(wanted) | lid_keys) - tx.chats.keys())
        for key in sorted(lid_keys):
            self._merge_lid_chat(key, wanted)
        missing = sorted(k for k in wanted if k not in tx.chats)
        if missing:
            self._create_chats([wanted[k] for k in missing])
        self._ensure_leads([wanted[k] for k in sorted(wanted)])
        for it in items:
            it.chat_id = tx.chats[(it.tenant_id, it.chat.jid)].id

    def _select_chats(self, keys: set[Pair]) -> None:
        tx = self.tx
        for tenant, jids in group(keys).items():
            rows = tx.conn.execute(tx.sql.select_chats, {"tenant": tenant, "jids": jids})
            for r in rows:
                tx.chats[(r.tenant_id, r.jid)] = ChatRow(*r)

    def _merge_lid_chat(self, key: Pair, wanted: Mapping[Pair, Item]) -> None:
        """A LID-only chat becomes, or joins, the phone chat once the phone is known."""
        tx = self.tx
        lid_chat = tx.chats.pop(key, None)
        if lid_chat is None:
            return
        tx.dropped.add(key)
        it = next(i for (t, _), i in wanted.items() if t == key[0] and i.chat.lid == key[1])
        phone_key = (key[0], it.chat.jid)
        target = tx.chats.get(phone_key)
        if target is None:
            tx.conn.execute(
                update(T_CHATS)
                .where(T_CHATS.c.id == lid_chat.id)
                .values(jid=it.chat.jid, phone=it.chat.phone, lid=it.chat.lid, updated_at=tx.now)
            )
            lid_chat.jid, lid_chat.phone = it.chat.jid, it.chat.phone
            tx.chats[phone_key] = lid_chat
            tx.log.emit(key[0], CHAT_UPDATED, lid_chat.id, phone=it.chat.phone, lid=it.chat.lid)
            return
        for table in (T_MESSAGES, T_OUTBOX):
            tx.conn.execute(
                update(table).where(table.c.chat_id == lid_chat.id).values(chat_id=target.id)
            )
        tx.conn.execute(delete(T_CHATS).where(T_CHATS.c.id == lid_chat.id))
        # The surviving phone chat keeps the LID it now answers to (one person, one chat).
        tx.conn.execute(
            update(T_CHATS)
            .where(T_CHATS.c.id == target.id)
            .values(lid=it.chat.lid, updated_at=tx.now)
        )
        tx.log.emit(key[0], CHAT_UPDATED, target.id, mergedChatId=lid_chat.id, lid=it.chat.lid)

    def _create_chats(self, items: list[Item]) -> None:
        tx = self.tx
        rows = [
            {
                "tenant_id": it.tenant_id,
                "session_id": it.event.session_id,
                "kind": it.chat.kind.value,
                "jid": it.chat.jid,
                "phone": it.chat.phone if it.chat.kind is ChatKind.DIRECT else None,
                "lid": it.chat.lid,
                "name": _chat_name(it),
                "status": "OPEN",
                "unread_count": 0,
                "created_at": tx.now,
                "updated_at": tx.now,
            }
            for it in items
        ]
        c = T_CHATS.c
        stmt = tx.insert(T_CHATS).on_conflict_do_nothing()
        stmt = stmt.returning(c.id, c.tenant_id, c.jid, c.kind, c.phone, c.lead_id)
        for r in tx.conn.execute(stmt, rows):
            tx.chats[(r.tenant_id, r.jid)] = ChatRow(*r)
            tx.log.emit(r.tenant_id, CHAT_UPDATED, r.id, created=True, jid=r.jid, kind=r.kind)
        # Rows not returned were created by a concurrent writer: read them.
        self._select_chats({(it.tenant_id, it.chat.jid) for it in items} - tx.chats.keys())

    # --- leads and notifications --------------------------------------------------------------

    def _ensure_leads(self, items: list[Item]) -> None:
        """Every direct chat with a phone gets a lead; a new lead notifies the tenant's admins."""
        todo: dict[Pair, list[ChatRow]] = defaultdict(list)
        notify: dict[Pair, bool] = defaultdict(bool)
        for it in items:
            chat = self.tx.chats[(it.tenant_id, it.chat.jid)]
            if chat.kind == ChatKind.DIRECT.value and chat.phone and chat.lead_id is None:
                todo[(chat.tenant_id, chat.phone)].append(chat)
                notify[(chat.tenant_id, chat.phone)] |= it.job.notify
        if not todo:
            return
        leads = self._insert_leads(sorted(todo), todo, notify)
        for key, chats in todo.items():
            for chat in chats:
                chat.lead_id = leads[key]
        chat_ids = sorted(chat.id for chats in todo.values() for chat in chats)
        self.tx.conn.execute(self.tx.sql.link_leads, {"chat_ids": chat_ids})

    def _insert_leads(
        self,
        keys: list[Pair],
        chats: Mapping[Pair, list[ChatRow]],
        notify: Mapping[Pair, bool],
    ) -> dict[Pair, int]:
        tx = self.tx
        defaults = tx.crm.lead
        rows = [
            {
                "tenant_id": tenant,
                "first_name": _fill(defaults.first_name, phone),
                "last_name": _fill(defaults.last_name, phone),
                "email": _fill(defaults.email, phone),
                "phone": phone,
                "source": defaults.source,
                "status": defaults.status,
                "score": defaults.score,
                "created_at": tx.now,
            }
            for tenant, phone in keys
        ]
        c = T_LEADS.c
        stmt = tx.insert(T_LEADS).on_conflict_do_nothing().returning(c.id, c.tenant_id, c.phone)
        leads: dict[Pair, int] = {}
        notes: list[dict[str, Any]] = []
        for r in sorted(tx.conn.execute(stmt, rows), key=lambda r: r.id):
            key = (r.tenant_id, r.phone)
            leads[key] = r.id
            chat_id = chats[key][0].id
            tx.log.emit(r.tenant_id, LEAD_CREATED, chat_id, leadId=r.id, phone=r.phone)
            if notify[key]:
                notes += self._notification_rows(r.tenant_id, r.phone, chat_id, r.id)
        if notes:
            self._insert_notifications(notes)
        for tenant, phones in group(set(keys) - leads.keys()).items():
            found = tx.conn.execute(
                select(c.id, c.phone).where(c.tenant_id == tenant, c.phone.in_(phones))
            )
            leads.update({(tenant, r.phone): r.id for r in found})
        return leads

    def _notification_rows(
        self, tenant: str, phone: str, chat_id: int, lead_id: int
    ) -> list[dict[str, Any]]:
        texts = self.tx.crm.notification
        return [
            {
                "tenant_id": tenant,
                "user_id": user,
                "type": texts.type,
                "title": _fill(texts.title, phone, chat_id),
                "message": _fill(texts.message, phone, chat_id),
                "link": _fill(texts.link, phone, chat_id),
                "chat_id": chat_id,
                "lead_id": lead_id,
                "read": False,
                "created_at": self.tx.now,
            }
            for user in self.tx.admins.get(tenant, [])
        ]

    def _insert_notifications(self, rows: list[dict[str, Any]]) -> None:
        tx = self.tx
        ids = insert_returning(tx.conn, T_NOTIFICATIONS, rows, T_NOTIFICATIONS.c.id, pg=tx.pg)
        for row, note_id in zip(rows, ids, strict=True):
            tx.log.emit(
                row["tenant_id"],
                NOTIFICATION_NEW,
                row["chat_id"],
                notificationId=note_id,
                userId=row["user_id"],
            )


def _fill(template: str, phone: str, chat_id: int | None = None) -> str:
    return template.format(phone=phone, last4=phone[-4:], chat_id=chat_id if chat_id else "")


def _chat_name(it: Item) -> str | None:
    ev = it.event
    if isinstance(ev, Message) and not ev.from_me and it.chat.kind is ChatKind.DIRECT:
        return ev.push_name
    return None


def _target(it: Item) -> str:
    assert isinstance(it.event, Reaction)
    return it.event.target_message_id
