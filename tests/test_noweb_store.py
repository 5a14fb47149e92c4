"""A WAHA NOWEB session without its store (`config.noweb.store.enabled`) answers 400 to every
messages and overview call (waha.md 2): `doctor` fails it with the fix, the poller logs one
WARNING and waits, `wasync sessions configure` and `wasync webhooks register` turn it on."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.polled import polled
from tests.test_cli import env, write_config
from wasync.config import parse
from wasync.doctor import diagnose
from wasync.sessions import configure_all
from wasync.sim import WahaSim, serve
from wasync.store import Store
from wasync.webhooks import run_all

KEY = "waha-sim-key"
SECRET = "noweb-store-tests-jwt-secret-0123456789"


def store_off(sim: WahaSim, name: str = "default") -> None:
    """The session's NOWEB store turned off, as a session created without it is."""
    sim.session(name).config["noweb"] = {"store": {"enabled": False, "fullSync": False}}


def settings_for(db_url: str, url: str) -> Any:
    """One tenant with the NOWEB session `default`."""
    session = {"name": "default", "provider": "waha", "base_url": url, "api_key": KEY}
    return parse(
        {
            "database": {"url": db_url},
            "auth": {"jwt_secret": SECRET},
            "poll": {"log_idle_cycles": False, "status_interval_s": 3600},
            "tenants": [{"id": "acme", "sessions": [session]}],
        }
    )


async def test_doctor_fails_a_noweb_session_without_its_store(db_url: str) -> None:
    """One FAIL line naming the setting and the command that fixes it."""
    sim = WahaSim(api_key=KEY)
    sim.add_session("default", engine="NOWEB")
    store_off(sim)
    async with Store(db_url) as store:
        await store.upgrade()
    async with serve(sim.app) as url:
        checks = {c.subject: c for c in await diagnose(settings_for(db_url, url))}
    check = checks["acme/default"]
    assert check.level == "fail"
    assert "config.noweb.store.enabled" in check.detail
    assert "wasync sessions configure" in check.detail


async def test_the_poller_warns_once_then_polls_once_configured(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Cycles on a NOWEB session without its store: no error, one WARNING in all, one request
    each (the state); after `sessions configure` WAHA restarts it and the next cycle reads."""
    sim = WahaSim(api_key=KEY)
    sim.add_session("default", engine="NOWEB")
    store_off(sim)
    sim.add_incoming("default", "5531988887777", text="Oi", ts=int(time.time()) - 30)
    async with serve(sim.app) as url:
        settings = settings_for(db_url, url)
        async with httpx.AsyncClient() as client, polled(settings, client) as (store, poller):
            with caplog.at_level(logging.WARNING, logger="wasync.poller"):
                cycles = [await poller.cycle() for _ in range(5)]
            assert [(c.error, c.requests) for c in cycles] == [(None, 1)] * 5
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "noweb.store.enabled" in warnings[0].getMessage()
            assert poller.blocked is not None
            (done,) = await configure_all(settings)
            assert not isinstance(done, str) and done.changed
            assert sim.session("default").config["noweb"]["store"]["enabled"] is True
            assert sim.session("default").restarts == 1
            stats = await poller.cycle()
            assert stats.error is None and stats.new == 1 and poller.blocked is None
            async with store.read() as conn:
                assert (await conn.execute(text("SELECT body FROM messages"))).scalar() == "Oi"
        again = await configure_all(settings)
    assert [(d.changed, d.note) for d in again if not isinstance(d, str)] == [
        (False, "nothing to change")
    ]


async def test_webhooks_register_turns_the_store_on(tmp_path: Path) -> None:
    """Registering the webhook of a NOWEB session without its store turns it on too."""
    sim = WahaSim(api_key=KEY)
    sim.add_session("default", engine="NOWEB")
    store_off(sim)
    async with serve(sim.app) as url:
        settings = settings_for(f"sqlite+aiosqlite:///{tmp_path}/w.db", url)
        (state,) = await run_all(settings, public_url="https://crm.example")
    assert not isinstance(state, str) and state.changed and "noweb.store" in state.note
    assert sim.session("default").config["noweb"]["store"]["enabled"] is True


async def test_cli_sessions_configure(tmp_path: Path) -> None:
    """`wasync sessions configure` prints one line per session and exits 0."""
    sim = WahaSim(api_key=KEY)
    sim.add_session("default", engine="NOWEB")
    store_off(sim)
    async with serve(sim.app) as url:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wasync",
            "sessions",
            "configure",
            "--config",
            str(write_config(tmp_path, url)),
            env=env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("acme/default: updated - noweb.store.enabled turned on")
    assert sim.session("default").config["noweb"]["store"]["enabled"] is True
