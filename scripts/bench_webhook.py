"""Benchmark wasync's webhook endpoint against the HTTP stack's limit and the CRM plan's handler.

Usage: .venv/bin/python scripts/bench_webhook.py [--pg-url URL] [--no-sqlite] [--rounds 3]
       [--duration-s 4] [--connections 32] [--workers 2] [--quick] [--json [FILE]] [--loader auto]

Load generator: `wrk` (install it with `apt-get install -y wrk`); without it (or with
`--loader python`) `scripts/bench_webhook_load.py`, an asyncio raw-socket client, runs in its own
process instead. Postgres runs when `--pg-url` or `WASYNC_TEST_PG_URL` is set (throwaway
databases next to that URL's, dropped at the end).

On each backend, one process each, all on the same HTTP stack (`wasync.api.server.serve`: the
same uvicorn settings and event loop), the same bodies (distinct WAHA `message` webhooks over
1,000 phones, HMAC-signed) and the same `--connections` keep-alive connections:

- `empty`: an empty Starlette handler (`scripts/bench_webhook_servers.py empty`);
- `plan`: the CRM plan's per-request handler (find chat, lead, insert, commit; sqlmodel);
- `wasync`: a real `wasync run`, `POST /api/webhooks/whatsapp` (2xx only after the commit);
- `wasync x N` (Postgres): `wasync run --workers N`.

They take turns (`--rounds`, each turn `--duration-s`), every turn with new message ids; after
each wasync and plan turn the stored rows are counted: at least every 2xx must be there
("committed before 2xx"), else the script exits 1. Then wasync runs once more, open-loop at half
its median maximum rate (the asyncio client), for the latency at that load. Prints medians and
ranges of rate, p50, p99, the ratios wasync / empty and wasync / plan (medians of the rounds'
ratios); `--json FILE` writes the figures for `scripts/bench_all`, `--json` alone prints a last
line `{"bench": "webhook", ...}`.
127.0.0.1 only; everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_webhook_run import Server, run_load, start_server
from benchjson import Figure, write

from tests.daemon import drop_pg, fresh_pg, signed_waha_config, start_daemon

HERE = Path(__file__).resolve().parent
HMAC_KEY = "bench-webhook-hmac-key-at-least-32-bytes"
PATH = "/api/webhooks/whatsapp"
PHONES = 1000
TARGETS = {"empty": 0.5, "plan": 5.0, "workers": 1.5, "p99_half_ms": 50.0}


def config_text(db_url: str, batch_max_wait_ms: float = 0.0) -> str:
    """`wasync run`'s config: one signed WAHA session, webhooks on, limits out of the way."""
    limits = dict.fromkeys(("rate_per_s", "burst", "source_rate_per_s", "source_burst"), 1000000)
    return signed_waha_config(
        db_url,
        jwt_secret="bench-webhook-jwt-secret-0123456789abcdef",
        hmac_key=HMAC_KEY,
        database={"batch_max_wait_ms": batch_max_wait_ms},
        webhook=limits,
    )


def write_bodies(path: Path, tag: str, n: int) -> Path:
    """`n` signed WAHA `message` webhooks, ids unique to `tag`, over `PHONES` numbers: one
    `<hex HMAC>\\t<JSON>` a line."""
    now = int(time.time())
    key = HMAC_KEY.encode()
    with path.open("wb") as out:
        for i in range(n):
            phone = f"5531988{i % PHONES:06d}"
            body = {
                "event": "message",
                "session": "default",
                "payload": {
                    "id": f"false_{phone}@c.us_{tag}{i:08d}",
                    "timestamp": now,
                    "from": f"{phone}@c.us",
                    "fromMe": False,
                    "body": f"mensagem {i} do bench",
                    "_data": {"notifyName": "Cliente"},
                },
            }
            raw = json.dumps(body, separators=(",", ":")).encode()
            sig = hmac.new(key, raw, hashlib.sha512).hexdigest().encode()
            out.write(sig + b"\t" + raw + b"\n")
    return path


@dataclass
class Figures:
    """One server's turns on one backend."""

    rates: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)

    def add(self, load: dict[str, float]) -> None:
        self.rates.append(load["rate"])
        self.p50.append(load["p50_ms"])
        self.p99.append(load["p99_ms"])

    def summary(self) -> dict[str, float]:
        return {
            "rate": statistics.median(self.rates),
            "rate_min": min(self.rates),
            "rate_max": max(self.rates),
            "p50_ms": statistics.median(self.p50),
            "p99_ms": statistics.median(self.p99),
        }


