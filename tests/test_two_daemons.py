"""Two `wasync run` processes on one Postgres: a client of one sees what the other ingested."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.daemon import start_daemon, stop_daemon, webhook_run_config, webhook_session
from wasync.auth import issue_token
from wasync.sim import WahaSim, serve, sign_body

SECRET = "jwt-secret-for-two-daemons-at-least-32b"
HMAC = "hmac-secret-of-at-least-32-bytes-long"


def write_config(path: Path, db_url: str, waha_url: str) -> Path:
    """Webhooks on, polling slow (so the message surely comes through the webhook)."""
    session = webhook_session(HMAC, base_url=waha_url, api_key="waha-sim-key")
    path.write_text(webhook_run_config(db_url, jwt_secret=SECRET, sessions=[session]))
    return path


async def test_client_on_one_daemon_sees_what_the_other_ingested(pg_url: str, tmp_path: Path):
    """A webhook stored by daemon A reaches a WebSocket client of daemon B (LISTEN/NOTIFY)."""
    sim = WahaSim(api_key="waha-sim-key")
    sim.add_session("default", engine="GOWS")
    async with serve(sim.app) as waha_url:
        a, url_a = await start_daemon(
            write_config(tmp_path / "a.toml", pg_url, waha_url), tmp_path / "a.log"
        )
        b, url_b = await start_daemon(
            write_config(tmp_path / "b.toml", pg_url, waha_url), tmp_path / "b.log"
        )
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
            codes = [await stop_daemon(a), await stop_daemon(b)]
    assert codes == [0, 0]
