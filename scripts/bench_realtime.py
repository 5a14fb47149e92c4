"""Benchmark real-time push: webhook receipt → `/ws` frame, at 2,000 connected clients.

Usage: .venv/bin/python scripts/bench_realtime.py [--clients 2000] [--events 20]
       [--pg-url URL] [--no-compression] [--budget-s 240]

Loopback only; the run stops by itself (`--budget-s` bounds it). The wasync side (store, hub,
pipeline, uvicorn: what `wasync run` composes) runs in this process; the clients run in a child
process with one event loop and lean sans-I/O `websockets` connections (no task per client), so
server and clients get a core each on a 2-core machine. Each event is one WAHA `message`
webhook, signed, POSTed by the WAHA simulator to the real `/api/webhooks/whatsapp`; the next
event waits until every client has the previous one.

Figures (monotonic clock, shared by both processes on Linux):
- latency: POST sent → a client holds the chat:new-message frame; p50/p99 over clients x events,
  at N clients and at 1 client (baseline);
- fan-out: first → last client receiving one event, and POST → last client; the baseline is a
  bare `websockets` server calling `broadcast()` with the same frame to the same N clients.
The target (issue 17): webhook → frame p99 at N clients within 1.5x of broadcast → frame p99.
Clients offer permessage-deflate like browsers do (`--no-compression` to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from benchjson import Figure, add_json_option, write
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.asyncio.server import serve as ws_serve
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from wasync.api.app import AppContext, create_app
from wasync.api.server import serve
from wasync.auth import issue_token
from wasync.config import Settings, parse
from wasync.daemon import freeze_startup
from wasync.hub import Hub
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.sim import WahaSim
from wasync.sim.waha import webhook_config
from wasync.store import Store

SECRET = "bench-realtime-jwt-secret-0123456789"
HMAC_KEY = "bench-realtime-waha-hmac-key"
SESSION, CHAT = "bench", "5511987654321@c.us"
CONNECT_BATCH = 100
BODY_KEY = b'"body":"'
TARGET = 1.5  # webhook → frame p99 / bare broadcast → frame p99 (issue 17)


# --- the client process ----------------------------------------------------------------------


class Peer(asyncio.Protocol):
    """One WebSocket client on a sans-I/O protocol: parse, record, answer pings; no task."""

    def __init__(self, uri: str, token: str | None, deflate: bool, on_text: Callable[..., None]):
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        self.ws = ClientProtocol(parse_uri(uri), extensions=extensions)
        self.request = self.ws.connect()
        if token:
            self.request.headers["Authorization"] = f"Bearer {token}"
        self.on_text = on_text
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.ws.send_request(self.request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response) and not self.opened.done():
                if event.status_code == 101:
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(RuntimeError(f"HTTP {event.status_code}"))
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.on_text(now, bytes(event.data))
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))

    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)


def marker(data: bytes) -> str | None:
    """The message body of a chat:new-message frame (each event's is unique)."""
    start = data.find(BODY_KEY)
    if start < 0:
        return None
    start += len(BODY_KEY)
    return data[start : data.index(b'"', start)].decode()


async def client_main(args: argparse.Namespace) -> None:
    """Connect N clients, say READY, print DONE <marker> when all have an event, report."""
    raise_fd_limit()
    times: dict[str, list[float]] = defaultdict(list)
    frames: list[str] = []  # each event's frame as the first client got it, in order

    def on_text(now: float, data: bytes) -> None:
        key = marker(data)
        if key is None:
            return
        times[key].append(now)
        if len(times[key]) == 1:
            frames.append(data.decode())
        if len(times[key]) == args.clients:
            print(f"DONE {key}", flush=True)

    peers = await connect_all(args, on_text)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()
    print(json.dumps({"times": times, "frames": frames}), flush=True)
    for peer in peers:
        if peer.transport is not None:
            peer.transport.abort()


async def connect_all(args: argparse.Namespace, on_text: Callable[..., None]) -> list[Peer]:
    """All clients, CONNECT_BATCH handshakes at a time (the listen backlog is finite)."""
    loop = asyncio.get_running_loop()
    url = make_url(args.client.replace("ws://", "http://"))
    peers: list[Peer] = []
    for start in range(0, args.clients, CONNECT_BATCH):
        batch = [
            Peer(args.client, args.token, args.compression, on_text)
            for _ in range(min(CONNECT_BATCH, args.clients - start))
        ]
        await asyncio.gather(
            *(loop.create_connection(lambda p=p: p, url.host, url.port) for p in batch)
        )
        await asyncio.gather(*(p.opened for p in batch))
        peers += batch
    return peers


# --- the parent: servers, one event at a time ------------------------------------------------


class Clients:
    """The client child process, driven over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    @asynccontextmanager
    async def spawn(
        cls, url: str, n: int, token: str | None, deflate: bool
    ) -> AsyncIterator[Clients]:
        """Start the child and wait until its N clients are connected."""
        argv = [sys.executable, __file__, "--client", url, "--clients", str(n)]
        argv += ["--token", token] if token else []
        argv += [] if deflate else ["--no-compression"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**27
        )
        clients = cls(proc)
        try:
            await clients.expect("READY")
            yield clients
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def expect(self, line: str) -> None:
        """Read lines until `line`."""
        assert self.proc.stdout is not None
        while True:
            got = (await self.proc.stdout.readline()).decode().strip()
            if not got:
                raise RuntimeError(f"client process ended before {line!r}")
            if got == line:
                return

    async def report(self) -> tuple[dict[str, list[float]], list[str]]:
        """Receipt times per marker, and each event's frame as received."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"REPORT\n")
        await self.proc.stdin.drain()
        data = json.loads(await self.proc.stdout.readline())
        return data["times"], data["frames"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One measured configuration."""

    label: str
    clients: int
    latency: list[float]  # seconds, every client x event
    spread: list[float]  # per event: first → last client
    to_last: list[float]  # per event: send/broadcast → last client
    answered: list[float] = dataclasses.field(default_factory=list)  # webhook POST → 200
    frames: list[str] = dataclasses.field(default_factory=list)  # as received, warm-up first


def summarize(label: str, n: int, sent: dict[str, float], times: dict[str, list[float]]) -> Run:
    """Latency and fan-out figures from send times and receipt times."""
    latency, spread, to_last = [], [], []
    for key, t0 in sent.items():
        got = times.get(key, [])
        if len(got) != n:
            raise RuntimeError(f"{label}: {len(got)} of {n} clients got event {key}")
        latency += [t - t0 for t in got]
        spread.append(max(got) - min(got))
        to_last.append(max(got) - t0)
    return Run(label=label, clients=n, latency=latency, spread=spread, to_last=to_last)


@dataclass
class Server:
    """The wasync app on loopback, with the WAHA simulator that sends its webhooks."""

    base_url: str
    sim: WahaSim
    http: httpx.AsyncClient


def bench_settings(db_url: str) -> Settings:
    """One tenant, one WAHA session with an HMAC key; webhooks on, no rate limit in the way."""
    session = {
        "name": SESSION,
        "provider": "waha",
        "base_url": "http://127.0.0.1:1",
        "webhook_secret": HMAC_KEY,
    }
    return parse(
        {
            "database": {"url": db_url},
            "webhook": {"enabled": True, "rate_per_s": 10_000, "burst": 10_000},
            "auth": {"jwt_secret": SECRET},
            "tenants": [{"id": "acme", "admins": ["u1"], "sessions": [session]}],
        }
    )


@asynccontextmanager
async def wasync_server(db_url: str) -> AsyncIterator[Server]:
    """Store, hub, pipeline and HTTP app, composed as the daemon does; webhooks on."""
    settings = bench_settings(db_url)
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store(db_url))
        await store.upgrade()
        registry = await sync(store, settings)
        hub = await stack.enter_async_context(Hub(store, queue_frames=1000))
        pipeline = await stack.enter_async_context(
            Pipeline(store, admins={"acme": ["u1"]}, subscribers=[hub])
        )
        ctx = AppContext(
            settings=settings, store=store, registry=registry, pipeline=pipeline, hub=hub
        )
        base = await stack.enter_async_context(serve(create_app(ctx)))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        sim = WahaSim(api_key=None, http=http)
        hook = webhook_config(
            f"{base}/api/webhooks/whatsapp", events=["message"], hmac_key=HMAC_KEY
        )
        sim.add_session(SESSION, webhooks=[hook])
        freeze_startup(stack)  # as `wasync run` does once it has started
        yield Server(base, sim, http)


async def post_event(server: Server, body: str) -> tuple[float, float]:
    """Have the simulator send one signed `message` webhook; when it was sent, and how long
    the answer (200: committed) took."""
    mid = server.sim.add_incoming(SESSION, CHAT, text=body)
    sent = time.monotonic()
    (delivery,) = await server.sim.deliver_message(SESSION, mid, delay_s=0)
    if delivery.status != 200:
        raise RuntimeError(f"webhook answered {delivery.status}")
    return sent, time.monotonic() - sent


async def measure_wasync(server: Server, n: int, events: int, deflate: bool) -> Run:
    """N clients on `/ws`; `events` webhooks, one at a time."""
    token = issue_token(SECRET, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=3600)
    ws_url = server.base_url.replace("http://", "ws://") + "/ws"
    async with Clients.spawn(ws_url, n, token, deflate) as clients:
        sent: dict[str, float] = {}
        answered: list[float] = []
        for k in range(events + 1):
            key = f"bench-{n}-{k}-{uuid.uuid4().hex[:6]}"
            t0, took = await post_event(server, key)
            await clients.expect(f"DONE {key}")
            if k:  # the first one warms up (and creates the chat, lead, notification)
                sent[key] = t0
                answered.append(took)
        times, frames = await clients.report()
    run = summarize(f"wasync, {n} client(s)", n, sent, times)
    return dataclasses.replace(run, frames=frames, answered=answered)


async def measure_bare(n: int, frames: list[str], deflate: bool) -> Run:
    """The frames wasync sent, byte for byte and in order (the first warms up), each
    `broadcast()` by a bare `websockets` server to the same N clients. The same bytes matter
    with permessage-deflate: each connection compresses against the frames before, so
    frames that differed only in their body would compress better than wasync's real ones."""
    conns: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        conns.add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns.discard(ws)

    compression = "deflate" if deflate else None
    async with ws_serve(handler, "127.0.0.1", 0, compression=compression) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with Clients.spawn(f"ws://127.0.0.1:{port}/", n, None, deflate) as clients:
            sent: dict[str, float] = {}
            for k, text in enumerate(frames):
                key = marker(text.encode())
                assert key is not None
                t0 = time.monotonic()
                broadcast(conns, text)
                await clients.expect(f"DONE {key}")
                if k:
                    sent[key] = t0
            times, _ = await clients.report()
    return summarize(f"bare websockets broadcast, {n} clients", n, sent, times)


# --- report ----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(one: Run, many: Run, bare: Run, backend: str, deflate: bool) -> None:
    """The figures, and the ratios against the baselines of the same run."""
    console = Console(width=120)
    table = Table(
        title=f"real-time push ({backend}, permessage-deflate {'on' if deflate else 'off'})"
    )
    columns = ("run", "webhook 200 p50 ms", "latency p50 ms", "latency p99 ms")
    for col in (*columns, "fan-out p50 ms", "to last p50 ms"):
        table.add_column(col, justify="right" if col != "run" else "left")
    for run in (one, many, bare):
        table.add_row(
            run.label,
            f"{pct(run.answered, 0.5):.1f}" if run.answered else "-",
            f"{pct(run.latency, 0.5):.1f}",
            f"{pct(run.latency, 0.99):.1f}",
            f"{1000 * statistics.median(run.spread):.1f}",
            f"{1000 * statistics.median(run.to_last):.1f}",
        )
    console.print(table)
    console.print(
        f"latency at {many.clients} clients / at 1 client: p50 "
        f"{pct(many.latency, 0.5) / pct(one.latency, 0.5):.1f}x, p99 "
        f"{pct(many.latency, 0.99) / pct(one.latency, 0.99):.1f}x"
    )
    console.print(
        "fan-out (first → last client) wasync / bare broadcast: "
        f"{statistics.median(many.spread) / statistics.median(bare.spread):.2f}x; "
        "webhook → last client / broadcast → last client: "
        f"{statistics.median(many.to_last) / statistics.median(bare.to_last):.2f}x"
    )
    target = pct(many.latency, 0.99) / pct(bare.latency, 0.99)
    console.print(
        f"{'OK  ' if target <= TARGET else 'MISS'} webhook → frame p99 at {many.clients} clients "
        f"/ bare broadcast → frame p99: {target:.2f}x (target <= {TARGET})"
    )


def figures(one: Run, many: Run, bare: Run, backend: str) -> list[Figure]:
    """The machine-readable figures (`--json`)."""
    bare99, bare50 = pct(bare.latency, 0.99), pct(bare.latency, 0.5)
    fan = 1000 * statistics.median(many.spread), 1000 * statistics.median(bare.spread)
    return [
        Figure(name=f"webhook receipt → frame p99, {many.clients} clients, {backend}",
               value=pct(many.latency, 0.99), unit="ms", baseline=bare99,
               baseline_name="bare websockets broadcast → frame p99, same clients",
               ratio=pct(many.latency, 0.99) / bare99, target=f"<= {TARGET}"),
        Figure(name=f"webhook receipt → frame p50, {many.clients} clients, {backend}",
               value=pct(many.latency, 0.5), unit="ms", baseline=bare50,
               baseline_name="bare broadcast → frame p50", ratio=pct(many.latency, 0.5) / bare50),
        Figure(name=f"fan-out of one event, first → last of {many.clients} clients, {backend}",
               value=fan[0], unit="ms", baseline=fan[1], baseline_name="bare broadcast",
               ratio=fan[0] / fan[1] if fan[1] else None),
        Figure(name=f"webhook receipt → frame p99, 1 client, {backend}",
               value=pct(one.latency, 0.99), unit="ms"),
        Figure(name=f"webhook answered (200, committed) p50, {many.clients} clients, {backend}",
               value=pct(many.answered, 0.5), unit="ms", baseline=pct(one.answered, 0.5),
               baseline_name="with 1 client",
               ratio=pct(many.answered, 0.5) / pct(one.answered, 0.5)),
    ]  # fmt: skip


def raise_fd_limit() -> None:
    """Each side holds one socket per client: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@asynccontextmanager
async def database(pg_url: str | None) -> AsyncIterator[tuple[str, str]]:
    """A fresh SQLite file, or a throwaway Postgres database next to `pg_url`."""
    if not pg_url:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", "SQLite"
        return
    base, name = make_url(pg_url), f"wasync_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(
        host=base.host, port=base.port or 5432, user=base.username, database=base.database
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False), "Postgres"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main(args: argparse.Namespace) -> None:
    """Measure 1 client, N clients, then the bare broadcast; print the table."""
    raise_fd_limit()
    deflate = args.compression
    async with asyncio.timeout(args.budget_s), database(args.pg_url) as (db_url, backend):
        async with wasync_server(db_url) as server:
            one = await measure_wasync(server, 1, args.events, deflate)
            many = await measure_wasync(server, args.clients, args.events, deflate)
        bare = await measure_bare(args.clients, many.frames, deflate)
    report(one, many, bare, backend, deflate)
    write(args.json, "bench_realtime", figures(one, many, bare, backend), clients=args.clients,
          events=args.events, deflate=deflate)  # fmt: skip


def cli() -> argparse.Namespace:
    """Command-line options (the child process gets --client URL)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--pg-url", default=os.environ.get("WASYNC_BENCH_PG_URL"))
    ap.add_argument("--no-compression", dest="compression", action="store_false")
    ap.add_argument("--budget-s", type=float, default=240)
    add_json_option(ap)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--token", help=argparse.SUPPRESS)
    return ap.parse_args()


if __name__ == "__main__":
    options = cli()
    asyncio.run(client_main(options) if options.client else main(options))
