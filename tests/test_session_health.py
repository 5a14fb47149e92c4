"""Session health from message flow: the rules (`wasync.health`), and the ingest room that
records them (`wasync.ingest.health`) on SQLite and Postgres."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text

from tests.conftest import Recorder
from tests.factories import msg
from tests.test_pipeline import sid
from wasync.cycle import CycleStats
from wasync.eventlog import SESSION_HEALTH, read_log
from wasync.health import (
    DOWN,
    MISSED_WEBHOOKS,
    NOT_WORKING,
    OK,
    SILENCE,
    STALLED,
    ObserveHealth,
    RecordPolls,
    SessionHealth,
    decide,
)
from wasync.healthwatch import HealthWatch, PollBeats
from wasync.pipeline import Pipeline
from wasync.principal import Principal
from wasync.registry import Registry
from wasync.scopes import visible
from wasync.store import Store
from wasync.store.models import SessionHealthRow

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """`seconds` after NOW."""
    return NOW + timedelta(seconds=seconds)


def cycle(started: float, *, recovered: int = 0, working: bool = True, **kw: object) -> Any:
    """The observation of a cycle that began `started` s after NOW (webhooks on)."""
    args: dict[str, Any] = {"reconciling": True, "silence_s": 0.0, **kw}
    return ObserveHealth(
        session_id=1,
        started=at(started),
        working=working,
        status="WORKING" if working else "SCAN_QR_CODE",
        recovered=recovered,
        **args,
    )


def test_webhooks_that_stop_turn_the_session_stalled_on_the_next_cycle():
    """A cycle that recovers a message only suspects; the next one, with no webhook since,
    says STALLED (missed_webhooks); it stays so until a webhook delivers again and a cycle
    recovers nothing."""
    h = SessionHealth(session_id=1, last_webhook_at=at(-30), created_at=at(-3600))
    h = decide(h, cycle(0, recovered=1), at(1))
    assert (h.state, h.suspect_at, h.recovered_total) == (OK, at(0), 1)
    h = decide(h, cycle(60), at(61))
    assert (h.state, h.reason, h.state_at) == (STALLED, MISSED_WEBHOOKS, at(61))
    h = decide(h, cycle(120), at(121))
    assert (h.state, h.state_at) == (STALLED, at(61))
    h = replace(h, last_webhook_at=at(150))  # webhooks resume
    h = decide(h, cycle(180, recovered=1), at(181))  # ... but this cycle still found one
    assert h.state == STALLED
    h = decide(h, cycle(240), at(241))
    assert (h.state, h.reason, h.suspect_at) == (OK, None, None)


def test_a_webhook_in_flight_when_polling_stored_first_is_not_a_stall():
    """Polling stored a message before its webhook landed; the webhook came after: no stall,
    the suspicion is dropped; a second lost message starts a new one."""
    h = SessionHealth(session_id=1, last_webhook_at=at(-30), created_at=at(-3600))
    h = decide(h, cycle(0, recovered=1), at(1))
    h = replace(h, last_webhook_at=at(2))
    h = decide(h, cycle(60), at(61))
    assert (h.state, h.suspect_at) == (OK, None)
    h = decide(h, cycle(120, recovered=2), at(121))
    assert (h.state, h.suspect_at, h.recovered_total) == (OK, at(120), 3)


def test_without_webhooks_recovered_messages_mean_nothing():
    """Webhooks off: polling is the only source; nothing is recovered, nothing stalls."""
    h = SessionHealth(session_id=1, created_at=at(-3600))
    for i in range(3):
        h = decide(h, cycle(i * 60, recovered=5, reconciling=False), at(i * 60 + 1))
    assert (h.state, h.recovered_total, h.suspect_at) == (OK, 0, None)


def test_silence_and_a_provider_that_is_not_working():
    """Nothing inbound for longer than silence_s: STALLED (silence), OK again when a message
    arrives; a session the provider does not call working is DOWN, whatever else."""
    h = SessionHealth(session_id=1, last_inbound_at=at(-7200), created_at=at(-9000))
    h = decide(h, cycle(0, silence_s=3600.0), at(1))
    assert (h.state, h.reason) == (STALLED, SILENCE)
    assert decide(h, cycle(0, silence_s=0.0), at(1)).state == OK  # 0: the rule is off
    h = decide(replace(h, last_inbound_at=at(30)), cycle(60, silence_s=3600.0), at(61))
    assert h.state == OK
    h = decide(h, cycle(120, working=False, recovered=3), at(121))
    assert (h.state, h.reason) == (DOWN, NOT_WORKING)


def test_recovered_last_hour_forgets_older_minutes():
    """The per-minute counts older than an hour drop out of `recovered_last_hour`."""
    h = SessionHealth(session_id=1, last_webhook_at=at(0), created_at=at(-60))
    h = decide(h, cycle(0, recovered=4), at(1))
    h = replace(h, last_webhook_at=at(5))
    h = decide(h, cycle(1800, recovered=2), at(1801))
    assert h.recovered_last_hour(at(1801)) == 6
    assert h.recovered_last_hour(at(3700)) == 2
    h = decide(replace(h, last_webhook_at=at(1805)), cycle(5500), at(5501))
    assert h.recent == () and h.recovered_total == 6


async def health_row(store: Store, session_id: int) -> Any:
    """The session's `session_health` row."""
    async with store.read() as conn:
        sql = text("SELECT * FROM session_health WHERE session_id = :s")
        return (await conn.execute(sql, {"s": session_id})).mappings().one()


