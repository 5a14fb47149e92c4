"""Run every benchmark script in a quick mode and regenerate the README's figures table.

Usage: scripts/bench_all [--pg-url URL] [--only NAME,...] [--out DIR] [--no-readme]
       [--timeout-s 1200] [--from DIR]

Each script runs in its own process with `--json FILE` (its figures, each with the baseline
measured in the same run and the ratio; `scripts/benchjson.py`), one after the other so that
they do not measure each other; its output goes to `DIR/<name>.log`. A script that fails or
times out is reported and its rows are left out; the others still count. With `--only`, the
other scripts' figures from an earlier run in DIR stay in the table. The table between
`<!-- bench:start -->` and `<!-- bench:end -->` in README.md is then replaced. `--from DIR`
only renders the table again from the JSON files of an earlier run.

Quick mode keeps every run bounded (about 25 minutes on SQLite on the 2-core machine, longer
with `--pg-url`, which also runs the scripts that take a Postgres URL there); the scripts'
own defaults are larger, for the figures the README's prose quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass(frozen=True, slots=True)
class Bench:
    """One script and its quick-mode arguments; `pg`: how it takes a Postgres URL."""

    name: str
    quick: tuple[str, ...]
    pg: str = ""  # "" none, "both" (SQLite always, Postgres too), "instead" (one or the other)


BENCHES = (
    Bench("bench_ingest", ("--messages", "400", "--repeat", "1"), pg="both"),
    Bench("bench_webhook", (), pg="both"),  # `--quick` added by `run_one`; both backends in one run
    Bench("bench_poll", ("--sessions", "100", "--chats", "5")),
    Bench("bench_http_client", ("--requests", "2000")),
    Bench("bench_realtime", ("--clients", "2000", "--events", "10"), pg="instead"),
    Bench("bench_send", ("--messages", "100"), pg="both"),
    Bench("bench_backfill", ("--chats", "20", "--messages-per-chat", "50"), pg="instead"),
    Bench("bench_media", ()),
    Bench("bench_page", ("--chats", "200", "--messages", "1000", "--runs", "3"), pg="instead"),
    Bench("bench_garbage", ("--garbage", "1000", "--signed", "60"), pg="instead"),
    Bench("bench_memory", ("--soak-s", "120", "--idle-s", "20"), pg="instead"),
)


def runs(bench: Bench, pg_url: str | None) -> list[tuple[str, list[str]]]:
    """(label, extra arguments) of each run of `bench`."""
    if bench.pg == "both":
        pg_args = ["--pg-url", pg_url] if pg_url else []
        return [(bench.name, pg_args)]
    out = [(bench.name, [])]
    if bench.pg == "instead" and pg_url:
        out.append((f"{bench.name}-pg", ["--pg-url", pg_url]))
    return out


def quick_flag(script: Path) -> list[str]:
    """`--quick` for a script (bench_webhook) that documents one in its `--help`."""
    shown = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60
    )
    return ["--quick"] if "--quick" in shown.stdout else []


def run_one(bench: Bench, label: str, extra: list[str], out: Path, timeout_s: float) -> str:
    """Run one script; a one-line outcome."""
    script = ROOT / "scripts" / f"{bench.name}.py"
    argv = [sys.executable, str(script), *bench.quick, *extra, "--json", str(out / f"{label}.json")]
    if not bench.quick and bench.name == "bench_webhook":
        argv[2:2] = quick_flag(script)
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "WASYNC_TEST_PG_URL"}
    with (out / f"{label}.log").open("w") as log:
        try:
            proc = subprocess.run(
                argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, cwd=ROOT, env=env
            )
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout_s:.0f} s"
    took = time.monotonic() - started
    if not (out / f"{label}.json").exists():
        return f"failed (exit {proc.returncode}, {took:.0f} s): see {out / label}.log"
    return f"ok in {took:.0f} s" + (
        f" (exit {proc.returncode}: a target missed)" * bool(proc.returncode)
    )


def number(value: float | None, unit: str = "") -> str:
    """A figure as the README shows it."""
    if value is None:
        return ""
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".strip()


def table(results: list[dict[str, Any]], note: str) -> str:
    """The markdown table of every figure."""
    lines = [
        note,
        "",
        "| script | figure | measured | baseline (same run) | ratio | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for f in result["figures"]:
            named = f" ({f['baseline_name']})" if f["baseline_name"] else ""
            base = number(f["baseline"], f["unit"]) + named if f["baseline"] is not None else ""
            ratio = f"{f['ratio']:.2f}" if f["ratio"] is not None else ""
            cells = (result["label"], f["name"], number(f["value"], f["unit"]), base, ratio)
            lines.append("| " + " | ".join((*cells, f["target"])) + " |")
    return "\n".join(lines)


def replace_table(readme: Path, body: str) -> None:
    """Put `body` between the markers (which must be there)."""
    text = readme.read_text(encoding="utf-8")
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"bench_all: {readme} has no {START} ... {END} markers")
    readme.write_text(f"{head}{START}\n{body}\n{END}{tail}", encoding="utf-8")


def collect(out: Path) -> list[dict[str, Any]]:
    """The JSON files of a run, in the order of BENCHES."""
    order = {b.name: i for i, b in enumerate(BENCHES)}
    found = []
    for path in out.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["label"] = path.stem
        found.append(data)
    return sorted(found, key=lambda d: (order.get(d["script"], 99), d["label"]))


def main() -> int:
    """Run, collect, render."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg-url", default=None)
    ap.add_argument("--only", default="", help="comma-separated script names")
    ap.add_argument("--out", type=Path, default=ROOT / ".bench")
    ap.add_argument("--timeout-s", type=float, default=1200)
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--from", dest="source", type=Path, help="render from an earlier run's DIR")
    ap.add_argument("--note", default="", help="a sentence added under the table's heading")
    args = ap.parse_args()
    out = args.source or args.out
    if args.source is None:
        out.mkdir(parents=True, exist_ok=True)
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        for old in out.glob("*.json"):  # --only: the other scripts' figures stay
            if not wanted or old.stem.removesuffix("-pg") in wanted:
                old.unlink()
        for bench in BENCHES:
            if wanted and bench.name not in wanted:
                continue
            if not (ROOT / "scripts" / f"{bench.name}.py").exists():
                print(f"{bench.name}: not present, skipped", flush=True)
                continue
            for label, extra in runs(bench, args.pg_url):
                print(f"{label}: running ...", flush=True)
                print(f"{label}: {run_one(bench, label, extra, out, args.timeout_s)}", flush=True)
    results = collect(out)
    load = os.getloadavg()[0]
    how = "rendered from earlier runs" if args.source else "quick mode"
    note = (
        f"Generated by `scripts/bench_all` ({how}) on {datetime.now(UTC):%Y-%m-%d}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the end; ratios compare figures "
        f"of the same run. {args.note}"
    ).strip()
    body = table(results, note)
    print(body)
    if not args.no_readme:
        replace_table(README, body)
        print(f"README.md: table between {START} and {END} regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
