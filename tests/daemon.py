"""A real `wasync run` in a subprocess (or `running`: in this process), its config written
from data, and throwaway Postgres databases: for the tests that need the whole daemon
(`tests/test_logs.py`, `tests/test_two_daemons.py`, ...) and the scripts that load it
(`scripts/fuzz_webhooks.py`, `scripts/bench_webhook.py`, ...)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import tomli_w
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from wasync.config import Settings
    from wasync.daemon import Daemon


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Daemon]:
    """`wasync run` in this process (`wasync.daemon.run`) until the block ends."""
    from wasync.daemon import run  # not for the scripts that only start subprocesses

    ready: asyncio.Future[Daemon] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, on_ready=ready.set_result))
    try:
        yield await asyncio.wait_for(ready, 120)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


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


def webhook_run_config(
    db_url: str,
    *,
    jwt_secret: str,
    sessions: Sequence[Mapping[str, Any]],
    log_level: str = "INFO",
    **sections: Mapping[str, Any],
) -> str:
    """A `wasync run` config for webhook runs, as TOML: tenant `acme` (admin `u1`) holding
    `sessions`, webhooks on, polling out of the way (one reconciliation an hour), HTTP on a
    free port; `sections` add keys to a section or override them (`media={...}`)."""
    doc: dict[str, Any] = {
        "log_level": log_level,
        "database": {"url": db_url},
        "poll": {"reconcile_interval_s": 3600},
        "http": {"port": 0},
        "webhook": {"enabled": True},
        "auth": {"jwt_secret": jwt_secret},
    }
    for name, keys in sections.items():
        doc.setdefault(name, {}).update(keys)
    doc["tenants"] = [{"id": "acme", "admins": ["u1"], "sessions": list(sessions)}]
    return tomli_w.dumps(doc)


def webhook_session(
    hmac_key: str,
    *,
    name: str = "default",
    provider: str = "waha",
    base_url: str = "http://127.0.0.1:9",
    **keys: Any,
) -> dict[str, Any]:
    """One session of `webhook_run_config`, signed with `hmac_key`; by default its provider is
    not there (polling fails, which the hourly reconciliation keeps out of the way)."""
    session = {"name": name, "provider": provider, "base_url": base_url}
    return session | {"webhook_secret": hmac_key} | keys


def signed_waha_config(db_url: str, *, jwt_secret: str, hmac_key: str, **sections: Any) -> str:
    """`webhook_run_config` with one signed WAHA session (`default`) and no provider behind
    it; `sections` as there (limits, `batch_max_wait_ms`)."""
    return webhook_run_config(
        db_url, jwt_secret=jwt_secret, sessions=[webhook_session(hmac_key)], **sections
    )


async def stop_daemon(proc: asyncio.subprocess.Process, timeout_s: float = 60) -> int:
    """SIGTERM a `start_daemon` process; its exit code."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), timeout_s)


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
