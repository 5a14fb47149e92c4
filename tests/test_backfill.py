"""`wasync backfill`: timestamp windows, resumable checkpoints, quiet ingest, honest counts.

The simulators are the fakes: served on loopback in this process, or (for the CLI killed with
SIGKILL) in their own process by `scripts/sim_serve.py`. Store tests run on SQLite and Postgres.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from sqlalchemy import func, select, text
from starlette.types import ASGIApp, Receive, Scope, Send
from typer.testing import CliRunner

from tests.conftest import PG_URL, Recorder, fresh_pg_database
from tests.conftest import settings_for as two_tenants
from tests.factories import msg
from wasync import daemon
from wasync.backfill import (
    BackfillReport,
    BackfillUsageError,
    LogObserver,
    Options,
    SessionStats,
    Window,
    exit_code,
    gaps,
    make_options,
    parse_when,
    run_backfill,
    summary_table,
)
from wasync.cli import app
from wasync.config import Settings, parse
from wasync.config import load as load_config
from wasync.eventlog import CHAT_UPDATED, NEW_MESSAGE
from wasync.pipeline import Pipeline
from wasync.registry import Registry
from wasync.sim import EvolutionSim, WahaSim, seed_evolution, seed_waha, serve
from wasync.sim import text as text_message
from wasync.store import Store
from wasync.store import models as m

ROOT = Path(__file__).resolve().parent.parent
WAHA_KEY, EVO_KEY = "waha-sim-key", "evolution-sim-key"
NOW = 1_790_000_000
SINCE = NOW - 12 * 86_400
TABLES = (m.Tenant, m.Session, m.Chat, m.Lead, m.Message, m.Notification, m.EventRow)


# --- pure parts ---------------------------------------------------------------------------------


def test_dates_parse_as_utc_days_or_instants():
    """A date is midnight UTC (or its last second as an end); a date-time keeps its offset."""
    assert parse_when("2026-09-01") == 1_788_220_800
    assert parse_when("2026-09-01", end_of_day=True) == 1_788_220_800 + 86_399
    assert parse_when("2026-09-01T03:00:00-03:00") == 1_788_220_800 + 6 * 3600
    assert parse_when("2026-09-01T06:00Z") == parse_when("2026-09-01T06:00")


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "01/09/2026", ""])
def test_bad_dates_are_one_clear_error(bad: str):
    """Anything but ISO dates and date-times is refused with the accepted forms named."""
    with pytest.raises(BackfillUsageError, match="YYYY-MM-DD"):
        parse_when(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"since": "2026-09-02", "until": "2026-09-01"}, "before"),
        ({"since": "2026-09-01", "tenant": "nobody"}, "unknown tenant 'nobody'"),
        ({"since": "2026-09-01", "session": "nope"}, "unknown session 'nope'"),
        ({"since": "2026-09-01", "session": "default"}, "acme, globex: pass --tenant"),
        ({"since": "2026-09-01", "chat": "not a phone"}, "--chat"),
    ],
)
def test_options_reject_what_cannot_run(kwargs: dict[str, Any], message: str):
    """Reversed dates, unknown tenants or sessions, shared names and bad chats fail early."""
    with pytest.raises(BackfillUsageError, match=message):
        make_options(two_tenants("sqlite+aiosqlite:///unused.db"), **kwargs)


def test_options_pick_one_session_and_chat():
    """A session name is enough with its tenant; a 12-digit Brazilian jid means the 13-digit
    phone."""
    opts = make_options(
        two_tenants("sqlite+aiosqlite:///unused.db"),
        since="2026-09-01",
        until="2026-09-30",
        tenant="globex",
        session="evo",
        chat="553188887777@s.whatsapp.net",
    )
    assert (opts.tenant, opts.session) == ("globex", "evo")
    assert opts.chat is not None and opts.chat.phone == "5531988887777"
    assert opts.until == parse_when("2026-09-30") + 86_399


def test_gaps_are_what_no_checkpoint_covers():
    """Done windows are cut out of the range, overlapping or not, in any order."""
    done = [Window(50, 60), Window(10, 20), Window(15, 30)]
    assert gaps(0, 100, done) == [(0, 10), (30, 50), (60, 100)]
    assert gaps(0, 100, [Window(0, 100)]) == []
    assert gaps(0, 100, []) == [(0, 100)]


def test_summary_and_exit_codes_are_honest():
    """Failures exit 1, Ctrl-C 130, --max-messages 0; the table shows partial chat counts."""
    stats = SessionStats(label="acme/w1", chats=10, chats_done=4, seen=9, new=7, duplicate=2)
    report = BackfillReport(sessions=[stats], stopped="interrupted")
    assert exit_code(report) == 130
    assert exit_code(BackfillReport(sessions=[stats], stopped="--max-messages 5 reached")) == 0
    failed = SessionStats(label="acme/e1", error="HTTP 401")
    assert exit_code(BackfillReport(sessions=[stats, failed])) == 1
    cells = [list(c.cells) for c in summary_table(report).columns]
    assert cells[1] == ["4/10"] and cells[2:6] == [["9"], ["7"], ["2"], ["0"]]


def test_log_observer_writes_plain_lines(caplog: pytest.LogCaptureFixture):
    """Without a terminal, progress is a log line at start, at most one per interval, and at
    the end."""
    clock = iter([0.0, 1.0, 10.0, 10.0]).__next__
    observer = LogObserver(interval_s=5, clock=clock)
    stats = SessionStats(label="acme/w1", chats=3)
    with caplog.at_level("INFO", logger="wasync.backfill"):
        observer.started(stats)
        observer.progressed(stats)  # 1 s later: quiet
        observer.progressed(stats)  # 10 s later: a line
        observer.finished(stats)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "backfill acme/w1: 3 chats to read"
    assert len(lines) == 3 and lines[-1].startswith("backfill acme/w1: 0/3 chats, 0 seen")


# --- the pipeline's summary mode ----------------------------------------------------------------


async def test_summary_realtime_is_one_chat_updated_per_chat(
    pipeline: Pipeline, registry: Registry, recorder: Recorder
):
    """`realtime="summary"` logs one `chat:updated {backfilled: n}` per chat, no message frames,
    and with `notify=False` no notification."""
    ref = registry.get("acme", "default")
    assert ref is not None
    events = [msg(ref.id, f"A{i}", "5511999990001@c.us", at=i) for i in range(5)]
    events += [msg(ref.id, f"B{i}", "5511999990002@c.us", at=i) for i in range(3)]
    result = await pipeline.ingest(events, source="backfill", notify=False, realtime="summary")
    assert result.new == 8
    types = [e.type for e in recorder.events]
    assert NEW_MESSAGE not in types and "notification:new" not in types
    backfilled = sorted(e.data["backfilled"] for e in recorder.events if "backfilled" in e.data)
    assert backfilled == [3, 5]
    assert types.count(CHAT_UPDATED) == 4  # two chats created, two summaries


# --- in-process simulators ----------------------------------------------------------------------


@dataclass
class World:
    """Both simulators on loopback, and the bare ids of what they hold per session."""

    waha: WahaSim
    evo: EvolutionSim
    waha_url: str
    evo_url: str

    def truth(self) -> dict[str, set[str]]:
        """Bare provider ids per session name."""
        return {
            "w1": {x["id"].split("_")[2] for x in self.waha.all_messages("w1")},
            "e1": {x["key"]["id"] for x in self.evo.all_messages("e1")},
        }


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """A WEBJS WAHA session `w1` and an Evolution instance `e1`, 10 chats x 30 messages each."""
    waha, evo = WahaSim(api_key=WAHA_KEY, seed=1), EvolutionSim(api_key=EVO_KEY, seed=2)
    waha.add_session("w1", engine="WEBJS")
    evo.add_instance("e1")
    size: dict[str, Any] = {"chats": 10, "messages_per_chat": 30, "now": NOW, "span_s": 864_000}
    seed_waha(waha, "w1", seed="w1", **size)
    seed_evolution(evo, "e1", seed="e1", **size)
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        yield World(waha, evo, waha_url, evo_url)


def config(url: str, waha_url: str, evo_url: str, **poll: Any) -> Settings:
    """Tenant `acme` with `w1` (WAHA) and `e1` (Evolution); no retry waits."""
    sessions = [
        {"name": "w1", "provider": "waha", "base_url": waha_url, "api_key": WAHA_KEY},
        {"name": "e1", "provider": "evolution", "base_url": evo_url, "api_key": EVO_KEY},
    ]
    return parse(
        {
            "database": {"url": url},
            "http": {"port": 0},
            "poll": {"backoff_s": 0, "max_retry_wait_s": 0, "jitter_s": 0, **poll},
            "tenants": [{"id": "acme", "admins": ["admin"], "sessions": sessions}],
        }
    )


def opts(**kwargs: Any) -> Options:
    """Options over the whole seeded history."""
    return Options(since=SINCE, until=NOW + 60, **kwargs)


async def stored(store: Store) -> dict[str, list[str]]:
    """Stored provider ids per session name (a list: a double would show)."""
    s, msgs = m.Session.__table__, m.Message.__table__  # type: ignore[attr-defined]
    out: dict[str, list[str]] = {}
    async with store.read() as conn:
        rows = await conn.execute(
            select(s.c.name, msgs.c.provider_message_id).join(s, s.c.id == msgs.c.session_id)
        )
        for r in rows:
            out.setdefault(r.name, []).append(r.provider_message_id)
    return out


async def counts(store: Store) -> dict[str, int]:
    """Rows per table."""
    out = {}
    async with store.read() as conn:
        for model in (*TABLES, m.BackfillCheckpoint):
            table = model.__table__  # type: ignore[attr-defined]
            out[table.name] = (await conn.execute(select(func.count()).select_from(table))).scalar()
    return out


def assert_all_once(found: dict[str, list[str]], truth: dict[str, set[str]]) -> None:
    """Every simulated message is stored, exactly once, and nothing else is."""
    for name, ids in truth.items():
        assert len(found.get(name, [])) == len(set(found.get(name, []))), name
        assert set(found.get(name, [])) == ids, name


def totals(report: BackfillReport) -> dict[str, int]:
    """Seen / new / duplicate / rejected over every session."""
    keys = ("seen", "new", "duplicate", "rejected")
    return {k: sum(getattr(s, k) for s in report.sessions) for k in keys}


async def test_backfill_stores_everything_once_and_rerun_stores_nothing(world: World, db_url: str):
    """All history lands once, quietly (no notification, no per-message frame); counts add up;
    a second run is nothing but skipped checkpoints and reports 0 new."""
    settings = config(db_url, world.waha_url, world.evo_url)
    first = await run_backfill(settings, opts())
    assert first.ok and first.stopped is None
    t = totals(first)
    assert t["seen"] == t["new"] + t["duplicate"] + t["rejected"]
    assert t["new"] == sum(len(ids) for ids in world.truth().values())
    async with Store(db_url) as store:
        assert_all_once(await stored(store), world.truth())
        rows = await counts(store)
        async with store.read() as conn:
            types = dict(
                (await conn.execute(text("SELECT type, count(*) FROM events GROUP BY type"))).all()
            )
            sources = {
                r[0] for r in await conn.execute(text("SELECT DISTINCT source FROM messages"))
            }
    assert rows["notifications"] == 0 and rows["leads"] > 0
    assert NEW_MESSAGE not in types and sources == {"backfill"}
    requests = world.waha.requests_total + world.evo.requests_total
    second = await run_backfill(settings, opts())
    assert totals(second)["new"] == 0 and totals(second)["seen"] == 0
    assert world.waha.requests_total + world.evo.requests_total - requests <= 6  # lists only
    async with Store(db_url) as store:
        assert await counts(store) == rows


async def test_notify_flag_notifies_admins_of_new_leads(world: World, db_url: str):
    """With `--notify`, leads created from history notify the tenant's admins as usual."""
    settings = config(db_url, world.waha_url, world.evo_url)
    await run_backfill(settings, opts(notify=True, session="w1"))
    async with Store(db_url) as store:
        rows = await counts(store)
    assert rows["notifications"] == rows["leads"] > 0


