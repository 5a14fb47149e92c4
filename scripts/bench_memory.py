"""Memory and idle CPU of a real `wasync run`: 1,000 sessions polled every 5 s, 1 M messages.

Usage: .venv/bin/python scripts/bench_memory.py [--sessions 1000] [--messages 1000000]
       [--soak-s 600] [--idle-s 30] [--pg-url URL] [--json FILE]

Loopback only; every phase is bounded and the run stops by itself. One WAHA simulator process
holds `--sessions` sessions (two chats of two messages each, so the first sync stores a little
and every later cycle is idle). The database is seeded by this script with bulk inserts before
the daemon starts (a fixture: chats and `--messages` messages spread over 10 chats a session;
wasync code writes nothing here), then `wasync run` polls all sessions every 5 s.

Figures, read from /proc of the daemon's process:
- RSS after the first sync and `--idle-s` of idle cycles (target < 200 MB);
- CPU per idle cycle: the daemon's CPU seconds over `--idle-s`, divided by the cycles of
  every session that really ran then (`wasync_poll_cycles_total`: a daemon behind its
  schedule runs fewer), as a share of one core at one cycle per 5 s (target < 10 %); beside
  it the idle simulator's share (the requests' other side);
- the soak: `--soak-s` of steady signed webhooks (10/s, new messages), the polling, and `/ws`
  traffic (20 clients reading every frame, one more connecting and leaving every 2 s); RSS
  sampled every 10 s, the growth from the first sample to the mean of the last three (target
  < 5 %).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from benchjson import Figure, add_json_option, write
from sqlalchemy import insert
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.daemon import drop_pg, fresh_pg, start_daemon
from wasync.auth import issue_token
from wasync.config import load
from wasync.registry import sync
from wasync.sim.waha.hooks import sign_body
from wasync.store import Store
from wasync.store import models as m

API_KEY = "bench-memory-waha-key"
HMAC_KEY = "bench-memory-hmac-key-at-least-32-bytes"
JWT_SECRET = "bench-memory-jwt-secret-0123456789abcdef"
TENANTS = 10
CHATS_PER_SESSION = 10
CHUNK = 20_000
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
TARGET_RSS_MB, TARGET_GROWTH, TARGET_IDLE = 200.0, 0.05, 0.10


# --- the simulator process ---------------------------------------------------------------------


async def sim_main(sessions: int) -> None:
    """One WAHA simulator with `sessions` sessions; prints its URL, serves until SIGTERM."""
    from sim_serve import serve

    from wasync.sim import WahaSim

    sim = WahaSim(api_key=API_KEY, seed=7)
    now = int(time.time())
    for i in range(sessions):
        name = session_name(i)
        sim.add_session(name)
        for c in range(2):
            chat = f"55319{i:04d}{c:04d}@c.us"
            for k in range(2):
                sim.add_incoming(name, chat, text=f"oi {k}", ts=now - 3600 + k)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(sim.app) as url:
        print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
        await stop.wait()


def session_name(i: int) -> str:
    """The i-th session's name."""
    return f"s{i:04d}"


@contextlib.asynccontextmanager
async def simulator(sessions: int) -> AsyncIterator[tuple[str, int]]:
    """The simulator child: its base URL and pid."""
    argv = [sys.executable, __file__, "--sim", "--sessions", str(sessions)]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 300)
        if not line:
            raise SystemExit("bench_memory: the simulator did not start")
        info = json.loads(line)
        yield info["url"], info["pid"]
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


# --- the daemon's world ------------------------------------------------------------------------


def config_text(db_url: str, sim_url: str, sessions: int) -> str:
    """`sessions` WAHA sessions over `TENANTS` tenants, polled every 5 s, webhooks on."""
    head = f"""
log_level = "INFO"
[database]
url = "{db_url}"
[poll]
interval_s = 5
reconcile_interval_s = 5  # webhooks on: the reconciling poll, as often as without them
[http]
port = 0
[webhook]
enabled = true
rate_per_s = 1000
burst = 1000
[auth]
jwt_secret = "{JWT_SECRET}"
"""
    parts = [head]
    per = sessions // TENANTS
    for t in range(TENANTS):
        parts.append(f'[[tenants]]\nid = "t{t}"\nadmins = ["admin{t}"]\n')
        for i in range(t * per, (t + 1) * per if t < TENANTS - 1 else sessions):
            parts.append(
                f'[[tenants.sessions]]\nname = "{session_name(i)}"\nprovider = "waha"\n'
                f'base_url = "{sim_url}"\napi_key = "{API_KEY}"\n'
                f'webhook_secret = "{HMAC_KEY}"\n'
            )
    return "\n".join(parts)


