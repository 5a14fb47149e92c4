"""Benchmark: do 10,000 unsigned garbage posts slow a signed webhook down, or fill the database?

Usage: .venv/bin/python scripts/bench_garbage.py [--garbage 10000] [--signed 300] [--pg-url URL]

Runs a real `wasync run` (webhooks on, one WAHA session with an HMAC key, the default
`[webhook]` caps) on a fresh SQLite file or, with `--pg-url`, a fresh Postgres database next to
that URL's. One client posts, one request at a time so that each latency is the server's
alone:

1. before: `--signed` signed `message` webhooks, each a new message (stored and committed);
2. during: the garbage (random bytes, cut and deep JSON, JSON of other shapes, bodies with a
   forged signature) from 20 loopback addresses, with a signed post after every 25 of them;
3. after: `--signed` signed posts again.

Signed posts come from their own address (127.0.0.2), garbage from 127.0.0.10-29: the
per-source limit applies to each. Prints the p50 (and p90) of each phase, the ratios against
"before", and what `dead_letters` holds; exits 1 when "during" or "after" is more than 20 %
slower than "before" or the unauthenticated sample is over its caps (issue 19).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from benchjson import Figure, add_json_option, write

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon import dead_letter_stats, drop_pg, fresh_pg, signed_waha_config, start_daemon

HMAC_KEY = "bench-garbage-hmac-key-at-least-32-bytes"
SAMPLE_ROWS, SAMPLE_BYTES = 100, 4096  # the defaults, written out to check against
TARGET = 1.20
EVERY = 25  # garbage posts between two signed ones in "during"


def config_text(db_url: str) -> str:
    """The daemon's config: one signed WAHA session, webhooks on, polling out of the way."""
    jwt_secret = "bench-garbage-jwt-secret-0123456789abc"
    return signed_waha_config(db_url, jwt_secret=jwt_secret, hmac_key=HMAC_KEY)


def signed_post(i: int) -> tuple[bytes, dict[str, str]]:
    """A WAHA `message` webhook for a new message, signed (waha.md 4, 5)."""
    phone = f"5531988{i % 1000:06d}"
    body = {
        "event": "message",
        "session": "default",
        "payload": {
            "id": f"false_{phone}@c.us_BENCH{uuid.uuid4().hex[:16].upper()}",
            "timestamp": int(time.time()),
            "from": f"{phone}@c.us",
            "fromMe": False,
            "body": f"mensagem {i}",
            "_data": {"notifyName": "Cliente"},
        },
    }
    raw = json.dumps(body).encode()
    sig = hmac.new(HMAC_KEY.encode(), raw, hashlib.sha512).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-webhook-hmac": sig,
        "x-webhook-hmac-algorithm": "sha512",
    }
    return raw, headers


def garbage(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    """One unsigned post of the kinds the issue saw kept: not JSON, not a webhook, forged."""
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 2048)), {}
    if kind == 1:
        raw, _ = signed_post(rng.randrange(10**6))
        return raw[: rng.randrange(1, len(raw))], {}
    if kind == 2:
        depth = rng.randrange(100, 5000)
        return b"[" * depth + b"]" * depth, {}
    if kind == 3:
        return json.dumps({"junk": rng.random(), "pad": "x" * rng.randrange(4096)}).encode(), {}
    raw, headers = signed_post(rng.randrange(10**6))
    return raw, {**headers, "x-webhook-hmac": "0" * 128}


