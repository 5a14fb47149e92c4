"""Acceptance (issue 16): a simulator session that keeps answering WORKING but stops firing
webhooks turns STALLED in `wasync sessions`, `/metrics` and a `session:health` frame within two
reconciliation cycles, and goes back to OK when its webhooks resume; a USER never gets the
frame. A real daemon (`daemon.run`) on SQLite and Postgres, both simulators over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection, connect

from tests import test_webhook_e2e as e2e
from tests.daemon import running
from wasync import daemon
from wasync.auth import issue_token
from wasync.config import load
from wasync.webhooks import run_all

WAHA_KEY, EVO_KEY, HMAC, JWT_KEY = e2e.WAHA_KEY, e2e.EVO_KEY, e2e.HMAC, e2e.JWT_KEY
SECRET = "auth-secret-of-the-health-e2e-test-32b"
SESSIONS = ("acme/default", "acme/vendas")
Frame = dict[str, Any]


def write_config(path: Path, db_url: str, waha_url: str, evo_url: str) -> Path:
    """The TOML both the daemon and `wasync sessions` read: webhooks on, reconciling polls
    run by the test (the schedule's interval is an hour), the silence rule off."""
    path.write_text(
        f"""
[database]
url = "{db_url}"
[http]
port = 0
[webhook]
enabled = true
[poll]
reconcile_interval_s = 3600
jitter_s = 0
log_idle_cycles = false
[auth]
jwt_secret = "{SECRET}"
[health]
silence_s = 0
write_interval_s = 0
[[tenants]]
id = "acme"
admins = ["u1"]
[[tenants.sessions]]
name = "default"
provider = "waha"
base_url = "{waha_url}"
api_key = "{WAHA_KEY}"
webhook_secret = "{HMAC}"
[[tenants.sessions]]
name = "vendas"
provider = "evolution"
base_url = "{evo_url}"
api_key = "{EVO_KEY}"
webhook_secret = "{JWT_KEY}"
"""
    )
    return path


sims = e2e.sims  # both simulators on loopback, one WORKING session each


class Feed:
    """One `/ws` client's frames, read in the background."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[Frame] = []
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.conn:
            self.frames.append(json.loads(raw))
            self.arrived.set()

    async def until(self, done: Callable[[list[Frame]], bool], timeout_s: float = 60) -> None:
        """Wait until `done(frames)` holds."""
        async with asyncio.timeout(timeout_s):
            while not done(self.frames):
                self.arrived.clear()
                await self.arrived.wait()

    def health(self) -> list[tuple[str, str]]:
        """The `session:health` frames so far: (tenant/session, state)."""
        return [
            (f"{f['tenantId']}/{f['data']['session']}", f["data"]["state"])
            for f in self.frames
            if f["type"] == "session:health"
        ]


async def open_feed(base_url: str, user: str, role: str) -> Feed:
    """A `/ws` client of tenant acme."""
    tok = issue_token(SECRET, tenant_id="acme", user_id=user, role=role, ttl_s=3600)  # type: ignore[arg-type]
    url = base_url.replace("http://", "ws://") + "/ws"
    conn = await connect(url, additional_headers={"Authorization": f"Bearer {tok}"})
    return Feed(conn)


async def cycles(d: daemon.Daemon, n: int = 1) -> None:
    """`n` reconciliation cycles of every session, as the scheduler runs them."""
    for _ in range(n):
        for poller in d.pollers:
            stats = await poller.cycle()
            assert stats.error is None, stats.error


def states(d: daemon.Daemon) -> list[str | None]:
    """Each poller's last recorded health state."""
    return [p.health.last.state if p.health and p.health.last else None for p in d.pollers]


async def stalled_gauges(base_url: str) -> dict[str, float]:
    """`wasync_session_stalled` by session, from `/metrics`."""
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"{base_url}/metrics")).text
    out = {}
    for line in body.splitlines():
        if line.startswith("wasync_session_stalled{"):
            label = line.split('session="', 1)[1].split('"', 1)[0]
            out[label] = float(line.rsplit(" ", 1)[1])
    return out