async def seed(db_url: str, config: Path, messages: int) -> float:
    """Schema, configured sessions, and `messages` stored messages in bulk; seconds taken."""
    started = time.monotonic()
    settings = load(config)
    async with Store(db_url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        refs = [(t.id, registry.get(t.id, s.name)) for t in settings.tenants for s in t.sessions]
        chats = await _seed_chats(store, [(t, ref.id) for t, ref in refs if ref is not None])
        await _seed_messages(store, chats, messages)
    return time.monotonic() - started


async def _seed_chats(store: Store, sessions: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    now = datetime.now(UTC)
    rows = [
        {
            "tenant_id": tenant,
            "session_id": sid,
            "kind": "direct",
            "jid": f"5521{sid:05d}{c:03d}@s.whatsapp.net",
            "phone": f"5521{sid:05d}{c:03d}",
            "status": "OPEN",
            "unread_count": 0,
            "created_at": now,
            "updated_at": now,
        }
        for tenant, sid in sessions
        for c in range(CHATS_PER_SESSION)
    ]
    table = m.Chat.__table__  # type: ignore[attr-defined]
    async with store.write() as conn:
        await conn.execute(insert(table), rows)
    async with store.read() as conn:
        found = await conn.execute(
            table.select().with_only_columns(table.c.tenant_id, table.c.id, table.c.session_id)
        )
        return [(t, cid, sid) for t, cid, sid in found]


async def _seed_messages(store: Store, chats: list[tuple[str, int, int]], total: int) -> None:
    table = m.Message.__table__  # type: ignore[attr-defined]
    start = datetime.now(UTC) - timedelta(days=30)
    for base in range(0, total, CHUNK):
        rows = []
        for n in range(base, min(total, base + CHUNK)):
            tenant, chat_id, sid = chats[n % len(chats)]
            rows.append(
                {
                    "tenant_id": tenant,
                    "chat_id": chat_id,
                    "session_id": sid,
                    "provider_message_id": f"SEED{n:09d}",
                    "from_me": n % 3 == 0,
                    "type": "text",
                    "body": f"mensagem de histórico número {n}",
                    "media_voice": False,
                    "media_status": "NONE",
                    "media_attempts": 0,
                    "sent_at": start + timedelta(seconds=n * 2),
                    "edited": False,
                    "revoked": False,
                    "source": "backfill",
                    "created_at": start,
                }
            )
        async with store.write() as conn:
            await conn.execute(insert(table), rows)


# --- /proc ---------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size in MiB."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def rss_parts_mb(pid: int) -> dict[str, float]:
    """RSS split as the kernel counts it: `anon` (the heap), `file` (mapped files: libraries,
    SQLite's pages if mapped), `shmem` (shared memory: SQLite's WAL index), in MiB."""
    parts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("RssAnon", "RssFile", "RssShmem"):
                parts[name[3:].lower()] = int(rest.split()[0]) / 1024
    return parts


def cpu_s(pid: int) -> float:
    """User + system CPU seconds so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def cpu_share(pids: list[int], seconds: float) -> list[float]:
    """Each process's CPU over `seconds` of wall time, as a share of one core."""
    before, t0 = [cpu_s(p) for p in pids], time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    return [(cpu_s(p) - b) / wall for p, b in zip(pids, before, strict=True)]


# --- the soak ------------------------------------------------------------------------------------


def signed(i: int, sessions: int) -> tuple[bytes, dict[str, str]]:
    """A WAHA `message` webhook for a new message to one of the sessions, signed."""
    phone = f"5531977{i % 5000:06d}"
    payload = {
        "id": f"false_{phone}@c.us_SOAK{uuid.uuid4().hex[:16].upper()}",
        "timestamp": int(time.time()),
        "from": f"{phone}@c.us",
        "fromMe": False,
        "body": f"soak {i}",
    }
    raw = json.dumps(
        {"event": "message", "session": session_name(i % sessions), "payload": payload}
    )
    body = raw.encode()
    headers = {"x-webhook-hmac": sign_body(HMAC_KEY, body), "x-webhook-hmac-algorithm": "sha512"}
    return body, {"content-type": "application/json", **headers}


async def webhooks(base: str, sessions: int, stop: asyncio.Event, rate: float = 10) -> int:
    """Signed webhooks at `rate` a second until `stop`; how many were answered 200."""
    ok, i = 0, 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        while not stop.is_set():
            raw, headers = signed(i, sessions)
            resp = await http.post("/api/webhooks/waha", content=raw, headers=headers)
            ok += resp.status_code == 200
            i += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / rate)
    return ok


async def reader(url: str, token: str, stop: asyncio.Event) -> int:
    """A `/ws` client reading every frame until `stop`; frames read."""
    frames = 0
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.recv(), 1)
                frames += 1
    return frames


