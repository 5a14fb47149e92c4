"""The moving parts of `scripts/bench_webhook.py`: a server process, one load turn (`wrk` or the
asyncio client, each its own process) and the check that every 2xx was stored."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent

# wrk: each thread posts its share of the bodies file (line k goes to thread k mod threads),
# each body once; `done` prints one JSON line. A thread that runs out wraps (then `wrapped`).
WRK_LUA = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
local reqs = {}
local i = 0
wrapped = 0
function init(args)
  local n = tonumber(args[2])
  local k = 0
  for line in io.lines(args[1]) do
    if k % n == tid then
      local tab = line:find("\t", 1, true)
      reqs[#reqs + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["X-Webhook-Hmac"] = line:sub(1, tab - 1),
        ["X-Webhook-Hmac-Algorithm"] = "sha512",
      }, line:sub(tab + 1))
    end
    k = k + 1
  end
end
function request()
  i = i + 1
  if i > #reqs then i = 1; wrapped = 1 end
  return reqs[i]
end
function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do w = w + (t:get("wrapped") or 0) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"errors_status":%d,"errors_other":%d,"duration_us":%d,' ..
    '"p50_us":%d,"p99_us":%d,"wrapped":%d}\n',
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), w))
end
"""


@dataclass
class Server:
    """One server under test: its URL and process; where its messages are counted."""

    name: str
    url: str
    proc: asyncio.subprocess.Process
    db: str = ""
    table: str = ""


async def start_server(name: str, cmd: list[str], *, db: str = "", table: str = "") -> Server:
    """Start a baseline server; it prints `listening URL` when it serves."""
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
    if not line.startswith("listening "):
        raise SystemExit(f"{name} server did not start: {line!r}")
    return Server(
        name=name, url=line.split()[1] + "/api/webhooks/whatsapp", proc=proc, db=db, table=table
    )


async def count_rows(db: str, table: str) -> int:
    """The rows of `table` in the database at `db` (a SQLAlchemy URL)."""
    url = make_url(db)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(url.database or "") as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def run_load(
    args: argparse.Namespace, server: Server, bodies: Path, *, rate: float = 0.0
) -> dict[str, float]:
    """One turn against `server`; with its table, the stored rows checked against the 2xx."""
    before = await count_rows(server.db, server.table) if server.table else 0
    if args.loader == "wrk" and not rate:
        load = await _wrk(args, server.url, bodies)
    else:
        load = await _python(args, server.url, bodies, rate)
    if server.table:
        load["stored"] = stored = await count_rows(server.db, server.table) - before
        if load["ok"] > stored and not load.get("wrapped"):
            raise SystemExit(f"{server.name}: {load['ok']:.0f} answered 2xx, {stored} stored")
    return load


async def _wrk(args: argparse.Namespace, url: str, bodies: Path) -> dict[str, float]:
    lua = bodies.with_suffix(".lua")
    lua.write_text(WRK_LUA)
    seconds = max(1, round(args.duration_s))  # wrk takes whole seconds
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "10s"]
    out = await _output([*cmd, "-s", str(lua), url, "--", str(bodies), "1"])
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{out}")
    raw = json.loads(line[len("WRKJSON ") :])
    return {
        "requests": raw["requests"],
        "ok": raw["requests"] - raw["errors_status"],
        "errors": raw["errors_status"] + raw["errors_other"],
        "rate": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "wrapped": raw["wrapped"],
    }


async def _python(
    args: argparse.Namespace, url: str, bodies: Path, rate: float
) -> dict[str, float]:
    cmd = [sys.executable, str(HERE / "bench_webhook_load.py"), url, str(bodies)]
    cmd += ["--connections", str(args.connections), "--duration-s", str(args.duration_s)]
    if rate:
        cmd += ["--rate", str(rate)]
    out = await _output(cmd)
    return dict(json.loads(out.strip().splitlines()[-1]))


async def _output(cmd: list[str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{out.decode()}")
    return out.decode()