async def sessions_table(config: Path) -> list[str]:
    """`wasync sessions --config CONFIG` as a user runs it: its output lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASYNC_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "wasync", "sessions", "--config", str(config)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode().splitlines()


def row_of(lines: list[str], label: str) -> list[str]:
    """The table row of a session, split into words."""
    (row,) = [line.split() for line in lines if line.startswith(label + " ")]
    return row


async def message_count(d: daemon.Daemon) -> int:
    """Messages stored."""
    async with d.store.read() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one())


async def wait_messages(d: daemon.Daemon, expected: int, timeout_s: float = 60) -> None:
    """Until `expected` messages are stored."""
    deadline = time.monotonic() + timeout_s
    while await message_count(d) != expected:
        assert time.monotonic() < deadline, f"{await message_count(d)} messages, not {expected}"
        await asyncio.sleep(0.05)


async def test_muted_webhooks_turn_the_session_stalled_within_two_cycles(
    db_url: str, sims: Any, tmp_path: Path
):
    """Webhooks delivering: OK. Muted (the session stays WORKING, messages keep landing in
    its store): the first reconciliation cycle recovers them, the second says STALLED, in
    `wasync sessions`, `wasync_session_stalled` and a `session:health` frame to the admin.
    Resumed: a delivered message and one more cycle make it OK again. The USER connected all
    along receives none of it."""
    waha, evo, waha_url, evo_url = sims
    config = write_config(tmp_path / "wasync.toml", db_url, waha_url, evo_url)
    settings = load(config, env={})
    async with running(settings) as d:
        admin = user = None
        try:
            await e2e.first_cycle(d)
            await run_all(settings, public_url=d.base_url)
            admin = await open_feed(d.base_url, "u1", "ADMIN")
            user = await open_feed(d.base_url, "u9", "USER")

            async def deliver(text_: str) -> None:
                w = waha.add_incoming("default", "5531988887777", text=text_)
                e = evo.add_incoming("vendas", "553188886666", text=text_)
                hooks = await waha.deliver_message("default", w, event="message.any")
                sent = await evo.deliver_message("vendas", e)
                if waha.muted:
                    assert hooks == [] and sent is None  # nothing fired
                else:
                    assert [h.status for h in hooks] == [200] and sent and sent.status == 200

            async with httpx.AsyncClient() as client:
                ready_ = (await client.get(f"{d.base_url}/readyz")).json()
            expected = {"database": "ok", "migrations": "ok", "scheduler": "ok"}
            if not d.store.is_sqlite:
                expected["leases"] = "ok"  # a Postgres node also holds its share of the sessions
            assert ready_["checks"] == expected
            await deliver("pelo webhook")
            await wait_messages(d, 2)
            await cycles(d)  # polling sees what the webhooks delivered: OK, and how much later
            assert states(d) == ["OK", "OK"]
            assert await stalled_gauges(d.base_url) == {s: 0.0 for s in SESSIONS}
            for poller in d.pollers:
                assert poller.health and poller.health.last
                lag = poller.health.last.webhook_lag_s
                assert lag is not None and 0 < lag < 120, lag

            waha.mute_webhooks("default")
            evo.mute_webhooks("vendas")
            await deliver("este webhook nunca veio")
            await cycles(d)  # the first cycle recovers them: a suspicion, not yet a verdict
            assert await message_count(d) == 4 and states(d) == ["OK", "OK"]
            await cycles(d)  # no webhook since: STALLED
            assert states(d) == ["STALLED", "STALLED"]
            assert await stalled_gauges(d.base_url) == {s: 1.0 for s in SESSIONS}
            stalled = [(s, "STALLED") for s in SESSIONS]
            await admin.until(lambda _f: sorted(admin.health()) == stalled)
            lines = await sessions_table(config)
            for label in SESSIONS:
                row = row_of(lines, label)
                assert "STALLED" in row and row[-1] == "1", lines  # recovered in the last hour
                assert any(x.startswith(f"{label}: STALLED since") for x in lines), lines

            waha.mute_webhooks("default", False)
            evo.mute_webhooks("vendas", False)
            await deliver("voltou")
            await wait_messages(d, 6)
            await cycles(d)
            assert states(d) == ["OK", "OK"]
            assert await stalled_gauges(d.base_url) == {s: 0.0 for s in SESSIONS}
            await admin.until(lambda _f: len(admin.health()) == 4)
            assert sorted(admin.health()[2:]) == [(s, "OK") for s in SESSIONS]
            lines = await sessions_table(config)
            assert all("OK" in row_of(lines, label) for label in SESSIONS), lines

            # The USER: a chat assigned to it is its sentinel; frames arrive in log order, so
            # by then every session:health row was judged (and withheld).
            async with httpx.AsyncClient(base_url=d.base_url) as client:
                async with d.store.read() as conn:
                    chat_id = (await conn.execute(text("SELECT min(id) FROM chats"))).scalar_one()
                tok = issue_token(SECRET, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=60)
                r = await client.post(
                    f"/api/chats/{chat_id}/assign",
                    json={"userId": "u9"},
                    headers={"Authorization": f"Bearer {tok}"},
                )
                assert r.status_code == 200, r.text
            await user.until(lambda f: any(x["type"] == "chat:updated" for x in f))
            assert user.health() == [] and admin.health()
        finally:
            for feed in (admin, user):
                if feed is not None:
                    await feed.conn.close()
                    feed.task.cancel()


async def test_history_older_than_the_daemon_is_not_a_missed_webhook(
    db_url: str, sims: Any, tmp_path: Path
):
    """Messages the providers hold from before the daemon started (an hour-old history, one
    from a minute ago while it was down) are stored by its first cycles with webhooks on, yet
    no webhook of this daemon could have delivered them: the sessions stay OK over three
    reconciliation cycles and `wasync_reconciled_messages_total` stays 0. A message after the
    start whose webhook never comes still stalls the session within two cycles."""
    waha, evo, waha_url, evo_url = sims
    now = int(time.time())
    for ts in (now - 3600, now - 3599, now - 60):
        waha.add_incoming("default", "5531988887777", text=f"antiga {ts}", ts=ts)
        evo.add_incoming("vendas", "553188886666", text=f"antiga {ts}", ts=ts)
    config = write_config(tmp_path / "wasync.toml", db_url, waha_url, evo_url)
    settings = load(config, env={})
    async with running(settings) as d:
        await run_all(settings, public_url=d.base_url)
        await cycles(d, 3)
        assert await message_count(d) == 6
        assert states(d) == ["OK", "OK"]
        assert await stalled_gauges(d.base_url) == {s: 0.0 for s in SESSIONS}
        assert e2e.reconciled(d) == 0
        waha.mute_webhooks("default")
        evo.mute_webhooks("vendas")
        waha.add_incoming("default", "5531988887777", text="este webhook nunca veio")
        evo.add_incoming("vendas", "553188886666", text="este webhook nunca veio")
        await cycles(d, 2)
        assert await message_count(d) == 8
        assert states(d) == ["STALLED", "STALLED"]
        assert e2e.reconciled(d) == 2