async def servers(args: argparse.Namespace, backend: str, tmp: Path, out: list[Server]) -> None:
    """Start the servers of one backend (each its own process and database) into `out`."""
    script = [sys.executable, str(HERE / "bench_webhook_servers.py")]
    out.append(await start_server("empty", [*script, "empty"]))
    plan_db = await new_db(args, backend, tmp, "plan")
    plan_cmd = [*script, "plan", "--db", plan_db]
    out.append(await start_server("plan", plan_cmd, db=plan_db, table="plan_messages"))
    variants = [("wasync", 1)]
    if backend == "postgres" and args.workers > 1:
        variants.append((f"wasync x{args.workers}", args.workers))
    for name, workers in variants:
        db = await new_db(args, backend, tmp, name.replace(" ", ""))
        cfg = tmp / f"{name.replace(' ', '')}.toml"
        cfg.write_text(config_text(db, args.batch_max_wait_ms))
        extra = ["--workers", str(workers)] if workers > 1 else []
        log = tmp / f"{name.replace(' ', '')}.log"
        proc, base = await start_daemon(cfg, log, extra_args=extra)
        out.append(Server(name=name, url=base + PATH, proc=proc, db=db, table="messages"))


async def new_db(args: argparse.Namespace, backend: str, tmp: Path, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / (name + '.db')}"
    url, db_name = await fresh_pg(args.pg_url, "wasync_bench_hook")
    args.dropped.append(db_name)
    return url


async def bench_backend(args: argparse.Namespace, backend: str) -> dict[str, object]:
    """Every round of turns on one backend, then the half-rate run; the figures."""
    tmp = Path(tempfile.mkdtemp(prefix=f"wasync-bench-hook-{backend}-"))
    running: list[Server] = []
    ratios: dict[str, list[float]] = {"empty": [], "plan": [], "workers": []}
    n_bodies = int(args.max_rate * args.duration_s)
    try:
        await servers(args, backend, tmp, running)
        figures = {s.name: Figures() for s in running}
        for r in range(args.rounds):
            order = running[r % len(running) :] + running[: r % len(running)]
            rates: dict[str, float] = {}
            for server in order:
                tag = f"R{r}{server.name.replace(' ', '')[:8].upper()}"
                bodies = write_bodies(tmp / "bodies.txt", tag, n_bodies)
                load = await run_load(args, server, bodies)
                figures[server.name].add(load)
                rates[server.name] = load["rate"]
                print(f"  {backend} round {r + 1} {server.name:10} {fmt(load)}", flush=True)
            ratios["empty"].append(rates["wasync"] / rates["empty"])
            ratios["plan"].append(rates["wasync"] / rates["plan"])
            multi = next((s.name for s in running if s.name.startswith("wasync x")), None)
            if multi:
                ratios["workers"].append(rates[multi] / rates["wasync"])
        wasync = next(s for s in running if s.name == "wasync")
        half = statistics.median(figures["wasync"].rates) / 2
        bodies = write_bodies(tmp / "bodies.txt", "HALF", int(half * args.duration_s) + 10)
        half_load = await run_load(args, wasync, bodies, rate=half)
        print(f"  {backend} half rate ({half:.0f}/s) wasync {fmt(half_load)}", flush=True)
    finally:
        for server in running:
            server.proc.send_signal(signal.SIGTERM)
        for server in running:
            await asyncio.wait_for(server.proc.wait(), 60)
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, object] = {name: f.summary() for name, f in figures.items()}
    out["ratio_empty"] = statistics.median(ratios["empty"])
    out["ratio_plan"] = statistics.median(ratios["plan"])
    if ratios["workers"]:
        out["ratio_workers"] = statistics.median(ratios["workers"])
    out["half_rate"] = {"rate": half, "p50_ms": half_load["p50_ms"], "p99_ms": half_load["p99_ms"]}
    return out


def _rate_figure(
    backend: str, res: dict[str, Any], name: str, value: float, baseline: float, of: str, key: str
) -> Figure:
    """A msg/s figure of `backend` beside its baseline, with the ratio and target of `key`."""
    return Figure(
        name=f"{name}, {backend}",
        value=value,
        unit="msg/s",
        baseline=baseline,
        baseline_name=of,
        ratio=res[f"ratio_{key}"],
        target=f">= {TARGETS[key]}",
    )


def fmt(load: dict[str, float]) -> str:
    stored = f" stored {load['stored']:.0f}" if "stored" in load else ""
    return (
        f"{load['rate']:8.0f}/s  p50 {load['p50_ms']:6.1f} ms  p99 {load['p99_ms']:6.1f} ms"
        f"  2xx {load['ok']:.0f}/{load['requests']:.0f}{stored}"
    )


