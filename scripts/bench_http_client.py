"""CPU per provider request: wasync's client (`wasync.httpclient`, httpx over aiohttp's pool)
against httpx's own transport, the same calls through `wasync.providers.http.Http` (a poll's
GET with its query and API key, the JSON decoded), in one run.

Usage: .venv/bin/python scripts/bench_http_client.py [--requests 3000] [--json FILE]

A loopback uvicorn server in its own process answers every GET with a WAHA-shaped chats
overview of two chats (its CPU is not counted). Each client runs `--requests` GETs at 1, 20 and
100 in flight (a daemon polling 1,000 sessions keeps up to 100 connections open); the figure is
this process's CPU time per request, and the ratio is wasync's over httpx's (lower is better).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
from benchjson import Figure, add_json_option, write

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from wasync.httpclient import client
from wasync.providers.http import Http

LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=100)  # the daemon's
CONCURRENCY = (1, 20, 100)


def overview() -> bytes:
    """Two chats of `GET /api/{session}/chats/overview`, as WAHA answers."""
    chats = [
        {
            "id": f"55319888800{i:02d}@c.us",
            "name": f"Cliente {i}",
            "lastMessage": {
                "id": f"false_55319888800{i:02d}@c.us_3EB0{i:016X}",
                "timestamp": 1_790_000_000 + i,
                "fromMe": False,
                "body": "olá, tudo bem?",
                "ack": 3,
            },
        }
        for i in range(2)
    ]
    return json.dumps(chats).encode()


def serve() -> None:
    """The server process: prints its port, answers until killed."""
    import socket

    import uvicorn

    body = overview()
    headers = [(b"content-type", b"application/json")]

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


async def cpu_per_request(kind: str, base: str, requests: int, in_flight: int) -> float:
    """Microseconds of this process's CPU per GET, `in_flight` at a time."""
    transport = httpx.AsyncHTTPTransport(limits=LIMITS) if kind == "httpx" else None
    async with client(transport, limits=LIMITS, headers={"X-Wasync-Node": "bench"}) as c:
        http = Http(c, base, headers={"X-Api-Key": "bench-key"})

        async def worker(n: int) -> None:
            for _ in range(n):
                doc = await http.get("/api/default/chats/overview", params={"limit": 2})
                assert len(doc) == 2

        await asyncio.gather(*(worker(20) for _ in range(in_flight)))  # connections opened
        t0 = time.process_time()
        await asyncio.gather(*(worker(requests // in_flight) for _ in range(in_flight)))
        return (time.process_time() - t0) / (requests // in_flight * in_flight) * 1e6


async def measure(base: str, requests: int) -> list[Figure]:
    figures = []
    for n in CONCURRENCY:
        httpx_us = await cpu_per_request("httpx", base, requests, n)
        wasync_us = await cpu_per_request("wasync", base, requests, n)
        print(
            f"{n:3d} in flight: httpx {httpx_us:6.0f} us CPU a request, wasync {wasync_us:6.0f} us"
            f" ({wasync_us / httpx_us:.2f} of httpx)",
            flush=True,
        )
        figures.append(
            Figure(
                name=f"provider GET, CPU per request, {n} in flight",
                value=round(wasync_us),
                unit="µs",
                baseline=round(httpx_us),
                baseline_name="httpx's own transport",
                ratio=round(wasync_us / httpx_us, 2),
            )
        )
    return figures


async def main(args: argparse.Namespace) -> list[Figure]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 60))
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as probe:  # until it answers
            for _ in range(600):
                try:
                    await probe.get(base)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        return await measure(base, args.requests)
    finally:
        proc.terminate()
        await proc.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    add_json_option(ap)
    ns = ap.parse_args()
    if ns.serve:
        serve()
    else:
        figs = asyncio.run(main(ns))
        write(ns.json, "bench_http_client", figs, requests=ns.requests)
