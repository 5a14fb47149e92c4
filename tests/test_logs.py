"""Logs that help: no secret or token in any line of a full `wasync run` (webhooks, `/ws?token=`,
REST, sends), one WARNING and one INFO for a store outage, and the redaction itself."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from sqlalchemy import text
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.daemon import start_daemon
from tests.test_outbox import environment
from tests.test_webhook import _database_down
from wasync import config, logs
from wasync.auth import issue_token
from wasync.logs import RedactedJson, ScopeFilter, scope
from wasync.outbox import text_request
from wasync.redact import INDEX_FROM, Redactor, redact
from wasync.sender import Sender, wait_final
from wasync.sim import EvolutionSim, WahaSim, serve
from wasync.store import Store
from wasync.webhooks import run_all

# Every secret of the run: two from the file, three from the environment.
SECRETS = {
    "WASYNC_JWT_SECRET": "jwt-secret-for-the-log-grep-test-0123456789",
    "WAHA_API_KEY": "waha-api-key-log-grep-4f1c",
    "WAHA_HMAC_KEY": "waha-hmac-key-log-grep-at-least-32-bytes",
}
EVO_API_KEY = "evolution-api-key-log-grep-9d2e"
EVO_JWT_KEY = "evolution-jwt-key-log-grep-at-least-32-bytes"
PHONE = "5531988887777"


def write_config(
    path: Path, db: Path, waha_url: str, evo_url: str, log_format: str = "text"
) -> Path:
    """Webhooks on, everything logged (DEBUG) in `log_format`, secrets in the file and in the
    environment."""
    path.write_text(
        f"""
