"""Media benchmarks: ingest never waits on a download; a file streams with flat memory.

1. Webhook latency with media on and off: `wasync run` (its own process, SQLite) takes 200
   signed WAHA webhooks of 200 KB images, one at a time, from a WAHA simulator in this process;
   p50/p99 of the answer with `[media] enabled = true` against the same run with it off, and
   how long after the last answer every file was STORED.
2. RSS while `GET /api/messages/{id}/media` streams a 50 MB file (and a `Range` is checked),
   against the same process answering `/healthz` for as long: the peak growth of the daemon's
   resident memory, sampled from /proc every 5 ms.

    .venv/bin/python scripts/bench_media.py
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import queue
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from benchjson import Figure, add_json_option, write
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon import webhook_run_config, webhook_session
from wasync.auth import issue_token
from wasync.config import parse
from wasync.events import Address, Media, MediaClaim, MediaStored, Message, MessageType
from wasync.media import LocalStore
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.sim import WahaSim, media, serve, sign_body
from wasync.sim.content import Content
from wasync.sim.files import file_bytes
from wasync.store import Store

HMAC = "hmac-secret-of-at-least-32-bytes-long"
JWT = "jwt-secret-for-the-media-benchmark-32b"
WEBHOOKS = 200
BIG = 50 * 1024 * 1024
PENDING = text("SELECT count(*) FROM messages WHERE media_status = 'PENDING'")


def config(dir_: Path, waha_url: str, *, media_on: bool, enabled_session: bool = True) -> Path:
    """A `wasync run` config: SQLite in `dir_`, webhooks on, polling off in practice."""
    path = dir_ / "wasync.toml"
    session = webhook_session(
        HMAC, base_url=waha_url, api_key="waha-sim-key", enabled=enabled_session
    )
    path.write_text(
        webhook_run_config(
            f"sqlite+aiosqlite:///{dir_ / 'wasync.db'}",
            jwt_secret=JWT,
            sessions=[session],
            log_level="WARNING",
            webhook={"rate_per_s": 100000, "burst": 100000},
            media={"enabled": media_on, "dir": str(dir_ / "media")},
        )
    )
    return path


@asynccontextmanager
async def daemon(path: Path) -> AsyncIterator[tuple[int, str]]:
    """`wasync run --config path` in its own process: (pid, base URL)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasync", "run", "--config", str(path),
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "WASYNC_LOG_LEVEL": "INFO"},
    )  # fmt: skip
    assert proc.stderr is not None
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise SystemExit("wasync run exited before it was ready")
            found = re.search(r"http (http://[\d.:]+)", line)
            if "wasync running" in line and found:
                break
    drain = asyncio.create_task(proc.stderr.read())
    try:
        yield proc.pid, found.group(1)
    finally:
        proc.terminate()
        await proc.wait()
        drain.cancel()


def envelope(sim: WahaSim, message_id: str) -> bytes:
    """The body WAHA posts: its `media.url` names WAHA's public URL, which wasync maps onto
    the session's base URL (waha.md 7)."""
    payload = sim.webhook_payload("default", message_id)
    return json.dumps({"event": "message", "session": "default", "payload": payload}).encode()


@contextmanager
def sim_thread(sim: WahaSim) -> Iterator[str]:
    """The simulator served from its own thread and event loop, so serving files never
    delays the client measuring the webhooks; yields its base URL."""
    urls: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    async def serve_until_stopped() -> None:
        async with serve(sim.app) as url:
            urls.put(url)
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=lambda: asyncio.run(serve_until_stopped()), daemon=True)
    thread.start()
    try:
        yield urls.get(timeout=30)
    finally:
        stop.set()
        thread.join(10)