async def churn(url: str, token: str, stop: asyncio.Event) -> int:
    """A client that connects, reads for a moment and leaves, every 2 s; connections made."""
    made = 0
    while not stop.is_set():
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            made += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2)
    return made


async def soak(base: str, pid: int, sessions: int, seconds: float) -> dict[str, Any]:
    """Steady traffic for `seconds`; RSS every 10 s."""
    stop = asyncio.Event()
    ws_url = base.replace("http://", "ws://") + "/ws"
    tokens = [
        issue_token(
            JWT_SECRET,
            tenant_id=f"t{k % TENANTS}",
            user_id=f"admin{k % TENANTS}",
            role="ADMIN",
            ttl_s=seconds + 3600,
        )
        for k in range(21)
    ]
    tasks = [asyncio.create_task(webhooks(base, sessions, stop))]
    tasks += [asyncio.create_task(reader(ws_url, t, stop)) for t in tokens[:20]]
    tasks.append(asyncio.create_task(churn(ws_url, tokens[20], stop)))
    samples: list[float] = []
    t0 = time.monotonic()
    while True:
        samples.append(rss_mb(pid))
        parts = " ".join(f"{k} {v:.1f}" for k, v in rss_parts_mb(pid).items())
        print(
            f"  soak {time.monotonic() - t0:5.0f} s: RSS {samples[-1]:.1f} MiB ({parts})",
            flush=True,
        )
        if time.monotonic() - t0 >= seconds:
            break
        await asyncio.sleep(min(10, max(0.0, seconds - (time.monotonic() - t0))))
    stop.set()
    posted, *rest = await asyncio.gather(*tasks)
    tail = samples[-3:]
    growth = (sum(tail) / len(tail)) / samples[0] - 1
    return {
        "samples_mb": samples,
        "growth": growth,
        "webhooks": posted,
        "frames": sum(rest[:-1]),
        "connections": rest[-1],
    }


# --- main ----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(pg_url: str | None) -> AsyncIterator[tuple[str, str]]:
    """A fresh SQLite file, or a fresh Postgres database next to `pg_url`."""
    if not pg_url:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'memory.db'}", "SQLite"
        return
    url, name = await fresh_pg(pg_url, "wasync_bench_memory")
    try:
        yield url, "Postgres"
    finally:
        await drop_pg(pg_url, name)


