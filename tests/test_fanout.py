"""The fan-out's shortcuts never change what a client gets: clients grouped by scope key get
exactly their own scope (a USER only its chats), and a frame written eagerly by the hub keeps
id order, the bounded backlog and the 4008 close when a socket must wait."""

from __future__ import annotations

import asyncio
import random
from collections.abc import MutableMapping
from typing import Any

from sqlalchemy import event

from tests.factories import msg
from tests.test_realtime import (
    PRINCIPALS,
    _assigned_message,
    _random_actions,
    eventually,
    expected_ids,
    is_status,
    log_rows,
    node,
    open_ws,
    phone_jid,
    read_until,
    sentinel,
    token,
)
from wasync.principal import Principal
from wasync.wsclient import CLOSE_LAGGING, CLOSE_SEND_FAILED, Client, scope_key

ADMIN = Principal(tenant_id="acme", user_id="u1", role="ADMIN")


async def test_clients_sharing_a_scope_key_each_get_exactly_their_scope(db_url: str):
    """Three clients per principal (so every key is a group of several), random changes: each
    client gets exactly the rows the predicate allows its principal, in order, once; a USER
    whose id is also an admin's (u2) is judged as a USER, never as that admin."""
    async with node(db_url) as n:
        conns = [await open_ws(n, token(t, u, r)) for t, u, r in PRINCIPALS for _ in range(3)]
        assert len({c.key for c in n.hub.clients()}) == len(PRINCIPALS)
        await asyncio.gather(*(_random_actions(n, random.Random(k), 25) for k in range(3)))
        await _assigned_message(n, "a1")
        marks = {t: await sentinel(n, t) for t in ("acme", "globex")}
        rows = await log_rows(n)
        for i, conn in enumerate(conns):
            tenant, user, role = PRINCIPALS[i // 3]
            frames = await read_until(conn, is_status(marks[tenant]))
            want = expected_ids(rows, Principal(tenant_id=tenant, user_id=user, role=role))
            assert [f["id"] for f in frames] == want, (tenant, user, role)
            if role == "USER":  # not vacuous: fewer rows than the tenant's admin sees
                admin = "u1" if tenant == "acme" else "u3"
                everything = expected_ids(
                    rows, Principal(tenant_id=tenant, user_id=admin, role="ADMIN")
                )
                assert len(want) < len(everything)
        for conn in conns:
            await conn.close()


def test_the_scope_key_keeps_role_and_user_apart():
    """An ADMIN and a USER of the same id, and two users of one tenant, are separate keys."""
    user = Principal(tenant_id="acme", user_id="u1", role="USER")
    other = Principal(tenant_id="acme", user_id="u2", role="USER")
    elsewhere = Principal(tenant_id="globex", user_id="u1", role="ADMIN")
    keys = {scope_key(p) for p in (ADMIN, user, other, elsewhere)}
    assert len(keys) == 4


class GatedSend:
    """An ASGI `send` whose socket stops taking bytes while `gate` is clear (as uvicorn's
    waits for a paused transport); records the frames it wrote."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.sent: list[str] = []
        self.fail = False

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        await self.gate.wait()
        if self.fail:
            raise OSError("connection reset")
        self.sent.append(message["text"])


async def _live(client: Client, send: GatedSend) -> asyncio.Task[None]:
    task = asyncio.create_task(client.go_live(send))
    await asyncio.sleep(0)
    return task


async def test_a_send_that_must_wait_keeps_order_and_backlog():
    """Frames written at once while the socket takes them; when it stops, the one in flight
    and those behind it wait in order and go out when it drains."""
    client, send = Client(ADMIN, start_id=0, max_frames=10), GatedSend()
    live = await _live(client, send)
    client.offer(1, "f1")
    assert send.sent == ["f1"]  # written by offer() itself
    send.gate.clear()
    for i in range(2, 6):
        client.offer(i, f"f{i}")
    assert send.sent == ["f1"] and client.last_sent == 1
    send.gate.set()
    for _ in range(50):
        if client.last_sent == 5:
            break
        await asyncio.sleep(0.01)
    assert send.sent == ["f1", "f2", "f3", "f4", "f5"]
    client.offer(6, "f6")
    assert send.sent[-1] == "f6"  # written at once again
    client.close(1000, "done")
    await live


async def test_an_overflowing_backlog_closes_with_4008_and_counts_only_what_left():
    """A socket that never drains: the backlog fills, the client closes with 4008, and the
    frame that was waiting for the socket is not counted as sent (the resume point)."""
    client, send = Client(ADMIN, start_id=0, max_frames=3), GatedSend()
    live = await _live(client, send)
    client.offer(1, "f1")
    send.gate.clear()
    for i in range(2, 7):
        client.offer(i, f"f{i}")
    assert client.close_code == CLOSE_LAGGING
    await client.closed()
    await live
    assert send.sent == ["f1"] and client.last_sent == 1


async def test_frames_before_go_live_wait_and_a_failed_send_closes():
    """Frames offered during the replay wait in the backlog and go first, skipping those the
    replay already sent; a socket that fails closes the client (1011)."""
    client, send = Client(ADMIN, start_id=2, max_frames=10), GatedSend()
    client.offer(3, "f3")
    client.offer(4, "f4")
    client.last_sent = 3  # the replay sent up to 3
    live = await _live(client, send)
    assert send.sent == ["f4"]
    send.fail = True
    client.offer(5, "f5")
    assert client.close_code == CLOSE_SEND_FAILED and client.last_sent == 4
    await live


async def test_with_nobody_connected_the_hub_follows_its_commits_without_reading(db_url: str):
    """No client: the fan-out moves past this node's handed rows without a query (it read
    the newest id after every commit), and the first client to join starts after them."""
    # No look for other processes' rows (SQLite, every second) and no NOTIFY taken for another
    # node's (Postgres) during the test: any read left is one the fan-out chose to make.
    async with node(db_url, poll_s=3600, notify_grace_s=3600) as n:
        s, reads = n.sid(), []

        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "max(events.id)" in statement:
                reads.append(statement)

        engine = n.store.reader.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            for i in range(10):
                await n.pipeline.ingest([msg(s, f"N{i}", phone_jid(i % 3))], source="t")
                top = await n.scalar("SELECT max(id) FROM events")
                await eventually(lambda t=top: n.hub.position == t)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(reads) <= 1, reads  # the newest id once, when nothing was handed yet
        async with await open_ws(n, token("acme", "u1")) as live:
            mark = await sentinel(n, "acme")
            frames = await read_until(live, is_status(mark))
        assert [f["type"] for f in frames] == ["session:status"]  # none of the earlier rows


async def test_handed_rows_are_not_read_back_and_make_the_same_frames(db_url: str):
    """This node's commits reach a live client without the fan-out reading the log, and each
    frame built from the handed row is exactly the one a replay reads from the log."""
    async with node(db_url) as n:
        tok, s = token("acme", "u1"), n.sid()
        async with await open_ws(n, tok) as live:
            await sentinel(n, "acme")  # the first commit after the client joined
            await read_until(live, lambda f: f["type"] == "session:status")
            before = n.hub.log_reads
            frames = []
            for i in range(20):
                await n.pipeline.ingest([msg(s, f"H{i}", phone_jid(i % 3))], source="t")
                frames += await read_until(live, lambda f: f["type"] == "chat:new-message")
            mark = await sentinel(n, "acme")
            frames += await read_until(live, is_status(mark))
            reads = n.hub.log_reads - before
        assert reads <= 3, reads  # SQLite's 1 s look for other processes' rows, at most
        async with await open_ws(n, tok, since=frames[0]["id"] - 1) as late:
            replayed = await read_until(late, is_status(mark))
        assert replayed == frames
        assert any(f["type"] == "lead:created" for f in frames)  # not only new messages
