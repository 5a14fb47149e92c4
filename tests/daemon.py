"""A real `wasync run` in a subprocess, and throwaway Postgres databases: for the tests that
need the whole daemon (`tests/test_logs.py`) and the scripts that load it
(`scripts/fuzz_webhooks.py`, `scripts/bench_garbage.py`)."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url


async def start_daemon(
    config: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> tuple[asyncio.subprocess.Process, str]:
    """`python -m wasync run --config CONFIG [EXTRA_ARGS]` with its stderr in `log` (a file: a
    pipe nobody reads would fill up and stall it), `env` added to ours minus `WASYNC_*`; the
    base URL it announced."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("WASYNC_")}
    full.update(env or {})
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "wasync", "run", "--config", str(config), *extra_args),
            env=full,
            stderr=out,
        )
    for _ in range(600):
        text = await asyncio.to_thread(log.read_text)
        found = re.search(r"wasync running: .* http (http://[\d.:]+)", text)
        if found:
            return proc, found.group(1)
        if proc.returncode is not None:
            raise RuntimeError(f"wasync run exited with {proc.returncode}:\n{text}")
        await asyncio.sleep(0.1)
    raise RuntimeError("wasync run did not start within a minute")


def signed_waha_config(
    db_url: str, *, jwt_secret: str, hmac_key: str, database: str = "", webhook: str = ""
) -> str:
    """A `wasync run` config for webhook runs: one signed WAHA session (`default`, tenant
    `acme`, admin `u1`) whose provider is not there (polling fails, out of the way at one
    reconciliation an hour), webhooks on; `database` and `webhook` are extra TOML lines of
    those sections (limits, `batch_max_wait_ms`)."""
    return f"""
log_level = "INFO"
[database]
url = "{db_url}"
{database}
[poll]
reconcile_interval_s = 3600
[http]
port = 0
[webhook]
enabled = true
{webhook}
[auth]
jwt_secret = "{jwt_secret}"
[[tenants]]
id = "acme"
admins = ["u1"]
[[tenants.sessions]]
name = "default"
provider = "waha"
base_url = "http://127.0.0.1:9"
webhook_secret = "{hmac_key}"
"""


async def _admin(base_url: str) -> asyncpg.Connection:
    url = make_url(base_url).set(drivername="postgresql")
    return await asyncpg.connect(url.render_as_string(hide_password=False))


async def fresh_pg(base_url: str, prefix: str = "wasync_run") -> tuple[str, str]:
    """A new database next to `base_url`'s: its URL and its name (for `drop_pg`)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await _admin(base_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False), name


async def drop_pg(base_url: str, name: str) -> None:
    """Drop a database `fresh_pg` made."""
    admin = await _admin(base_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def dead_letter_stats(db_url: str) -> dict[str, tuple[int, int, int]]:
    """`dead_letters` by kind: rows, rows tied to no session, largest body in bytes."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        sql = (
            "SELECT kind, count(*), sum(session_name IS NULL), max(length(body))"
            " FROM dead_letters GROUP BY kind"
        )
        with sqlite3.connect(url.database or "") as conn:
            rows = conn.execute(sql).fetchall()
    else:
        sql = (
            "SELECT kind, count(*), count(*) FILTER (WHERE session_name IS NULL),"
            " max(length(body)) FROM dead_letters GROUP BY kind"
        )
        conn = await _admin(db_url)
        try:
            rows = [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()
    return {str(r[0]): (int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows}