def client(base: str, address: str) -> httpx.AsyncClient:
    """A keep-alive client posting from `address`."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=base, transport=transport, timeout=30)


async def timed(http: httpx.AsyncClient, i: int) -> float:
    """One signed post; its latency in ms (it must be stored: 200 with one new message)."""
    raw, headers = signed_post(i)
    started = time.perf_counter()
    resp = await http.post("/api/webhooks/waha", content=raw, headers=headers)
    ms = (time.perf_counter() - started) * 1000
    if resp.status_code != 200 or resp.json().get("new") != 1:
        raise SystemExit(f"signed post refused: {resp.status_code} {resp.text}")
    return ms


async def run(base: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """The three phases; latencies per phase."""
    rng = random.Random(19)
    signed = client(base, "127.0.0.2")
    sources = [client(base, f"127.0.0.{10 + i}") for i in range(20)]
    out: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    statuses: dict[int, int] = {}
    n = 0
    try:
        for _ in range(50):  # warm-up: connections, caches, the chats of the first numbers
            await timed(signed, n := n + 1)
        for _ in range(args.signed):
            out["before"].append(await timed(signed, n := n + 1))
        for g in range(args.garbage):
            raw, headers = garbage(rng)
            resp = await sources[g % len(sources)].post(
                "/api/webhooks/whatsapp", content=raw, headers=headers
            )
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            if g % EVERY == EVERY - 1:
                out["during"].append(await timed(signed, n := n + 1))
        for _ in range(args.signed):
            out["after"].append(await timed(signed, n := n + 1))
    finally:
        for c in (signed, *sources):
            await c.aclose()
    print("garbage answers: " + ", ".join(f"{s}={c}" for s, c in sorted(statuses.items())))
    return out


def pct(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(times: dict[str, list[float]], kept: dict[str, tuple[int, int]], backend: str) -> int:
    """Print the figures; the exit code."""
    base = statistics.median(times["before"])
    print(f"\n{backend}: signed webhook latency, one request at a time")
    print(f"{'phase':8} {'posts':>6} {'p50 ms':>8} {'p90 ms':>8} {'p50 / before':>13}")
    worst = 1.0
    for phase, values in times.items():
        p50 = statistics.median(values)
        ratio = p50 / base
        if phase != "before":
            worst = max(worst, ratio)
        print(f"{phase:8} {len(values):>6} {p50:>8.2f} {pct(values, 0.9):>8.2f} {ratio:>13.2f}")
    rows, largest = kept.get("unauthenticated", (0, 0))
    print(f"dead_letters: {kept}")
    capped = rows <= SAMPLE_ROWS and largest <= SAMPLE_BYTES
    print(f"unauthenticated sample: {rows} rows (cap {SAMPLE_ROWS}), largest {largest} bytes")
    print(f"{'OK  ' if capped else 'FAIL'} dead_letters within its caps")
    ok = worst <= TARGET
    print(f"{'OK  ' if ok else 'FAIL'} signed p50 at most {TARGET:.2f}x before (worst {worst:.2f})")
    return 0 if ok and capped else 1


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="wasync-bench-garbage-"))
    pg_name = None
    if args.pg_url:
        db_url, pg_name = await fresh_pg(args.pg_url, "wasync_bench")
    else:
        db_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    cfg = tmp / "wasync.toml"
    cfg.write_text(config_text(db_url))
    proc, base = await start_daemon(cfg, tmp / "wasync.log")
    try:
        times = await run(base, args)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    kept = {k: (rows, big) for k, (rows, _, big) in (await dead_letter_stats(db_url)).items()}
    if pg_name:
        await drop_pg(args.pg_url, pg_name)
    backend = "Postgres" if args.pg_url else "SQLite"
    base = statistics.median(times["before"])
    figures = [
        Figure(
            name=f"signed webhook p50, {phase} the garbage, {backend}",
            value=statistics.median(values),
            unit="ms",
            baseline=base,
            baseline_name="p50 before the garbage",
            ratio=statistics.median(values) / base,
            target="<= 1.2" if phase != "before" else "",
        )
        for phase, values in times.items()
    ]
    write(args.json, "bench_garbage", figures, garbage=args.garbage, signed=args.signed)
    return report(times, kept, backend.lower())


def cli() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--garbage", type=int, default=10_000)
    parser.add_argument("--signed", type=int, default=300)
    parser.add_argument("--pg-url", default=None)
    add_json_option(parser)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(cli())))
