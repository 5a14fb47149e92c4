"""Fuzz a real `wasync run` with hostile webhooks and check that it holds.

Usage: .venv/bin/python scripts/fuzz_webhooks.py [--n 100000] [--pg-url URL] [--concurrency 8]

Starts the daemon (`python -m wasync run`, webhooks on, stderr to a file) on a fresh SQLite
file or, with `--pg-url`, a fresh Postgres database next to that URL's, with one session per
session / instance name in the provider samples, each with a secret. Then posts `--n` bodies
drawn from the strategies of `tests/strategies.py`:

- 45 % mutated provider samples, signed as their provider signs (WAHA HMAC, Evolution JWT):
  they go through authentication, the parsers, normalization and the store;
- 15 % mutated samples unsigned, 10 % with a wrong signature;
- 30 % garbage (random bytes, cut JSON, JSON nested 100,000 deep, other shapes).

Bodies come from 32 loopback source addresses (127.0.0.2 ...), so the per-source limit lets
them through. At the end it prints the status counts and checks, exiting 1 if one fails:

- no 5xx other than 503 (503 is the store's "try again");
- no traceback and no ERROR line in the daemon's log;
- the daemon alive (`/healthz` 200) and exiting 0 on SIGTERM;
- every kept `dead_letters` row tied to a session (authenticated), except the unauthenticated
  sample, which stays within `unauthenticated_sample_rows` rows of at most
  `unauthenticated_sample_bytes` bytes each.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon import (
    dead_letter_stats,
    drop_pg,
    fresh_pg,
    start_daemon,
    webhook_run_config,
    webhook_session,
)
from tests.strategies import (
    EVOLUTION_BODIES,
    WAHA_BODIES,
    dumps,
    garbage,
    waha_signature,
    webhook_bodies,
)

WAHA_KEY = "fuzz-waha-hmac-key-at-least-32-bytes-long"
EVO_KEY = "fuzz-evolution-jwt-key-at-least-32-bytes"
SAMPLE_ROWS, SAMPLE_BYTES = 100, 4096
CHUNK = 500
SOURCES = 32

Post = tuple[str, bytes, dict[str, str]]  # path, body, headers


def config_text(db_url: str) -> str:
    """One tenant with every session name of the samples, all with secrets; webhooks on."""
    waha = sorted({str(b["session"]) for b in WAHA_BODIES if isinstance(b.get("session"), str)})
    evo = sorted(
        {str(b["instance"]) for b in EVOLUTION_BODIES if isinstance(b.get("instance"), str)}
    )
    sessions = [
        webhook_session(key, name=name, provider=provider, enabled=True)
        for provider, names, key in (("waha", waha, WAHA_KEY), ("evolution", evo, EVO_KEY))
        for name in names
    ]
    webhook = {
        "rate_per_s": 100000,
        "burst": 100000,
        "unauthenticated_sample_rows": SAMPLE_ROWS,
        "unauthenticated_sample_bytes": SAMPLE_BYTES,
    }
    return webhook_run_config(
        db_url,
        jwt_secret="fuzz-jwt-secret-0123456789abcdef0123",
        sessions=sessions,
        webhook=webhook,
    )


def evo_jwt() -> dict[str, str]:
    """What Evolution sends with `headers.jwt_key`: a fresh HS256 token (evolution.md 3.3)."""
    now = int(time.time())
    claims = {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"}
    return {"authorization": f"Bearer {jwt.encode(claims, EVO_KEY, 'HS256')}"}


def draw_posts(n: int) -> list[Post]:
    """`n` requests drawn from the strategies (see the module docstring)."""
    out: list[Post] = []
    modes = ["signed"] * 9 + ["unsigned"] * 3 + ["forged"] * 2 + ["garbage"] * 6
    requests = st.sampled_from(modes).flatmap(
        lambda how: (
            garbage().map(lambda raw: (how, "", raw))
            if how == "garbage"
            else webhook_bodies().map(lambda case: (how, case[0], dumps(case[1])))
        )
    )

    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(requests)
    def draw(request: tuple[str, str, bytes]) -> None:
        how, provider, raw = request
        out.append(_post(how, provider, raw))

    draw()
    return out


def _post(how: str, provider: str, raw: bytes) -> Post:
    headers = {"content-type": "application/json"}
    if how == "garbage":
        return ("/api/webhooks/whatsapp", raw, headers)
    if how == "signed":
        headers |= waha_signature(WAHA_KEY, raw) if provider == "waha" else evo_jwt()
    elif how == "forged":
        forged = {"authorization": "Bearer forged"}
        headers |= waha_signature("not-the-key", raw) if provider == "waha" else forged
    return (f"/api/webhooks/{provider}", raw, headers)


async def post_all(
    base: str, posts: list[Post], concurrency: int, counts: collections.Counter[int]
) -> None:
    """Post every request, `concurrency` at a time, spread over the source addresses."""
    clients = [
        httpx.AsyncClient(
            base_url=base,
            timeout=60,
            transport=httpx.AsyncHTTPTransport(local_address=f"127.0.0.{2 + i}"),
        )
        for i in range(SOURCES)
    ]
    queue: asyncio.Queue[tuple[int, Post]] = asyncio.Queue()
    for item in enumerate(posts):
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            i, (path, body, headers) = queue.get_nowait()
            try:
                resp = await clients[i % SOURCES].post(path, content=body, headers=headers)
                counts[resp.status_code] += 1
            except httpx.HTTPError as exc:
                counts[-1] += 1
                print(f"transport error: {type(exc).__name__}: {exc}", file=sys.stderr)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        for c in clients:
            await c.aclose()


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="wasync-fuzz-"))
    pg_name = None
    if args.pg_url:
        db_url, pg_name = await fresh_pg(args.pg_url, "wasync_fuzz")
    else:
        db_url = f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}"
    cfg, log = tmp / "wasync.toml", tmp / "wasync.log"
    cfg.write_text(config_text(db_url))
    proc, base = await start_daemon(cfg, log)
    counts: collections.Counter[int] = collections.Counter()
    started = time.monotonic()
    try:
        done = 0
        drawing = asyncio.create_task(asyncio.to_thread(draw_posts, min(CHUNK, args.n)))
        while done < args.n:
            posts = await drawing
            done += len(posts)
            if done < args.n:  # draw the next chunk while this one is posted
                size = min(CHUNK, args.n - done)
                drawing = asyncio.create_task(asyncio.to_thread(draw_posts, size))
            await post_all(base, posts, args.concurrency, counts)
            print(f"{done}/{args.n} posted, {dict(sorted(counts.items()))}", flush=True)
        async with httpx.AsyncClient(base_url=base) as http:
            alive = (await http.get("/healthz")).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    elapsed = time.monotonic() - started
    kept = await dead_letter_stats(db_url)
    if pg_name:
        await drop_pg(args.pg_url, pg_name)
    lines = log.read_text(errors="replace").splitlines()
    return report(args, counts, kept, lines, alive, code, elapsed, log)


def report(
    args: argparse.Namespace,
    counts: collections.Counter[int],
    kept: dict[str, tuple[int, int, int]],
    lines: list[str],
    alive: bool,
    code: int,
    elapsed: float,
    log: Path,
) -> int:
    """Print the figures and the checks; the exit code."""
    bad_5xx = sum(n for status, n in counts.items() if status >= 500 and status != 503)
    tracebacks = sum("Traceback" in line for line in lines)
    errors = [line for line in lines if " ERROR " in line]
    untied = sum(untied for kind, (_, untied, _) in kept.items() if kind != "unauthenticated")
    sample_rows, _, sample_max = kept.get("unauthenticated", (0, 0, 0))
    backend = "postgres" if args.pg_url else "sqlite"
    print(f"\nbackend={backend} posts={sum(counts.values())} in {elapsed:.0f}s")
    print("statuses: " + ", ".join(f"{s}={n}" for s, n in sorted(counts.items())))
    print(f"5xx other than 503: {bad_5xx}; 503: {counts.get(503, 0)}")
    print(f"transport errors: {counts.get(-1, 0)}")
    print(f"log: {len(lines)} lines, {tracebacks} tracebacks, {len(errors)} ERROR lines ({log})")
    print(f"daemon alive at the end: {alive}; exit code after SIGTERM: {code}")
    print("dead_letters (rows, not tied to a session, largest body): " + str(kept))
    checks = {
        "no 5xx but 503": bad_5xx == 0,
        "no traceback in the log": tracebacks == 0,
        "no ERROR line in the log": not errors,
        "daemon alive, exit 0": alive and code == 0,
        "every kept body tied to a session": untied == 0,
        f"sample within {SAMPLE_ROWS} rows of {SAMPLE_BYTES} bytes": sample_rows <= SAMPLE_ROWS
        and sample_max <= SAMPLE_BYTES,
    }
    for name, ok in checks.items():
        print(f"{'OK  ' if ok else 'FAIL'} {name}")
    for line in errors[:5]:
        print(f"  {line}")
    return 0 if all(checks.values()) else 1


def cli() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="bodies to post")
    parser.add_argument("--pg-url", default=None, help="Postgres to create the database next to")
    parser.add_argument("--concurrency", type=int, default=8)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(cli())))