async def test_message_flow_is_recorded_with_the_webhook_vs_poll_lag(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """A webhook's message sets the last inbound (its provider time) and the last webhook
    delivery; polling seeing it later gives a positive lag; a message polling stored first
    and its webhook later, a negative one; our own messages are not inbound."""
    s = sid(registry)
    first = msg(s, "w1", "5531999990001@c.us", at=10)
    await pipeline.ingest([first], source="webhook")
    row = await health_row(store, s)
    assert row["last_inbound_at"] is not None and row["last_webhook_at"] is not None
    assert row["webhook_lag_s"] is None
    await pipeline.ingest([first], source="poll")
    row = await health_row(store, s)
    assert 0 < row["webhook_lag_s"] < 60
    polled = msg(s, "p1", "5531999990001@c.us", at=20)
    await pipeline.ingest([polled], source="poll")
    await pipeline.ingest([polled], source="webhook")
    assert -60 < (await health_row(store, s))["webhook_lag_s"] < 0
    before = await health_row(store, s)
    await pipeline.ingest([msg(s, "me1", "5531999990001@c.us", at=99, from_me=True)], source="poll")
    assert (await health_row(store, s))["last_inbound_at"] == before["last_inbound_at"]


async def test_a_stall_is_logged_as_session_health_for_admins_only(
    pipeline: Pipeline, store: Store, registry: Registry, recorder: Recorder
):
    """Observations through the pipeline: the first OK logs nothing, a stall logs one
    chatless `session:health` row that the tenant's ADMIN may see and a USER may not."""
    s = sid(registry)
    await pipeline.ingest([msg(s, "w1", "5531999990001@c.us")], source="webhook")
    started = datetime.now(UTC)
    obs = replace(cycle(0), session_id=s, started=started)
    first = await pipeline.execute(obs)
    assert first.state == OK
    await pipeline.execute(replace(obs, recovered=1, started=started + timedelta(seconds=1)))
    assert not [e for e in recorder.events if e.type == SESSION_HEALTH]
    stalled = await pipeline.execute(replace(obs, started=started + timedelta(seconds=2)))
    assert (stalled.state, stalled.reason) == (STALLED, MISSED_WEBHOOKS)
    (event,) = [e for e in recorder.events if e.type == SESSION_HEALTH]
    assert event.chat_id is None and event.tenant_id == "acme"
    assert event.data["state"] == STALLED and event.data["previousState"] == OK
    assert event.data["session"] == "default" and event.data["recoveredLastHour"] == 1
    async with store.read() as conn:
        (row,) = await read_log(conn, after=event.id - 1, limit=1)
    admin = Principal(tenant_id="acme", user_id="u1", role="ADMIN")
    user = Principal(tenant_id="acme", user_id="u9", role="USER")
    other = Principal(tenant_id="globex", user_id="u3", role="ADMIN")
    assert visible(admin, row, None, None)
    assert not visible(user, row, None, None) and not visible(other, row, None, None)
    row_db = await health_row(store, s)
    assert row_db["state"] == STALLED and row_db["recovered_total"] == 1


async def test_idle_cycles_of_a_healthy_session_are_written_once_per_interval(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """HealthWatch skips the write of an idle cycle of an OK session within `heartbeat_s`;
    a cycle that recovered messages, one while a suspicion is pending, and the first after
    the interval are written. A session STALLED for silence is skipped the same way until a
    cycle stores a message."""
    s = sid(registry)
    now = [1_000_000.0]
    watch = HealthWatch(
        pipeline,
        label="acme/default",
        reconciling=True,
        silence_s=0,
        heartbeat_s=30,
        clock=lambda: now[0],
    )

    async def record(new: int = 0) -> Any:
        now[0] += 5
        stats = CycleStats(new=new, recovered=new)  # the poller's: new and dated after its start
        await watch.record(s, stats, started=now[0], working=True, status="WORKING")
        return (await health_row(store, s))["last_poll_at"]

    first = await record()
    assert await record() == first  # idle, 5 s later: not written
    recovered = await record(new=1)
    assert recovered > first and watch.last and watch.last.suspect_at is not None
    stalled = await record()  # the suspicion is pending: written, and it is a stall
    assert stalled > recovered and watch.last.state == STALLED
    assert await record() > stalled  # not OK: every cycle is written
    quiet = SessionHealth(session_id=s, state=OK, created_at=datetime.now(UTC))
    watch.last = quiet
    written = await record()
    assert await record() == written
    now[0] += 30
    interval = await record()
    assert interval > written  # the interval passed
    watch.silence_s = 40
    watch.last = replace(quiet, last_inbound_at=datetime.fromtimestamp(now[0], UTC))
    assert await record() == interval  # the silence deadline is far: idle
    watch.last = replace(quiet, last_inbound_at=datetime.fromtimestamp(now[0] - 20, UTC))
    assert await record() > interval  # ... within one interval: written
    watch.reconciling = False  # polling alone: a stored message is `new`, not `recovered`
    now[0] += 30
    written = await record()
    watch.last = replace(quiet, state=STALLED, reason=SILENCE)
    assert await record() == written  # STALLED for silence and still silent: idle too
    assert await record(new=1) > written  # this cycle stored a message: written at once


async def test_heartbeats_of_idle_sessions_are_written_together(
    pipeline: Pipeline, store: Store, registry: Registry
):
    """With `PollBeats`, the heartbeat of an idle cycle (only the last poll time moves) waits
    for the next flush, which writes every session's in one command; a cycle that can change
    the state is still written at once, and a beat older than it moves nothing back."""
    sessions = [sid(registry), sid(registry, name="evo"), sid(registry, "globex")]
    now = [float(int(datetime.now(UTC).timestamp())) + 600]  # ahead of the commits' own times
    beats = PollBeats(pipeline, flush_s=3600)  # flushed by hand here
    watches = [
        HealthWatch(
            pipeline,
            label=f"s{s}",
            reconciling=True,
            silence_s=0,
            heartbeat_s=30,
            clock=lambda: now[0],
            beats=beats,
        )
        for s in sessions
    ]

    async def cycle(k: int, new: int = 0) -> None:
        stats = CycleStats(new=new, recovered=new)
        await watches[k].record(sessions[k], stats, started=now[0], working=True, status="WORKING")

    async def polled() -> list[datetime]:
        c = SessionHealthRow.__table__.c  # type: ignore[attr-defined]
        async with store.read() as conn:
            rows = await conn.execute(select(c.session_id, c.last_poll_at))
            found = {sid: at for sid, at in rows}
        return [found[s] for s in sessions]

    for k in range(3):
        await cycle(k)  # the first cycle of each: written at once (nothing known yet)
    first = await polled()
    now[0] += 31
    await cycle(0)  # idle, and the heartbeat is due: it waits for the flush
    await cycle(1)
    await cycle(2, new=1)  # stored a message: written at once
    written = await polled()
    assert written[:2] == first[:2] and written[2] > first[2]
    beat = datetime.fromtimestamp(now[0], UTC)
    now[0] += 5
    await cycle(0)  # idle within the interval: nothing more to write
    await pipeline.ingest([msg(sessions[1], "w1", "5531999990001@c.us")], source="webhook")
    assert watches[1].last and watches[1].last.last_webhook_at is None
    await beats.flush()
    after = await polled()
    assert after == [beat, beat, written[2]]  # both beats, in one flush
    assert all(w.last is not None and w.last.state == OK for w in watches)
    assert [w.last.last_poll_at for w in watches[:2] if w.last] == [beat, beat]
    assert watches[1].last.last_webhook_at is not None  # the watch sees the row as it is now
    older = RecordPolls(polled=((sessions[0], beat - timedelta(seconds=60)),))
    await pipeline.execute(older, source="health")
    assert (await polled())[0] == beat  # a beat older than the row moves nothing back
    now[0] += 31
    await cycle(1)
    await beats.aclose()  # the daemon's stop writes what waits
    assert (await polled())[1] == datetime.fromtimestamp(now[0], UTC)


async def test_the_migration_creates_the_model_table_and_goes_back(store: Store):
    """0006_session_health makes the table the model describes (same columns, nullability),
    and its downgrade removes it."""
    from alembic import command
    from sqlalchemy import inspect

    from wasync.store.migrate import alembic_config

    def columns(conn: Any) -> dict[str, bool]:
        return {c["name"]: c["nullable"] for c in inspect(conn).get_columns("session_health")}

    model = {c.name: bool(c.nullable) for c in SessionHealthRow.__table__.c}  # type: ignore[attr-defined]
    async with store.writer.begin() as conn:
        assert await conn.run_sync(columns) == model
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0005_leases"))
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
    assert "session_health" not in tables
    await store.upgrade()
    async with store.read() as conn:
        assert await conn.run_sync(columns) == model