def report(backend: str, res: dict[str, object]) -> None:
    """The table and the targets of one backend."""
    print(f"\n{backend}: {'server':12} {'req/s (min-max)':>24} {'p50 ms':>8} {'p99 ms':>8}")
    for name, fig in res.items():
        if isinstance(fig, dict) and "rate_min" in fig:
            span = f"{fig['rate']:.0f} ({fig['rate_min']:.0f}-{fig['rate_max']:.0f})"
            print(f"{'':9} {name:12} {span:>24} {fig['p50_ms']:8.1f} {fig['p99_ms']:8.1f}")
    half = res["half_rate"]
    assert isinstance(half, dict)
    checks = [
        ("wasync / empty", res["ratio_empty"], TARGETS["empty"], True),
        ("wasync / plan", res["ratio_plan"], TARGETS["plan"], True),
        (
            f"p99 ms at half rate ({half['rate']:.0f}/s)",
            half["p99_ms"],
            TARGETS["p99_half_ms"],
            False,
        ),
    ]
    if "ratio_workers" in res:
        checks.append(("wasync xN / wasync", res["ratio_workers"], TARGETS["workers"], True))
    for label, value, target, above in checks:
        assert isinstance(value, float)
        ok = value >= target if above else value < target
        sign = ">=" if above else "<"
        print(f"{'OK  ' if ok else 'MISS'} {label}: {value:.2f} (target {sign} {target})")


async def main(args: argparse.Namespace) -> int:
    args.dropped = []
    backends = ([] if args.no_sqlite else ["sqlite"]) + (["postgres"] if args.pg_url else [])
    print(
        f"loader: {args.loader}; {args.connections} connections, {args.rounds} rounds of "
        f"{args.duration_s:g} s; {os.cpu_count()} CPUs (shared machine: figures vary)"
    )
    results: dict[str, object] = {}
    try:
        for backend in backends:
            results[backend] = await bench_backend(args, backend)
    finally:
        for name in args.dropped:
            await drop_pg(args.pg_url, name)
    for backend, res in results.items():
        assert isinstance(res, dict)
        report(backend, res)
    if args.json == "-":
        print(json.dumps({"bench": "webhook", "loader": args.loader, "results": results}))
    elif args.json is not None:
        write(Path(args.json), "bench_webhook", figures(results), loader=args.loader)
    return 0


def figures(results: dict[str, object]) -> list[Figure]:
    """The README table's rows: each backend's rate against its two baselines, the p99 at
    half rate, and `--workers N` against one process."""
    out: list[Figure] = []
    for backend, res in results.items():
        assert isinstance(res, dict)
        rate, empty, plan = (res[k]["rate"] for k in ("wasync", "empty", "plan"))
        out.append(
            _rate_figure(
                backend,
                res,
                "webhook endpoint (committed before 2xx)",
                rate,
                empty,
                "empty handler, same HTTP stack",
                "empty",
            )
        )
        out.append(
            _rate_figure(
                backend,
                res,
                "webhook endpoint vs the plan's per-request handler",
                rate,
                plan,
                "the plan's handler",
                "plan",
            )
        )
        half = res["half_rate"]
        out.append(
            Figure(
                name=f"webhook p99 at half of wasync's rate ({half['rate']:.0f}/s), {backend}",
                value=half["p99_ms"],
                unit="ms",
                target=f"< {TARGETS['p99_half_ms']:.0f}",
            )
        )
        multi = next((k for k in res if k.startswith("wasync x")), None)
        if multi and "ratio_workers" in res:
            name = f"webhook endpoint, `--workers {multi[8:]}`"
            out.append(
                _rate_figure(backend, res, name, res[multi]["rate"], rate, "one process", "workers")
            )
    return out


def cli() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("WASYNC_TEST_PG_URL"))
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="the Postgres multi-process row")
    parser.add_argument("--max-rate", type=float, default=8000, help="bodies per second made")
    parser.add_argument("--batch-max-wait-ms", type=float, default=0.0, help="wasync's config")
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s (scripts/bench_all)")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        help="write the figures to FILE (scripts/bench_all); alone: a last machine-readable line",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration_s = 1, 2.0
    if args.loader == "auto":
        args.loader = "wrk" if shutil.which("wrk") else "python"
    elif args.loader == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed: apt-get install -y wrk (or --loader python)")
    if args.loader == "python":
        print("wrk not used: the asyncio client is slower (apt-get install -y wrk)")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(cli())))