async def test_dry_run_writes_nothing_and_reports_what_it_would_store(world: World, db_url: str):
    """A dry run after a partial run changes no table and reports, for what is left to read,
    what is new and what is already stored; on a missing SQLite file it creates nothing."""
    settings = config(db_url, world.waha_url, world.evo_url)
    await run_backfill(settings, opts(session="w1", max_messages=100, chats_in_flight=1))
    async with Store(db_url) as store:
        before = await counts(store)
        report = await run_backfill(settings, opts(dry_run=True))
        assert await counts(store) == before
    truth = world.truth()
    w1, e1 = report.sessions
    assert report.dry_run and report.stopped is None
    assert w1.duplicate >= 1 and w1.seen == w1.new + w1.duplicate
    assert w1.new == len(truth["w1"]) - before["messages"]
    assert e1.new == len(truth["e1"]) and e1.seen == e1.new + e1.duplicate
    if db_url.startswith("sqlite"):
        missing = db_url.replace("wasync.db", "never.db")
        dry = await run_backfill(config(missing, world.waha_url, world.evo_url), opts(dry_run=True))
        assert totals(dry)["new"] == sum(len(v) for v in truth.values())
        assert not exists(missing.split("///", 1)[1])


async def test_stopping_at_max_messages_resumes_where_it_stopped(world: World, db_url: str):
    """`--max-messages` stops a run part-way with its finished windows checkpointed; the same
    command continues without re-reading them and ends with everything stored once."""
    settings = config(db_url, world.waha_url, world.evo_url)
    first = await run_backfill(settings, opts(max_messages=150, chats_in_flight=1))
    assert first.stopped == "--max-messages 150 reached" and exit_code(first) == 0
    async with Store(db_url) as store:
        partial = await counts(store)
    total = sum(len(ids) for ids in world.truth().values())
    assert 150 <= partial["messages"] < total and partial["backfill_checkpoints"] > 0
    second = await run_backfill(settings, opts())
    assert second.stopped is None
    assert totals(second)["seen"] < total  # checkpointed windows were skipped
    async with Store(db_url) as store:
        assert_all_once(await stored(store), world.truth())