async def wait_synced(base: str, sessions: int, timeout_s: float = 600) -> float:
    """Wait until every session's first sync stored its 4 messages (`/metrics`)."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        while time.monotonic() - started < timeout_s:
            text = (await http.get("/metrics")).text
            stored = _metric(text, "wasync_messages_ingested_total")
            if stored is not None and stored >= 4 * sessions:
                return time.monotonic() - started
            await asyncio.sleep(2)
    raise SystemExit(f"bench_memory: the first sync did not finish in {timeout_s:.0f} s")


def _metric(text: str, name: str) -> float | None:
    total = None
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


async def poll_cycles(base: str) -> float:
    """Poll cycles run so far (`/metrics`)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        return _metric((await http.get("/metrics")).text, "wasync_poll_cycles_total") or 0.0


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Seed, start, measure idle, soak; print and return the figures."""
    async with (
        database(args.pg_url) as (db_url, backend),
        simulator(args.sessions) as (
            sim_url,
            sim_pid,
        ),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "wasync.toml"
            config.write_text(config_text(db_url, sim_url, args.sessions))
            seeded_s = await seed(db_url, config, args.messages)
            print(f"{backend}: seeded {args.messages:,} messages in {seeded_s:.0f} s", flush=True)
            proc, base = await start_daemon(config, Path(tmp) / "wasync.log")
            try:
                synced_s = await wait_synced(base, args.sessions)
                print(f"first sync of {args.sessions} sessions: {synced_s:.0f} s", flush=True)
                await asyncio.sleep(10)  # the cycles after it: idle
                cycles0 = await poll_cycles(base)
                daemon_idle, sim_idle = await cpu_share([proc.pid, sim_pid], args.idle_s)
                cycles = (await poll_cycles(base) - cycles0) / args.sessions
                rss_idle = rss_mb(proc.pid)
                soaked = await soak(base, proc.pid, args.sessions, args.soak_s)
            finally:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 30)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    result = {
        "backend": backend,
        "sessions": args.sessions,
        "messages": args.messages,
        "rss_idle_mb": rss_idle,
        "idle_core_share": daemon_idle,
        # CPU of one cycle of every session, from the cycles that really ran in the window
        # (a daemon behind its schedule runs fewer: its share of a core alone would flatter it)
        "idle_cycle_cpu_s": daemon_idle * args.idle_s / cycles if cycles else float("nan"),
        "idle_cycles_per_5s": cycles * 5 / args.idle_s,
        "idle_cycle_core_share": (daemon_idle * args.idle_s / cycles / 5) if cycles else 1.0,
        "sim_core_share": sim_idle,
        "soak_s": args.soak_s,
        **{f"soak_{k}": v for k, v in soaked.items()},
    }
    report(result)
    return result


def report(r: dict[str, Any]) -> None:
    """The figures against their targets."""

    def verdict(ok: bool) -> str:
        return "OK  " if ok else "MISS"

    print(
        f"\n{r['backend']}: wasync run, {r['sessions']:,} sessions polled every 5 s, "
        f"{r['messages']:,} stored messages"
    )
    print(
        f"{verdict(r['rss_idle_mb'] < TARGET_RSS_MB)} RSS idle: {r['rss_idle_mb']:.1f} MiB "
        f"(target < {TARGET_RSS_MB:.0f})"
    )
    print(
        f"{verdict(r['idle_cycle_core_share'] < TARGET_IDLE)} CPU per idle cycle of every "
        f"session: {r['idle_cycle_cpu_s']:.2f} s, {100 * r['idle_cycle_core_share']:.1f} % of "
        f"one core at one cycle per 5 s (target < 10 %); the daemon ran "
        f"{r['idle_cycles_per_5s']:.2f} cycles per 5 s using {100 * r['idle_core_share']:.1f} % "
        f"of a core; the simulator answering: {100 * r['sim_core_share']:.1f} %"
    )
    s = r["soak_samples_mb"]
    print(
        f"{verdict(r['soak_growth'] < TARGET_GROWTH)} soak {r['soak_s']:.0f} s: RSS "
        f"{s[0]:.1f} -> {s[-1]:.1f} MiB (max {max(s):.1f}), growth "
        f"{100 * r['soak_growth']:+.1f} % (target < 5 %); {r['soak_webhooks']} webhooks, "
        f"{r['soak_frames']} frames to 20 clients, {r['soak_connections']} short connections"
    )


def figures(r: dict[str, Any]) -> list[Figure]:
    """The machine-readable figures (`--json`)."""
    size = f"{r['sessions']:,} sessions, {r['messages']:,} messages, {r['backend']}"
    s = r["soak_samples_mb"]
    return [
        Figure(name=f"wasync run RSS, {size}", value=r["rss_idle_mb"], unit="MiB",
               target=f"< {TARGET_RSS_MB:.0f}"),
        Figure(name=f"CPU per idle poll cycle (5 s), {size}",
               value=100 * r["idle_cycle_core_share"], unit="% of one core",
               target="< 10"),
        Figure(name=f"RSS growth over a {r['soak_s']:.0f} s soak (webhooks, polls, /ws), "
                    f"from {s[0]:.0f} MiB", value=100 * r["soak_growth"], unit="%",
               target="< 5"),
    ]  # fmt: skip


def cli() -> argparse.Namespace:
    """Command-line options (`--sim`: the simulator child)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--soak-s", type=float, default=600)
    ap.add_argument("--idle-s", type=float, default=30)
    ap.add_argument("--pg-url", default=None)
    add_json_option(ap)
    ap.add_argument("--sim", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args()


if __name__ == "__main__":
    options = cli()
    if options.sim:
        asyncio.run(sim_main(options.sessions))
    else:
        result = asyncio.run(main(options))
        write(options.json, "bench_memory", figures(result), **result)