async def webhooks(media_on: bool) -> tuple[list[float], float | None]:
    """Answer times of the webhooks, and how long after the last every file was stored."""
    sim = WahaSim(api_key="waha-sim-key")
    sim.add_session("default", engine="GOWS")
    ids = [sim.add_message("default", f"55319888800{i % 50:02d}", media("image", size=200_000))
           for i in range(WEBHOOKS)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, sim_thread(sim) as waha_url:
        bodies = [envelope(sim, message_id) for message_id in ids]
        path = config(Path(tmp), waha_url, media_on=media_on)
        async with daemon(path) as (_pid, url), httpx.AsyncClient() as http:
            times = []
            for body in bodies:
                headers = {"x-webhook-hmac": sign_body(HMAC, body),
                           "x-webhook-hmac-algorithm": "sha512",
                           "content-type": "application/json"}  # fmt: skip
                started = time.perf_counter()
                resp = await http.post(f"{url}/api/webhooks/waha", content=body, headers=headers)
                times.append(time.perf_counter() - started)
                assert resp.status_code == 200, resp.text
            last = time.perf_counter()
            stored_after = await all_stored(Path(tmp) / "wasync.db", last) if media_on else None
    return times, stored_after


async def all_stored(db: Path, since: float) -> float:
    async with Store(f"sqlite+aiosqlite:///{db}") as store:
        left = 1
        while left:
            await asyncio.sleep(0.05)
            async with store.read() as conn:
                left = (await conn.execute(PENDING)).scalar() or 0
        return time.perf_counter() - since


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def sample(pid: int, stop: asyncio.Event) -> int:
    """Peak RSS (KiB) until `stop`."""
    peak = rss_kb(pid)
    while not stop.is_set():
        peak = max(peak, rss_kb(pid))
        await asyncio.sleep(0.005)
    return peak


async def prepare_big(dir_: Path) -> tuple[int, bytes]:
    """A STORED 50 MB video in the database and the local store; (message id, bytes)."""
    content = Content(kind="video", mimetype="video/mp4", size=BIG)
    raw = file_bytes(content, "bench")
    settings = parse({"database": {"url": f"sqlite+aiosqlite:///{dir_ / 'wasync.db'}"},
                      "tenants": [{"id": "acme", "sessions": [
                          {"name": "default", "provider": "waha", "base_url": "http://127.0.0.1:9",
                           "enabled": False}]}]})  # fmt: skip
    async with Store.from_config(settings.database) as store:
        await store.upgrade()
        sid = next(iter(await sync(store, settings))).id
        event = Message(
            session_id=sid,
            provider_message_id="BIG",
            chat=Address(jid="5511977776666@s.whatsapp.net", phone="5511977776666"),
            from_me=False,
            type=MessageType.VIDEO,
            timestamp=datetime.now(UTC),
            media=Media(mimetype="video/mp4", filename="video.mp4"),
        )
        async with Pipeline(store, media=True) as pipeline:
            await pipeline.ingest([event], source="webhook")
            (job,) = await pipeline.execute(MediaClaim(limit=1, per_session=1, lease_s=60))
            key = hashlib.sha256(raw).hexdigest()
            local = await LocalStore(dir_ / "media").__aenter__()
            part = local.scratch / "big.part"
            part.write_bytes(raw)
            await local.put(key, part, content_type="video/mp4")
            await pipeline.execute(MediaStored(message_id=job["id"], key=key, size=BIG,
                                               mimetype="video/mp4"))  # fmt: skip
    return int(job["id"]), raw


async def streaming() -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        dir_ = Path(tmp)
        message_id, raw = await prepare_big(dir_)
        path = config(dir_, "http://127.0.0.1:9", media_on=True, enabled_session=False)
        token = issue_token(JWT, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=600)
        headers = {"Authorization": f"Bearer {token}"}
        async with daemon(path) as (pid, url), httpx.AsyncClient(headers=headers) as http:
            await http.get(f"{url}/healthz")
            before = rss_kb(pid)
            stop = asyncio.Event()
            peak_task = asyncio.create_task(sample(pid, stop))
            started = time.perf_counter()
            digest, size = hashlib.sha256(), 0
            async with http.stream("GET", f"{url}/api/messages/{message_id}/media") as resp:
                async for chunk in resp.aiter_bytes():
                    digest.update(chunk)
                    size += len(chunk)
            elapsed = time.perf_counter() - started
            stop.set()
            peak = await peak_task
            assert size == BIG and digest.hexdigest() == hashlib.sha256(raw).hexdigest()
            span = (25 * 1024 * 1024, 26 * 1024 * 1024 - 1)
            part = await http.get(f"{url}/api/messages/{message_id}/media",
                                  headers={"Range": f"bytes={span[0]}-{span[1]}"})  # fmt: skip
            assert part.status_code == 206 and part.content == raw[span[0] : span[1] + 1]
            base_before = rss_kb(pid)
            stop = asyncio.Event()
            base_task = asyncio.create_task(sample(pid, stop))
            deadline = time.perf_counter() + elapsed
            while time.perf_counter() < deadline:
                await http.get(f"{url}/healthz")
            stop.set()
            base_peak = await base_task
    grow, base_grow = (peak - before) / 1024, (base_peak - base_before) / 1024
    print(f"streaming 50 MB through GET /api/messages/{{id}}/media: {elapsed:.2f} s, "
          f"{BIG / 1048576 / elapsed:.0f} MB/s")  # fmt: skip
    print(f"  daemon RSS peak growth: {grow:.1f} MiB ({grow / 50:.3f} of the file's size); "
          f"same process answering /healthz as long: {base_grow:.1f} MiB")  # fmt: skip
    print("  Range bytes=25MiB..26MiB-1: 206, exact bytes")
    return elapsed, grow, base_grow


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


async def main(json_path: Path | None) -> None:
    off, _ = await webhooks(media_on=False)
    on, stored_after = await webhooks(media_on=True)
    p50_on, p50_off = statistics.median(on) * 1000, statistics.median(off) * 1000
    print(f"webhook answered, {WEBHOOKS} image webhooks one at a time:")
    print(f"  media off: p50 {p50_off:.1f} ms, p99 {pct(off, 0.99):.1f} ms")
    print(f"  media on:  p50 {p50_on:.1f} ms, p99 {pct(on, 0.99):.1f} ms "
          f"(ratio on/off {p50_on / p50_off:.2f})")  # fmt: skip
    print(f"  every file STORED {stored_after:.2f} s after the last webhook was answered")
    elapsed, grow, base_grow = await streaming()
    figures = [
        Figure(name="webhook answered, image webhooks, media on (p50)", value=p50_on, unit="ms",
               baseline=p50_off, baseline_name="media off", ratio=p50_on / p50_off),
        Figure(name="every file STORED after the last webhook was answered",
               value=stored_after, unit="s"),
        Figure(name="streaming a 50 MB file", value=elapsed, unit="s"),
        Figure(name="daemon RSS peak growth while streaming 50 MB", value=grow, unit="MiB",
               baseline=base_grow, baseline_name="answering /healthz as long"),
    ]  # fmt: skip
    write(json_path, "bench_media", figures, webhooks=WEBHOOKS)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_json_option(parser)
    asyncio.run(main(parser.parse_args().json))