async def test_a_cancelled_run_loses_nothing(world: World, db_url: str):
    """Cancelling the backfill task mid-run (a crash, as far as the database can tell) and
    running again ends with every message stored once."""
    settings = config(db_url, world.waha_url, world.evo_url)
    task = asyncio.create_task(run_backfill(settings, opts(flush_events=10, chats_in_flight=1)))
    await until_stored(db_url, 40, task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await run_backfill(settings, opts())
    async with Store(db_url) as store:
        assert_all_once(await stored(store), world.truth())


def ignoring_offsets(inner: ASGIApp) -> ASGIApp:
    """The WAHA app behind a proxy that drops `offset` from message reads, like engines that
    ignore it (waha.md 3: WEBJS scrolls its in-browser store, newest first)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/messages"):
            query = parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
            kept = urlencode([(k, v) for k, v in query if k != "offset"])
            scope = {**scope, "query_string": kept.encode()}
        await inner(scope, receive, send)

    return app


async def test_engines_that_ignore_offsets_are_walked_by_narrowing_until(
    world: World, tmp_path: Path
):
    """When every page comes back as the first one, the walk moves `until` down instead and
    still reads every message (small pages force several per window)."""
    proxy = httpx.ASGITransport(app=ignoring_offsets(world.waha.app))
    settings = config(f"sqlite+aiosqlite:///{tmp_path}/o.db", "http://waha", "http://unused")
    options = opts(session="w1", page_size=4, max_pages=3)
    report = await run_backfill(settings, options, transport=proxy)
    assert report.ok
    async with Store(settings.database.url) as store:
        assert set((await stored(store))["w1"]) == world.truth()["w1"]


async def test_evolution_pages_that_shift_are_halved_until_complete(tmp_path: Path):
    """Evolution orders ties at random on every request, so pages overlap and hide rows; a
    window short of `total` is halved (and a one-second window re-read) until all are seen."""
    evo = EvolutionSim(api_key=EVO_KEY, seed=5)
    evo.add_instance("e1")
    ids = {
        evo.add_message("e1", "5511987650001", text_message(f"m{i}"), ts=NOW - 3600 + i // 9)
        for i in range(90)
    }
    settings = config(f"sqlite+aiosqlite:///{tmp_path}/t.db", "http://unused", "http://evo")
    options = opts(session="e1", page_size=7, max_pages=4)
    report = await run_backfill(settings, options, transport=httpx.ASGITransport(app=evo.app))
    assert report.ok and totals(report)["new"] == 90
    async with Store(settings.database.url) as store:
        assert set((await stored(store))["e1"]) == ids


async def test_a_message_on_a_window_edge_is_read_once_and_checkpointed(tmp_path: Path):
    """Windows share their edge second: a message there counts once, its windows are complete
    by Evolution's `total`, and a rerun has nothing left to read."""
    evo = EvolutionSim(api_key=EVO_KEY, seed=6)
    evo.add_instance("e1")
    for ts in (SINCE + 10, SINCE + 86_400, SINCE + 86_400, SINCE + 90_000):
        evo.add_message("e1", "5511987650002", text_message(f"at {ts}"), ts=ts)
    settings = config(f"sqlite+aiosqlite:///{tmp_path}/e.db", "http://unused", "http://evo")
    transport = httpx.ASGITransport(app=evo.app)
    first = await run_backfill(settings, opts(session="e1"), transport=transport)
    assert totals(first) == {"seen": 4, "new": 4, "duplicate": 0, "rejected": 0}
    second = await run_backfill(settings, opts(session="e1"), transport=transport)
    assert totals(second)["seen"] == 0 and second.sessions[0].requests == 2


async def test_retries_and_rate_limits_follow_the_poll_policy(world: World, tmp_path: Path):
    """5xx and 429 + Retry-After on a quarter of the requests are retried with the poller's
    policy; everything is still stored once."""
    for faults in (world.waha.faults, world.evo.faults):
        faults.rate, faults.kinds = 0.25, ("500", "502", "503", "429")
    settings = config(
        f"sqlite+aiosqlite:///{tmp_path}/f.db", world.waha_url, world.evo_url, max_attempts=8
    )
    report = await run_backfill(settings, opts())
    assert report.ok
    assert world.waha.faults.injected["429"] + world.evo.faults.injected["429"] > 0
    async with Store(settings.database.url) as store:
        assert_all_once(await stored(store), world.truth())


async def test_chat_option_reads_one_chat(world: World, tmp_path: Path):
    """`--chat` with a phone keeps only that chat (in whatever jid form the provider lists it)."""
    chat = next(c for c in world.waha.session("w1").chats.values() if c.id.endswith("@c.us"))
    phone = chat.id.split("@")[0]
    settings = config(f"sqlite+aiosqlite:///{tmp_path}/c.db", world.waha_url, world.evo_url)
    options = make_options(
        settings, since="2026-09-01", until="2026-09-30", session="w1", chat=f"+{phone}"
    )
    report = await run_backfill(settings, options)
    assert [s.chats for s in report.sessions] == [1] and report.ok
    async with Store(settings.database.url) as store:
        assert len((await stored(store))["w1"]) == len(chat.messages)
    nobody = make_options(settings, since="2026-09-01", chat="+55 31 98888-0000")
    missing = await run_backfill(settings, nobody)
    assert missing.problem == "no chat matches --chat '+55 31 98888-0000'"
    assert exit_code(missing) == 1


async def test_backfill_runs_beside_the_daemon(db_url: str):
    """A backfill and `wasync run`'s daemon write the same database at once (SQLite: one file,
    BEGIN IMMEDIATE + busy timeout; Postgres: the ingest lock); each message is one row."""
    now = time.time()
    waha, evo = WahaSim(api_key=WAHA_KEY, seed=3), EvolutionSim(api_key=EVO_KEY, seed=4)
    waha.add_session("w1", engine="GOWS")
    evo.add_instance("e1")
    size: dict[str, Any] = {"chats": 12, "messages_per_chat": 40, "now": now, "span_s": 3 * 86_400}
    seed_waha(waha, "w1", seed="dw", **size)
    seed_evolution(evo, "e1", seed="de", **size)
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        settings = config(db_url, waha_url, evo_url, interval_s=0.1, log_idle_cycles=False)
        stop = asyncio.Event()
        ready: asyncio.Future[daemon.Daemon] = asyncio.get_running_loop().create_future()
        run = asyncio.create_task(daemon.run(settings, stop=stop, on_ready=ready.set_result))
        await asyncio.wait_for(ready, 120)
        options = Options(since=now - 4 * 86_400, until=now + 60, flush_events=50)
        report = await run_backfill(settings, options)
        stop.set()
        await asyncio.wait_for(run, 120)
    world = World(waha, evo, waha_url, evo_url)
    assert report.ok
    async with Store(db_url) as store:
        found = await stored(store)
        async with store.read() as conn:
            by_source = dict(
                (
                    await conn.execute(
                        text("SELECT source, count(*) FROM messages GROUP BY source")
                    )
                ).all()
            )
    assert_all_once(found, world.truth())
    assert by_source.get("poll", 0) > 0 and by_source.get("backfill", 0) > 0


# --- the real CLI, killed with SIGKILL ----------------------------------------------------------


@dataclass
class Sims:
    """`scripts/sim_serve.py` running in its own process."""

    info: dict[str, Any]
    truth: dict[str, set[str]]


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sims]:
    """20,000 historic messages over 200 chats (WAHA WEBJS + Evolution), in a child process."""
    truth_file = tmp_path_factory.mktemp("sims") / "truth.json"
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "sim_serve.py"),
        "--chats=100",
        "--messages-per-chat=100",
        f"--now={NOW}",
        "--span-days=10",
        f"--truth={truth_file}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        truth = {k: set(v) for k, v in json.loads(truth_file.read_text()).items()}
        yield Sims(info, truth)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cli_config(path: Path, url: str, sims: Sims) -> Path:
    """A TOML config for the CLI: tenant `acme` with the child process's two sessions."""
    i = sims.info
    path.write_text(
        f'log_level = "WARNING"\n[database]\nurl = "{url}"\n'
        "[poll]\nbackoff_s = 0.01\nmax_retry_wait_s = 0\n"
        '[[tenants]]\nid = "acme"\nadmins = ["admin"]\n'
        f'[[tenants.sessions]]\nname = "{i["waha_session"]}"\nprovider = "waha"\n'
        f'base_url = "{i["waha"]}"\napi_key = "{i["waha_key"]}"\n'
        f'[[tenants.sessions]]\nname = "{i["evo_instance"]}"\nprovider = "evolution"\n'
        f'base_url = "{i["evolution"]}"\napi_key = "{i["evo_key"]}"\n'
    )
    return path


