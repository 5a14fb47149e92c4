"""The asyncio load generator of `scripts/bench_webhook.py`, run in its own process: posts the
prepared bodies over keep-alive HTTP/1.1 connections (raw sockets), each body once.

Usage: python scripts/bench_webhook_load.py URL BODIES --connections 32 --duration-s 4
       [--rate R]

`BODIES` holds one request a line: `<hex HMAC>\\t<JSON body>`. Without `--rate` each connection
posts its next body as soon as the last one is answered (the maximum rate; `wrk` does the same
faster); with `--rate R` requests are scheduled open-loop at R per second, and a latency counts
from the request's scheduled time, so waiting for a free connection is part of it (no
coordinated omission). Prints one JSON line: requests, ok (2xx), rate, p50_ms, p99_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wasync.api.server import new_event_loop


def requests(path: str, host: str, lines: list[bytes]) -> list[bytes]:
    """The raw HTTP requests, one per body line."""
    out = []
    for line in lines:
        sig, body = line.split(b"\t", 1)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"X-Webhook-Hmac: {sig.decode()}\r\nX-Webhook-Hmac-Algorithm: sha512\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    """Send one request, read its answer; the status code."""
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def run(args: argparse.Namespace) -> dict[str, float]:
    url = urlsplit(args.url)
    lines = Path(args.bodies).read_bytes().splitlines()  # noqa: ASYNC240 (before timing)
    reqs = requests(url.path, url.netloc, lines)
    conns = [await asyncio.open_connection(url.hostname, url.port) for _ in range(args.connections)]
    latencies: list[float] = []
    statuses: list[int] = []
    queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (item := await queue.get()) is not None:
            req, due = item
            statuses.append(await exchange(reader, writer, req))
            latencies.append(loop.time() - due)

    async def closed_loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while loop.time() < end and reqs:
            req = reqs.pop()
            started = loop.time()
            statuses.append(await exchange(reader, writer, req))
            latencies.append(loop.time() - started)

    started = loop.time()
    end = started + args.duration_s
    if args.rate:
        tasks = [asyncio.create_task(worker(r, w)) for r, w in conns]
        n = 0
        while (due := started + n / args.rate) < end and n < len(reqs):
            await asyncio.sleep(max(0.0, due - loop.time()))
            queue.put_nowait((reqs[n], due))
            n += 1
        for _ in tasks:
            queue.put_nowait(None)
        await asyncio.gather(*tasks)
    else:
        await asyncio.gather(*(closed_loop(r, w) for r, w in conns))
    elapsed = loop.time() - started
    for _, writer in conns:
        writer.close()
    ordered = sorted(latencies) or [0.0]
    return {
        "requests": len(statuses),
        "ok": sum(200 <= s < 300 for s in statuses),
        "rate": len(statuses) / elapsed,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("bodies")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration-s", type=float, default=4.0)
    parser.add_argument("--rate", type=float, default=0.0)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        print(json.dumps(runner.run(run(parser.parse_args()))))
