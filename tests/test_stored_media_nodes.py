"""Two `wasync run` processes on one Postgres and one S3 bucket serve each other's media: a file
one node fetched is streamed by the other, and the other's WebSocket clients hear it stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect

from tests.daemon import start_daemon, stop_daemon, webhook_run_config, webhook_session
from tests.media_support import S3_KEY, S3_SECRET, make_bucket, moto_server
from wasync.auth import issue_token
from wasync.sim import WahaSim, media, serve, sign_body
from wasync.store import Store

SECRET = "jwt-secret-for-two-media-nodes-32-bytes"
HMAC = "hmac-secret-of-at-least-32-bytes-long"


def write_config(path: Path, db_url: str, waha_url: str, s3: tuple[str, str]) -> Path:
    """Webhooks on, polling slow, media in the shared bucket (credentials from the env)."""
    media_keys = {
        "backend": "s3",
        "dir": f"{path.with_suffix('')}-media",
        "s3_endpoint_url": s3[0],
        "s3_bucket": s3[1],
        "s3_access_key_id_env": "MEDIA_TEST_S3_KEY",
        "s3_secret_access_key_env": "MEDIA_TEST_S3_SECRET",
        "poll_interval_s": 0.2,
    }
    session = webhook_session(HMAC, base_url=waha_url, api_key="waha-sim-key")
    text = webhook_run_config(db_url, jwt_secret=SECRET, sessions=[session], media=media_keys)
    path.write_text(text)
    return path


async def post_webhook(sim: WahaSim, node: str, message_id: str) -> None:
    """The message's signed `message` webhook, to one node."""
    payload = sim.webhook_payload("default", message_id)
    body = json.dumps({"event": "message", "session": "default", "payload": payload}).encode()
    headers = {
        "content-type": "application/json",
        "x-webhook-hmac": sign_body(HMAC, body),
        "x-webhook-hmac-algorithm": "sha512",
    }
    async with httpx.AsyncClient() as http:
        resp = await http.post(f"{node}/api/webhooks/waha", content=body, headers=headers)
    assert resp.status_code == 200 and resp.json()["new"] == 1


async def row_id(db_url: str, bare: str) -> int:
    """The database id of a message, once it is stored."""
    async with Store(db_url) as store, store.read() as conn:
        query = text("SELECT id FROM messages WHERE provider_message_id = :p")
        return int((await conn.execute(query, {"p": bare})).scalar_one())


async def fetched(node: str, message_id: int, token: str) -> httpx.Response:
    """The media from `node`, waiting (generously) while it is PENDING."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers) as http, asyncio.timeout(60):
        while True:
            got = await http.get(f"{node}/api/messages/{message_id}/media")
            if got.status_code != 409:
                return got
            await asyncio.sleep(0.2)


async def test_each_node_serves_what_the_other_fetched(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A's webhook media is streamed by B (and B's clients get `chat:message-media`), and
    the other way round: one bucket, one database, no node-local file."""
    monkeypatch.setenv("MEDIA_TEST_S3_KEY", S3_KEY)  # the nodes read their S3 credentials
    monkeypatch.setenv("MEDIA_TEST_S3_SECRET", S3_SECRET)
    sim = WahaSim(api_key="waha-sim-key")
    sim.add_session("default", engine="GOWS")
    with moto_server() as endpoint:
        s3 = (endpoint, await make_bucket(endpoint))
        async with serve(sim.app) as waha_url:
            a, url_a = await start_daemon(
                write_config(tmp_path / "a.toml", pg_url, waha_url, s3), tmp_path / "a.log"
            )
            b, url_b = await start_daemon(
                write_config(tmp_path / "b.toml", pg_url, waha_url, s3), tmp_path / "b.log"
            )
            try:
                token = issue_token(SECRET, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=120)
                ws_url = url_b.replace("http://", "ws://") + f"/ws?token={token}"
                async with connect(ws_url, open_timeout=10) as client:
                    photo = sim.add_message("default", "5531988887777", media("image", size=90_000))
                    await post_webhook(sim, url_a, photo)
                    async with asyncio.timeout(60):
                        while True:
                            frame = json.loads(await client.recv())
                            if frame["type"] == "chat:message-media":
                                break
                    assert frame["data"]["mediaStatus"] == "STORED" and frame["chatId"]
                got = await fetched(url_b, frame["messageId"], token)
                assert got.status_code == 200
                assert got.content == sim.media_bytes("default", photo)
                doc = sim.add_message("default", "5531988887777", media("document", size=40_000))
                await post_webhook(sim, url_b, doc)
                back = await fetched(url_a, await row_id(pg_url, doc.split("_")[2]), token)
                assert back.status_code == 200
                assert back.content == sim.media_bytes("default", doc)
            finally:
                codes = [await stop_daemon(a), await stop_daemon(b)]
    assert codes == [0, 0]