CLI_RANGE = ["--since", "2026-09-01", "--until", "2026-09-30"]


async def projection(url: str) -> dict[str, Any]:
    """The state a backfill leaves, without ids and times that depend on batching."""
    queries = {
        "messages": "SELECT s.name, m.provider_message_id, c.jid, m.from_me, m.type, m.body, "
        "m.ack FROM messages m JOIN sessions s ON s.id = m.session_id "
        "JOIN chats c ON c.id = m.chat_id",
        "chats": "SELECT c.jid, c.kind, c.phone, l.phone, c.unread_count FROM chats c "
        "LEFT JOIN leads l ON l.id = c.lead_id",
        "leads": "SELECT phone FROM leads",
        "notifications": "SELECT user_id FROM notifications",
    }
    async with Store(url) as store, store.read() as conn:
        return {k: sorted(map(tuple, await conn.execute(text(q)))) for k, q in queries.items()}


async def test_cli_killed_halfway_and_rerun_ends_in_the_same_state(
    sims: Sims, db_url: str, tmp_path: Path
):
    """`kill -9` of `wasync backfill` halfway through 20,000 messages, then the same command:
    every message stored once, the same state as an uninterrupted run, and a third run
    reports 0 new."""
    cfg = cli_config(tmp_path / "c.toml", db_url, sims)
    cmd = [sys.executable, "-m", "wasync", "backfill", "--config", str(cfg), *CLI_RANGE]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL)
    await until_checkpoint(db_url, proc)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    async with Store(db_url) as store:
        assert (await counts(store))["messages"] < 20_000
    code, _ = await run_cli(cmd)
    assert code == 0
    code, out = await run_cli(cmd)
    assert code == 0
    rows = [line.split("│") for line in out.splitlines() if "acme/" in line]
    assert rows and all(r[4].strip() == "0" for r in rows)  # the `new` column
    async with Store(db_url) as store:
        assert_all_once(await stored(store), sims.truth)
    async with reference_db(db_url, tmp_path) as ref_url:
        settings = parse_cli_config(cfg, ref_url)
        await run_backfill(settings, make_options(settings, since="2026-09-01", until="2026-09-30"))
        assert await projection(db_url) == await projection(ref_url)


