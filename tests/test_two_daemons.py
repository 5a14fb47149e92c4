"""Two `wasync run` processes on one Postgres: a client of one sees what the other ingested."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from wasync.auth import issue_token
from wasync.sim import WahaSim, serve, sign_body

SECRET = "jwt-secret-for-two-daemons-at-least-32b"
HMAC = "hmac-secret-of-at-least-32-bytes-long"


def write_config(path: Path, db_url: str, waha_url: str) -> Path:
    """Webhooks on, polling slow (so the message surely comes through the webhook)."""
    path.write_text(
        f"""
[database]
url = "{db_url}"
[poll]
reconcile_interval_s = 3600
[http]
port = 0
[webhook]
enabled = true
[auth]
jwt_secret = "{SECRET}"
[[tenants]]
id = "acme"
admins = ["u1"]
[[tenants.sessions]]
name = "default"
provider = "waha"
base_url = "{waha_url}"
api_key = "waha-sim-key"
webhook_secret = "{HMAC}"
"""
    )
    return path


async def start(config: Path) -> tuple[asyncio.subprocess.Process, str]:
    """A `wasync run` subprocess and the base URL it logged."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASYNC_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wasync",
        "run",
        "--config",
        str(config),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    async with asyncio.timeout(120):
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, "wasync run exited before it was ready"
            found = re.search(r"http (http://[\d.:]+)", line)
            if "wasync running" in line and found:
                return proc, found.group(1)


async def stop(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM, then the exit code."""
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode


async def test_client_on_one_daemon_sees_what_the_other_ingested(pg_url: str, tmp_path: Path):
    """A webhook stored by daemon A reaches a WebSocket client of daemon B (LISTEN/NOTIFY)."""
    sim = WahaSim(api_key="waha-sim-key")
    sim.add_session("default", engine="GOWS")
    async with serve(sim.app) as waha_url:
        a, url_a = await start(write_config(tmp_path / "a.toml", pg_url, waha_url))
        b, url_b = await start(write_config(tmp_path / "b.toml", pg_url, waha_url))
        try:
            token = issue_token(SECRET, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=60)
            ws_url = url_b.replace("http://", "ws://") + f"/ws?token={token}"
            async with connect(ws_url, open_timeout=10) as client:
                message_id = sim.add_incoming("default", "5531988887777", text="oi do A")
                body = json.dumps(
                    {
                        "event": "message",
                        "session": "default",
                        "payload": sim.webhook_payload("default", message_id),
                    }
                ).encode()
                headers = {
                    "content-type": "application/json",
                    "x-webhook-hmac": sign_body(HMAC, body),
                    "x-webhook-hmac-algorithm": "sha512",
                }
                async with httpx.AsyncClient() as http:
                    resp = await http.post(
                        f"{url_a}/api/webhooks/waha", content=body, headers=headers
                    )
                assert resp.status_code == 200 and resp.json()["new"] == 1
                async with asyncio.timeout(30):
                    while True:
                        frame = json.loads(await client.recv())
                        if frame["type"] == "chat:new-message":
                            break
                assert frame["message"]["body"] == "oi do A"
                assert frame["tenantId"] == "acme"
        finally:
            codes = [await stop(a), await stop(b)]
    assert codes == [0, 0]
