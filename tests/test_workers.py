"""`wasync run --workers N`: several processes answering on one port (Postgres), every webhook
stored once whichever process took it, a clean stop; refused on SQLite with one line."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from tests.daemon import signed_waha_config, start_daemon
from tests.strategies import waha_signature

HMAC_KEY = "workers-test-hmac-key-at-least-32-bytes"


def write_config(path: Path, db_url: str) -> Path:
    """Webhooks on, one signed WAHA session whose provider is not there (polling fails)."""
    jwt_secret = "workers-test-jwt-secret-0123456789abcdef"
    path.write_text(signed_waha_config(db_url, jwt_secret=jwt_secret, hmac_key=HMAC_KEY))
    return path


def webhook(i: int) -> bytes:
    """A WAHA `message` webhook for message `i` (10 numbers)."""
    phone = f"55319888{i % 10:05d}"
    body = {
        "event": "message",
        "session": "default",
        "payload": {
            "id": f"false_{phone}@c.us_WORKERS{i:06d}",
            "timestamp": 1764000000 + i,
            "from": f"{phone}@c.us",
            "fromMe": False,
            "body": f"mensagem {i}",
        },
    }
    return json.dumps(body).encode()


async def fresh_post(base: str, raw: bytes) -> httpx.Response:
    """One post on a new connection (the kernel picks the worker per connection)."""
    headers = {"content-type": "application/json", **waha_signature(HMAC_KEY, raw)}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        return await http.post("/api/webhooks/whatsapp", content=raw, headers=headers)


async def pids_answering(base: str, tries: int = 200) -> set[int]:
    """The processes seen answering `/healthz` over new connections (stops at 2)."""
    seen: set[int] = set()
    for _ in range(tries):
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            resp = await http.get("/healthz")
        assert resp.status_code == 200, resp.text
        seen.add(resp.json()["pid"])
        if len(seen) >= 2:
            break
    return seen


async def messages(db_url: str) -> list[str]:
    """The stored provider message ids."""
    url = make_url(db_url).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        rows = await conn.fetch("SELECT provider_message_id FROM messages")
    finally:
        await conn.close()
    return [r[0] for r in rows]


async def test_workers_share_one_port_and_store_each_message_once(
    tmp_path: Path, pg_url: str
) -> None:
    """`--workers 2` on Postgres: two pids answer on the one announced port; 30 webhooks, each
    posted twice on new connections, are all answered 200 and stored once; SIGTERM stops both
    processes with exit 0."""
    cfg = write_config(tmp_path / "wasync.toml", pg_url)
    proc, base = await start_daemon(cfg, tmp_path / "wasync.log", extra_args=["--workers", "2"])
    try:
        pids = await pids_answering(base)
        assert len(pids) == 2 and proc.pid in pids, pids
        bodies = [webhook(i) for i in range(30)]
        answers = await asyncio.gather(*(fresh_post(base, raw) for raw in bodies + bodies))
        assert [a.status_code for a in answers] == [200] * 60, [a.text for a in answers]
        assert sum(a.json()["new"] for a in answers) == 30
        stored = await messages(pg_url)
        assert len(stored) == len(set(stored)) == 30
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0
    log = (tmp_path / "wasync.log").read_text()
    assert "http workers 1-1 serving port" in log and "Traceback" not in log
    (child,) = pids - {proc.pid}
    assert not await asyncio.to_thread(Path(f"/proc/{child}").exists)  # stopped with it


async def test_workers_refused_on_sqlite(tmp_path: Path) -> None:
    """`--workers 2` on SQLite: one line naming the option and Postgres, exit 2, no server."""
    cfg = write_config(tmp_path / "wasync.toml", f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "wasync", "run", "--config", str(cfg), "--workers", "2"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "--workers" in lines[0] and "Postgres" in lines[0], lines
    assert out == b""
    assert not (tmp_path / "w.db").exists()  # refused before the database was opened