async def until_stored(
    url: str, n: int, run: asyncio.subprocess.Process | asyncio.Task[Any]
) -> None:
    """Wait until a backfill (CLI process or task) stored at least `n` messages."""
    await until_count(url, "SELECT count(*) FROM messages", n, run)


async def until_checkpoint(url: str, run: asyncio.subprocess.Process) -> None:
    """Wait until a backfill finished its first (session, chat, window): it is halfway
    through, whatever the machine's speed."""
    await until_count(url, "SELECT count(*) FROM backfill_checkpoints", 1, run)


async def until_count(
    url: str,
    sql: str,
    n: int,
    run: asyncio.subprocess.Process | asyncio.Task[Any],
    timeout_s: float = 180,
) -> None:
    """Wait until `sql` counts at least `n` while the backfill runs (a generous limit: the
    wait is for a state, not a rate)."""
    deadline = time.monotonic() + timeout_s
    async with Store(url) as store:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            running = (
                run.returncode is None
                if isinstance(run, asyncio.subprocess.Process)
                else not run.done()
            )
            assert running, "the backfill finished before it could be stopped"
            try:
                async with store.read() as conn:
                    found = (await conn.execute(text(sql))).scalar()
            except Exception:  # the CLI has not created the schema yet
                continue
            if found is not None and found >= n:
                return
    raise AssertionError(f"timed out waiting for {sql} >= {n}")