log_level = "DEBUG"
log_format = "{log_format}"
[database]
url = "sqlite+aiosqlite:///{db}"
[poll]
reconcile_interval_s = 0.5
jitter_s = 0
[http]
port = 0
[webhook]
enabled = true
[send]
rate_per_minute = 6000
[[tenants]]
id = "acme"
admins = ["u1"]
[[tenants.sessions]]
name = "default"
provider = "waha"
base_url = "{waha_url}"
api_key_env = "WAHA_API_KEY"
webhook_secret_env = "WAHA_HMAC_KEY"
[[tenants.sessions]]
name = "vendas"
provider = "evolution"
base_url = "{evo_url}"
api_key = "{EVO_API_KEY}"
webhook_secret = "{EVO_JWT_KEY}"
"""
    )
    return path


async def traffic(base: str, waha: WahaSim, evo: EvolutionSim, settings: Any) -> list[str]:
    """Webhooks both ways, `/ws?token=` (good, bad, expired), REST and a send; the tokens."""
    secret = SECRETS["WASYNC_JWT_SECRET"]
    admin = issue_token(secret, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=600)
    user = issue_token(secret, tenant_id="acme", user_id="u2", role="USER", ttl_s=600)
    expired = issue_token(secret, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=-60)
    await run_all(settings, public_url=base)
    ws = base.replace("http://", "ws://")
    async with (
        connect(f"{ws}/ws?token={admin}", open_timeout=10) as live,
        connect(f"{ws}/ws?since=0&token={user}", open_timeout=10),
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        for tok in (expired, admin[:-6] + "AAAAAA"):
            with pytest.raises(InvalidStatus):
                async with connect(f"{ws}/ws?token={tok}", open_timeout=10):
                    pass
        sent = waha.add_incoming("default", PHONE, text="oi pelo webhook")
        deliveries = await waha.deliver_message("default", sent, event="message.any")
        assert [d.status for d in deliveries] == [200]
        key = evo.add_incoming("vendas", "553188886666", text="oi pela evolution")
        delivery = await evo.deliver_message("vendas", key)
        assert delivery is not None and delivery.status == 200
        assert (await http.post("/api/webhooks/waha", content=b"junk")).status_code == 400
        await _frame(live, "chat:new-message")
        auth = {"Authorization": f"Bearer {admin}"}
        assert (await http.get("/api/chats", headers=auth)).status_code == 200
        assert (await http.get("/api/chats", params={"token": admin})).status_code == 200
        queued = await http.post("/api/messages", json={"to": PHONE, "text": "oi!"}, headers=auth)
        assert queued.status_code == 201, queued.text
        await _sent(http, queued.json()["id"], auth)
    return [admin, user, expired]


async def _frame(conn: Any, type_: str) -> None:
    async with asyncio.timeout(15):
        while json.loads(await conn.recv())["type"] != type_:
            pass


async def _sent(http: httpx.AsyncClient, row: int, auth: dict[str, str]) -> None:
    for _ in range(200):
        if (await http.get(f"/api/outbox/{row}", headers=auth)).json()["status"] == "SENT":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"outbox row {row} was not sent")


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_or_token_in_any_line_of_a_full_run(
    tmp_path: Path, log_format: str
) -> None:
    """Every line a `wasync run` writes at DEBUG, through webhooks from both simulators,
    `/ws?token=` (accepted and refused), REST and a send, holds none of the five configured
    secrets and none of the issued tokens; the handshake lines are there, redacted. In JSON
    every line is one object, and the poll and webhook lines name their session and tenant."""
    async with httpx.AsyncClient() as hooks:
        waha = WahaSim(api_key=SECRETS["WAHA_API_KEY"], http=hooks)
        waha.add_session("default", engine="WEBJS")
        waha.directory.register(PHONE)
        evo = EvolutionSim(api_key=EVO_API_KEY, http=hooks, webhook_delay_s=0)
        evo.add_instance("vendas")
        async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
            cfg = tmp_path / "wasync.toml"
            write_config(cfg, tmp_path / "w.db", waha_url, evo_url, log_format)
            settings = config.load(cfg, env=SECRETS)
            proc, base = await start_daemon(cfg, log := tmp_path / "wasync.log", SECRETS)
            try:
                tokens = await traffic(base, waha, evo, settings)
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 20)
    lines = (await asyncio.to_thread(log.read_text)).splitlines()
    assert proc.returncode == 0
    messages = _json_messages(lines) if log_format == "json" else lines
    assert any('"WebSocket /ws?token=[redacted]" [accepted]' in m for m in messages)
    assert any("/ws?token=[redacted]" in m and "401" in m for m in messages)
    for value in [*SECRETS.values(), EVO_API_KEY, EVO_JWT_KEY, *tokens]:
        leaks = [line for line in lines if value in line]
        assert not leaks, leaks[:3]
    marks = [i for i, line in enumerate(lines) if "Traceback" in line or "never retrieved" in line]
    assert not marks, "\n".join(lines[max(0, marks[0] - 3) : marks[0] + 40])
    noise = ("alembic.runtime.plugins", "Context impl ", "Will assume ")
    assert not [line for line in lines if any(n in line for n in noise)]


def _json_messages(lines: list[str]) -> list[str]:
    """Each line parsed as one JSON object (or the test fails naming it); their messages.
    Poll cycles carry `session`, `tenant` and `event`."""
    records = []
    for line in lines:
        record = json.loads(line)
        assert isinstance(record, dict) and {"level", "logger", "message", "timestamp"} <= set(
            record
        ), line
        records.append(record)
    polls = [r for r in records if r.get("event") == "poll.cycle"]
    assert {(r["tenant"], r["session"]) for r in polls} == {("acme", "default"), ("acme", "vendas")}
    assert any(r.get("event") == "daemon.running" for r in records)
    return [str(r["message"]) for r in records]


async def test_a_store_outage_is_one_warning_and_one_info(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The sender polls every 50 ms; through two seconds of Postgres refusing connections it
    logs one WARNING (no traceback), one INFO when the store is back, and then sends."""
    caplog.set_level(logging.INFO, logger="wasync")
    async with environment(pg_url, poll_interval_s=0.05, metrics_interval_s=0.05) as env:
        refs = [env.ref("waha"), env.ref("evolution")]
        async with Sender(env.outbox, refs):
            await asyncio.sleep(0.3)
            async with _database_down(pg_url):
                await asyncio.sleep(2)
            await asyncio.sleep(1)
            row = await env.queue("waha", text_request("depois da queda"))
            done = await wait_final(env.outbox, [row.id], timeout_s=20)
    assert done[row.id].status == "SENT"
    mine = [r for r in caplog.records if r.name == "wasync.sender"]
    warnings = [r.getMessage() for r in mine if r.levelno == logging.WARNING]
    backs = [r.getMessage() for r in mine if "store is back" in r.getMessage()]
    assert len(warnings) == 1 and "store unavailable" in warnings[0], warnings
    assert len(backs) == 1 and not [r for r in mine if r.levelno >= logging.ERROR]
    assert all(r.exc_info is None for r in mine)


def test_redaction_of_tokens_and_secrets() -> None:
    """Query tokens keep their name, Bearer values and JWT shapes go, configured secrets go;
    a record's arguments and traceback are rewritten before any handler sees them."""
    jwt_ = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"
    assert redact(f"GET /ws?since=3&token={jwt_} 101") == "GET /ws?since=3&token=[redacted] 101"
    assert redact("authorization: Bearer abc.def") == "authorization: Bearer [redacted]"
    assert redact(f"decoded {jwt_}!") == "decoded [redacted]!"
    assert redact("apikey s3cr3t-value here", ["s3cr3t-value"]) == "apikey [redacted] here"
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", f"/ws?token={jwt_}"), None,
    )  # fmt: skip
    try:
        raise ValueError("key s3cr3t-value refused")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert Redactor(["s3cr3t-value"]).filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "WebSocket /ws?token=[redacted]" [accepted]'
    assert record.exc_text is not None and "s3cr3t-value" not in record.exc_text


