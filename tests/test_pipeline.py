"""Pipeline.ingest(): dedupe, leads, notifications, acks, identities, cursors, on both backends."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from tests.conftest import Recorder
from tests.factories import T0, ack, msg
from wasync.config import Settings
from wasync.events import AckLevel, Edit, Media, Reaction, Revoke, SessionStatus
from wasync.phones import address
from wasync.pipeline import CursorUpdate, Pipeline
from wasync.registry import Registry
from wasync.store import Store
from wasync.store import models as m

PHONE = "5531988887777"
JID13 = f"{PHONE}@s.whatsapp.net"
JID12 = "553188887777@s.whatsapp.net"
LID = "76201477542116@lid"


async def count(store: Store, model: type, **where: object) -> int:
    """Rows of `model` matching `where`."""
    table = model.__table__  # type: ignore[attr-defined]
    stmt = select(func.count()).select_from(table)
    for key, value in where.items():
        stmt = stmt.where(table.c[key] == value)
    async with store.read() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def scalar(store: Store, sql: str, **params: object) -> object:
    """One value from raw SQL."""
    async with store.read() as conn:
        return (await conn.execute(text(sql), params)).scalar()


def sid(registry: Registry, tenant: str = "acme", name: str = "default") -> int:
    """Session id of a configured session."""
    ref = registry.get(tenant, name)
    assert ref is not None
    return ref.id


async def test_same_message_twice_is_one_row(pipeline: Pipeline, store: Store, registry: Registry):
    """Ingesting one message twice stores it once and reports the second as a duplicate."""
    s = sid(registry)
    first = await pipeline.ingest([msg(s, "ABC", JID13)], source="poll")
    second = await pipeline.ingest([msg(s, "ABC", JID13)], source="webhook")
    assert (first.new, first.duplicate) == (1, 0)
    assert (second.new, second.duplicate) == (0, 1)
    assert await count(store, m.Message) == 1


async def test_concurrent_tasks_store_one_row(pipeline: Pipeline, store: Store, registry: Registry):
    """Twenty tasks ingesting the same message at once leave exactly one row."""
    s = sid(registry)
    results = await asyncio.gather(
        *(pipeline.ingest([msg(s, "RACE", JID13)], source="webhook") for _ in range(20))
    )
    assert sum(r.new for r in results) == 1
    assert sum(r.duplicate for r in results) == 19
    assert await count(store, m.Message) == 1


async def test_lid_and_phone_forms_are_one_row(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """The same stanza id under a LID chat, a 12-digit and a 13-digit phone jid is one message."""
    s = sid(registry)
    await pipeline.ingest([msg(s, "SAME", LID, JID12)], source="webhook")
    await pipeline.ingest([msg(s, "SAME", JID13)], source="poll")
    await pipeline.ingest([msg(s, "SAME", LID)], source="poll")
    assert await count(store, m.Message) == 1
    assert await count(store, m.Chat) == 1
    assert await count(store, m.Lead, phone=PHONE) == 1


async def test_lid_only_chat_merges_when_phone_learned(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """A chat first seen only by LID joins the phone chat once a message pairs LID and phone."""
    s = sid(registry)
    await pipeline.ingest([msg(s, "L1", LID)], source="webhook")
    assert await count(store, m.Lead) == 0  # no phone yet, no lead
    await pipeline.ingest([msg(s, "P1", JID13)], source="webhook")
    await pipeline.ingest([msg(s, "L2", LID, JID12)], source="webhook")
    assert await count(store, m.Chat) == 1
    assert await count(store, m.Lead) == 1
    chat_id = await scalar(store, "SELECT id FROM chats WHERE phone = :p", p=PHONE)
    assert await count(store, m.Message, chat_id=chat_id) == 3
    assert await count(store, m.Identity, lid=LID, phone=PHONE) == 1
    await pipeline.ingest([msg(s, "L3", LID)], source="webhook")  # now resolved on arrival
    assert await count(store, m.Message, chat_id=chat_id) == 4


async def test_a_reaction_from_an_unpaired_lid_sits_in_its_targets_chat(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """We wrote to a phone; the customer reacts from their LID before any message paired the
    two (WAHA's reaction payloads carry no phone form): the reaction joins our message's
    chat, no LID-only chat is made. A LID-only reaction to a message we do not hold, or
    one held in a chat under another LID, keeps its own chat."""
    s = sid(registry)
    await pipeline.ingest([msg(s, "OURS", JID13, from_me=True)], source="webhook")
    reaction = Reaction(
        session_id=s,
        provider_message_id="R1",
        target_message_id="OURS",
        emoji="👍",
        chat=address(LID),
        from_me=False,
        timestamp=T0,
    )
    assert (await pipeline.ingest([reaction], source="webhook")).new == 1
    assert await count(store, m.Chat) == 1
    jid_of = "SELECT c.jid FROM messages m JOIN chats c ON c.id = m.chat_id"
    jid_of += " WHERE m.provider_message_id = :p"
    assert await scalar(store, jid_of, p="R1") == JID13
    stray = replace(reaction, provider_message_id="R2", target_message_id="UNKNOWN")
    await pipeline.ingest([stray], source="webhook")
    assert await scalar(store, jid_of, p="R2") == LID
    other = "99999999999999@lid"
    await pipeline.ingest([msg(s, "THEIRS", other, "5531977776666@s.whatsapp.net")], source="poll")
    elsewhere = replace(reaction, provider_message_id="R3", target_message_id="THEIRS")
    await pipeline.ingest([elsewhere], source="webhook")
    assert await scalar(store, jid_of, p="R3") == LID


async def test_merged_chat_keeps_the_lid(pipeline: Pipeline, store: Store, registry: Registry):
    """When a LID-only chat joins an existing phone chat, the surviving chat records the LID."""
    s = sid(registry)
    await pipeline.ingest([msg(s, "L1", LID)], source="webhook")
    await pipeline.ingest([msg(s, "P1", JID13)], source="webhook")
    assert await scalar(store, "SELECT lid FROM chats WHERE phone = :p", p=PHONE) is None
    await pipeline.ingest([msg(s, "L2", LID, JID12)], source="webhook")
    assert await count(store, m.Chat) == 1
    assert await scalar(store, "SELECT lid FROM chats WHERE phone = :p", p=PHONE) == LID


async def test_new_number_creates_lead_chat_and_notifications(
    pipeline: Pipeline, store: Store, registry: Registry, recorder: Recorder
):
    """A new number gets the CRM's default lead, one chat, and one notification per admin."""
    s = sid(registry)
    await pipeline.ingest([msg(s, "N1", JID12)], source="poll")
    async with store.read() as conn:
        lead = (await conn.execute(select(m.Lead.__table__))).one()  # type: ignore[attr-defined]
        chat = (await conn.execute(select(m.Chat.__table__))).one()  # type: ignore[attr-defined]
        notes = (await conn.execute(select(m.Notification.__table__))).all()  # type: ignore[attr-defined]
    assert (lead.first_name, lead.last_name, lead.email) == (
        "Lead",
        "7777",
        f"{PHONE}@whatsapp.com",
    )
    assert (lead.phone, lead.source, lead.status, lead.score) == (
        PHONE,
        "WHATSAPP_CAMPAIGN",
        "NEW",
        50,
    )
    assert (chat.phone, chat.jid, chat.lead_id, chat.status) == (PHONE, JID13, lead.id, "OPEN")
    assert sorted(n.user_id for n in notes) == ["u1", "u2"]
    assert {n.title for n in notes} == {f"Nova mensagem de {PHONE}"}
    assert {n.message for n in notes} == {"Lead criado automaticamente"}
    assert {n.link for n in notes} == {f"/atendimento?chat={chat.id}"}
    types = [e.type for e in recorder.events]
    assert types.count("lead:created") == 1
    assert types.count("notification:new") == 2
    assert types.count("chat:new-message") == 1


async def test_two_concurrent_first_messages_one_lead(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """Two first messages from one new number at once make one lead, chat and notification each."""
    s = sid(registry)
    await asyncio.gather(
        pipeline.ingest([msg(s, "F1", JID13)], source="webhook"),
        pipeline.ingest([msg(s, "F2", JID12)], source="poll"),
    )
    assert await count(store, m.Message) == 2
    assert await count(store, m.Chat) == 1
    assert await count(store, m.Lead) == 1
    assert await count(store, m.Notification, user_id="u1") == 1
    assert await count(store, m.Notification, user_id="u2") == 1


async def test_two_writers_on_one_database_make_one_lead(
    store: Store, settings: Settings, registry: Registry
):
    """Two pipelines (as two processes would) racing on one new number still make one lead."""
    s = sid(registry)
    admins = {t.id: t.admins for t in settings.tenants}
    url = store.url.render_as_string(hide_password=False)
    async with (
        Store(url) as other,
        Pipeline(store, admins=admins) as a,
        Pipeline(other, admins=admins) as b,
    ):
        for i in range(10):
            phone = f"55319888877{i:02d}@s.whatsapp.net"
            await asyncio.gather(
                a.ingest([msg(s, f"A{i}", phone)], source="webhook"),
                b.ingest([msg(s, f"B{i}", phone)], source="poll"),
            )
    assert await count(store, m.Lead) == 10
    assert await count(store, m.Chat) == 10
    assert await count(store, m.Notification) == 20


async def test_acks_out_of_order_end_at_read(pipeline: Pipeline, store: Store, registry: Registry):
    """READ, then DEVICE, then the message itself: the message ends at READ."""
    s = sid(registry)
    await pipeline.ingest([ack(s, "OUT", AckLevel.READ)], source="webhook")
    await pipeline.ingest([ack(s, "OUT", AckLevel.DEVICE)], source="webhook")
    await pipeline.ingest([msg(s, "OUT", JID13, from_me=True, ack=AckLevel.SERVER)], source="poll")
    assert await scalar(store, "SELECT ack FROM messages") == AckLevel.READ
    assert await count(store, m.PendingUpdate) == 0
    await pipeline.ingest([ack(s, "OUT", AckLevel.DEVICE)], source="webhook")
    assert await scalar(store, "SELECT ack FROM messages") == AckLevel.READ
    await pipeline.ingest([ack(s, "OUT", AckLevel.PLAYED)], source="webhook")
    assert await scalar(store, "SELECT ack FROM messages") == AckLevel.PLAYED


async def test_poll_duplicate_carries_ack_forward(
    pipeline: Pipeline, store: Store, registry: Registry, recorder: Recorder
):
    """A poll that sees a known message with a higher ack moves the ack and emits one event."""
    s = sid(registry)
    await pipeline.ingest([msg(s, "X", JID13, from_me=True, ack=AckLevel.SERVER)], source="send")
    await pipeline.ingest([msg(s, "X", JID13, from_me=True, ack=AckLevel.READ)], source="poll")
    await pipeline.ingest([msg(s, "X", JID13, from_me=True, ack=AckLevel.READ)], source="poll")
    assert await scalar(store, "SELECT ack FROM messages") == AckLevel.READ
    assert [e.data["ack"] for e in recorder.events if e.type == "chat:message-ack"] == [3]


async def test_groups_make_no_lead_and_broadcasts_are_dropped(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """Group messages make a group chat, no lead; status@broadcast and newsletters are dropped."""
    s = sid(registry)
    result = await pipeline.ingest(
        [
            msg(s, "G1", "120363000000000000@g.us", sender="5511999990000@s.whatsapp.net"),
            msg(s, "B1", "status@broadcast"),
            msg(s, "N1", "123123@newsletter"),
        ],
        source="poll",
    )
    assert (result.new, result.ignored) == (1, 2)
    assert await count(store, m.Lead) == 0
    assert await count(store, m.Chat, kind="group") == 1
    assert await scalar(store, "SELECT sender_phone FROM messages") == "5511999990000"


async def test_edit_and_revoke_apply_even_before_the_message(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """An edit and a revoke that arrive before their messages are applied when those land."""
    s = sid(registry)
    await pipeline.ingest(
        [
            Edit(session_id=s, provider_message_id="E1", body="corrigido"),
            Revoke(session_id=s, provider_message_id="R1"),
        ],
        source="webhook",
    )
    await pipeline.ingest([msg(s, "E1", JID13, body="errado"), msg(s, "R1", JID13)], source="poll")
    assert (
        await scalar(store, "SELECT body FROM messages WHERE provider_message_id='E1'")
        == "corrigido"
    )
    assert await scalar(store, "SELECT revoked FROM messages WHERE provider_message_id='R1'") in (
        1,
        True,
    )
    assert await count(store, m.PendingUpdate) == 0


async def test_cursor_moves_forward_only(pipeline: Pipeline, store: Store, registry: Registry):
    """Cursors advance with the ingest and never move back."""
    s = sid(registry)
    await pipeline.ingest(
        [msg(s, "C1", JID13)], source="poll", cursor=CursorUpdate(session_id=s, ts=200)
    )
    await pipeline.ingest([], source="poll", cursor=CursorUpdate(session_id=s, ts=100))
    assert await scalar(store, "SELECT ts FROM cursors WHERE scope = '*'") == 200


async def test_session_status_changes_are_events(
    pipeline: Pipeline, registry: Registry, recorder: Recorder, store: Store
):
    """A session status is stored; only changes become `session:status` events."""
    s = sid(registry)
    for status in ["WORKING", "WORKING", "SCAN_QR_CODE"]:
        await pipeline.ingest([SessionStatus(session_id=s, status=status)], source="poll")
    assert [e.data["status"] for e in recorder.events] == ["WORKING", "SCAN_QR_CODE"]
    assert await scalar(store, "SELECT status FROM sessions WHERE id = :s", s=s) == "SCAN_QR_CODE"


async def test_events_are_published_after_commit_in_id_order(
    pipeline: Pipeline, registry: Registry, recorder: Recorder, store: Store
):
    """Published ids increase, match the log, and each message has one new-message event."""
    s = sid(registry)
    await asyncio.gather(
        *(pipeline.ingest([msg(s, f"M{i}", JID13, at=i)], source="poll") for i in range(30))
    )
    ids = [e.id for e in recorder.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    async with store.read() as conn:
        logged = [r.id for r in await conn.execute(text("SELECT id FROM events ORDER BY id"))]
    assert logged == ids
    assert sum(e.type == "chat:new-message" for e in recorder.events) == 30


async def test_tenants_are_isolated(pipeline: Pipeline, store: Store, registry: Registry):
    """One phone writing to two tenants makes a lead in each, notifying each tenant's admins."""
    await pipeline.ingest([msg(sid(registry, "acme"), "T1", JID13)], source="poll")
    await pipeline.ingest([msg(sid(registry, "globex"), "T1", JID13)], source="poll")
    assert await count(store, m.Lead) == 2
    assert await count(store, m.Notification, tenant_id="globex", user_id="u3") == 1
    assert await count(store, m.Notification, tenant_id="acme") == 2


async def test_bad_job_fails_alone_and_writes_nothing(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """A job the database rejects fails by itself; its batch neighbours still commit."""
    s = sid(registry)
    bad = msg(s, "BAD", "5511977776666@s.whatsapp.net", media=Media(size=2**70))
    results = await asyncio.gather(
        pipeline.ingest([msg(s, "GOOD", JID13)], source="webhook"),
        pipeline.ingest([bad], source="webhook"),
        return_exceptions=True,
    )
    assert not isinstance(results[0], BaseException) and results[0].new == 1
    assert isinstance(results[1], BaseException)
    assert await count(store, m.Message) == 1
    assert await count(store, m.Chat) == 1  # nothing half-written for the bad one
    assert await count(store, m.Lead) == 1


async def test_unknown_session_is_rejected(pipeline: Pipeline, store: Store):
    """An event for a session id that does not exist is counted as rejected, not stored."""
    result = await pipeline.ingest([msg(99999, "U1", JID13)], source="replay")
    assert result.rejected == 1
    assert await count(store, m.Message) == 0


@pytest.mark.parametrize("lookback", [0])
async def test_ingest_after_close_raises(store: Store, lookback: int):
    """Using a pipeline outside its context is a clear error."""
    p = Pipeline(store)
    with pytest.raises(RuntimeError, match="not running"):
        await p.ingest([], source="poll")


async def test_summary_ingest_announces_per_chat_and_leaves_unread_alone(
    pipeline: Pipeline, store: Store, registry: Registry, recorder: Recorder
):
    """History ingested with realtime='summary' gives one chat:updated per chat, no
    new-message events, and does not count as unread."""
    s = sid(registry)
    history = [msg(s, f"H{i}", JID13, at=i) for i in range(5)]
    await pipeline.ingest(history, source="backfill", realtime="summary", notify=False)
    types = [e.type for e in recorder.events]
    assert "chat:new-message" not in types and "notification:new" not in types
    assert [e.data.get("backfilled") for e in recorder.events if "backfilled" in e.data] == [5]
    assert await scalar(store, "SELECT unread_count FROM chats") == 0
    await pipeline.ingest([msg(s, "LIVE", JID13, at=10)], source="poll")
    assert await scalar(store, "SELECT unread_count FROM chats") == 1


async def test_chat_counters_follow_new_messages(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """A chat's last message time only moves forward, unread counts inbound messages only
    (duplicates and history never), and the session that last received an inbound message
    becomes the chat's session."""
    waha, evo = sid(registry), sid(registry, name="evo")

    async def chat() -> tuple[object, ...]:
        async with store.read() as conn:
            row = (await conn.execute(select(m.Chat.__table__))).one()  # type: ignore[attr-defined]
        return (row.last_message_at.replace(tzinfo=None), row.unread_count, row.session_id)

    batch = [
        msg(waha, "A1", JID13, at=30),
        msg(waha, "A2", JID13, at=10),
        msg(waha, "A3", JID13, at=20, from_me=True),
    ]
    await pipeline.ingest(batch, source="poll")
    assert await chat() == (T0.replace(tzinfo=None) + timedelta(seconds=30), 2, waha)

    # An older message, a duplicate and an outgoing one: time stays, unread +1 only.
    await pipeline.ingest(
        [
            msg(waha, "A0", JID13, at=5),
            msg(waha, "A1", JID13, at=30),
            msg(waha, "B", JID13, at=40, from_me=True),
        ],
        source="poll",
    )
    assert await chat() == (T0.replace(tzinfo=None) + timedelta(seconds=40), 3, waha)

    # An outgoing message on the other session does not move the chat; an inbound one does.
    await pipeline.ingest([msg(evo, "E1", JID13, at=50, from_me=True)], source="poll")
    assert (await chat())[2] == waha
    await pipeline.ingest([msg(evo, "E2", JID13, at=45)], source="webhook")
    assert await chat() == (T0.replace(tzinfo=None) + timedelta(seconds=50), 4, evo)

    # History is not unread news, but still moves the time.
    await pipeline.ingest(
        [msg(waha, "H1", JID13, at=60)], source="backfill", realtime="summary", notify=False
    )
    assert await chat() == (T0.replace(tzinfo=None) + timedelta(seconds=60), 4, waha)