async def run_cli(cmd: list[str]) -> tuple[int, str]:
    """Run the CLI to the end; its exit code and stdout."""
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def exists(path: str) -> bool:
    """Whether a file exists (kept out of the async tests)."""
    return Path(path).exists()


class reference_db:
    """A second fresh database on the same backend, for an uninterrupted reference run."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.pg = None if url.startswith("sqlite") else fresh_pg_database(PG_URL or "")
        self.sqlite = f"sqlite+aiosqlite:///{tmp_path}/reference.db"

    async def __aenter__(self) -> str:
        return await self.pg.__aenter__() if self.pg else self.sqlite

    async def __aexit__(self, *exc: object) -> None:
        if self.pg:
            await self.pg.__aexit__(*exc)


def parse_cli_config(cfg: Path, url: str) -> Settings:
    """The CLI's config, pointed at another database."""
    return load_config(cfg, env={"WASYNC_DATABASE_URL": url})


def test_cli_refuses_bad_input_with_one_line(sims: Sims, tmp_path: Path):
    """Bad dates, unknown tenants and unknown sessions exit 2 with one `wasync:` line."""
    cfg = cli_config(tmp_path / "c.toml", f"sqlite+aiosqlite:///{tmp_path}/x.db", sims)
    runner = CliRunner()
    for args, words in (
        (["--since", "last week"], "bad date"),
        ([*CLI_RANGE, "--tenant", "nobody"], "unknown tenant"),
        ([*CLI_RANGE, "--session", "nope"], "unknown session"),
    ):
        result = runner.invoke(app, ["backfill", "--config", str(cfg), *args])
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and words in result.stderr
        assert result.stderr.startswith("wasync: ")
    assert not (tmp_path / "x.db").exists()


def test_cli_dry_run_reports_and_writes_nothing(sims: Sims, tmp_path: Path):
    """`--dry-run` prints the summary of what it would store and creates no database."""
    cfg = cli_config(tmp_path / "c.toml", f"sqlite+aiosqlite:///{tmp_path}/x.db", sims)
    args = ["backfill", "--config", str(cfg), *CLI_RANGE, "--dry-run", "--session", "hist-waha"]
    result = CliRunner().invoke(app, args, env={**os.environ, "COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "dry run: nothing written" in result.stdout and "10000" in result.stdout
    assert not (tmp_path / "x.db").exists()