def test_many_configured_secrets_are_each_blanked() -> None:
    """A thousand sessions bring thousands of secrets (looked up by their first characters,
    not one search each): every one is blanked wherever it stands in a line, a secret inside
    a longer one too, and secrets sharing their first characters are told apart."""
    keys = [f"waha-key-{i:04d}-{'k' * 12}" for i in range(1_000)]
    hooks = [f"hmac-{i:04d}-secret-at-least-32-bytes-long" for i in range(1_000)]
    nested = ["outer-AAAA-inner-BBBB", "inner-BBBB"]
    redactor = Redactor([*keys, *hooks, *nested])
    assert len(redactor.secrets.values) >= INDEX_FROM  # the looked-up path
    for i in (0, 417, 999):
        line = f"poll s{i}: {keys[i]} then {hooks[i]}, {keys[(i + 1) % 1000]}!"
        clean = f"poll s{i}: [redacted] then [redacted], [redacted]!"
        assert redact(line, redactor.secrets) == clean
    assert redact("a inner-BBBB b outer-AAAA-inner-BBBB c", redactor.secrets) == (
        "a [redacted] b [redacted] c"
    )
    assert redact("waha-key-0001-kkkk is not a key", redactor.secrets) == (
        "waha-key-0001-kkkk is not a key"
    )  # the head of many keys, none of them whole


def test_json_lines_are_redacted_tracebacks_and_fields_included() -> None:
    """The JSON formatter formats the traceback itself: a secret in it, in the message, or in
    an extra field is blanked all the same; the scope's session and tenant are fields."""
    redactor = Redactor(["s3cr3t-value"])
    formatter = RedactedJson(redactor)
    try:
        raise ValueError("key s3cr3t-value refused")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "wasync.x", logging.WARNING, "", 0, "using %s", ("s3cr3t-value",), exc_info
    )
    record.event = "poll.failed"
    record.detail = {"header": "Bearer abc.def", "key": ["s3cr3t-value"]}
    with scope(session="default", tenant="acme"):
        assert ScopeFilter().filter(record) and redactor.filter(record)
    line = formatter.format(record)
    assert "s3cr3t-value" not in line and "abc.def" not in line
    out = json.loads(line)
    assert out["level"] == "WARNING" and out["message"] == "using [redacted]"
    assert (out["session"], out["tenant"], out["event"]) == ("default", "acme", "poll.failed")
    assert "ValueError" in out["exc_info"]


async def test_a_scoped_job_carries_its_fields_and_those_around_it() -> None:
    """`scoped()` (every poll job) adds its fields to the scope around it, the job's own
    winning, and leaves that scope as it was."""

    def fields() -> dict[str, str]:
        record = logging.LogRecord("wasync", logging.INFO, __file__, 1, "x", None, None)
        logs.ScopeFilter().filter(record)
        return {k: getattr(record, k) for k in logs.SCOPE_FIELDS if hasattr(record, k)}

    async def job() -> dict[str, str]:
        return fields()

    run = logs.scoped(job, session="vendas")
    assert await run() == {"session": "vendas"}
    with logs.scope(tenant="7", session="outra"):
        assert await run() == {"session": "vendas", "tenant": "7"}
        assert fields() == {"session": "outra", "tenant": "7"}
    assert fields() == {} and await run() == {"session": "vendas"}


def test_postgres_constraint_details_are_blanked() -> None:
    """The values Postgres quotes in a violation's DETAIL are blanked, the rest kept."""
    lines = {
        "DETAIL:  Key (tenant_id, phone)=(acme, 5531988887777) already exists.": (
            "DETAIL:  Key (tenant_id, phone)=([redacted]) already exists."
        ),
        'DETAIL:  Key (chat_id)=(4242) is not present in table "chats".': (
            'DETAIL:  Key (chat_id)=([redacted]) is not present in table "chats".'
        ),
        "DETAIL:  Failing row contains (7, acme, null, Olá (tudo bem?)).": (
            "DETAIL:  Failing row contains ([redacted])."
        ),
        "a Key (that is not Postgres'": "a Key (that is not Postgres'",
    }
    for line, clean in lines.items():
        assert redact(line) == clean


PHONE_IN_DETAIL = "5531988887777"


async def test_a_logged_unique_violation_names_no_value(pg_url: str) -> None:
    """A unique violation logged with its traceback (asyncpg's error carries DETAIL) shows
    which key, not whose number."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redactor())
    logger = logging.getLogger("wasync.test.detail")
    logger.addHandler(handler)
    try:
        async with Store(pg_url) as store, store.write() as conn:
            await conn.execute(text("CREATE TEMP TABLE t (phone text PRIMARY KEY)"))
            insert, number = text("INSERT INTO t VALUES (:phone)"), {"phone": PHONE_IN_DETAIL}
            await conn.execute(insert, number)
            try:
                async with conn.begin_nested():
                    await conn.execute(insert, number)  # the traceback quotes this line
            except sqlalchemy.exc.IntegrityError:
                logger.exception("insert failed")
    finally:
        logger.removeHandler(handler)
    logged = stream.getvalue()
    assert "Key (phone)=([redacted]) already exists" in logged
    assert PHONE_IN_DETAIL not in logged
