"""Benchmark polling at scale: 500 sessions x 20 chats in the simulators.

Usage: .venv/bin/python scripts/bench_poll.py [--sessions 500] [--chats 20] [--provider mixed]

Prints, after the first (full) sync:
- requests per session per idle cycle (target: 1), counted at the simulators, and beside it
  what the ack check adds per session per hour: its checks run every `poll.ack_interval_s`
  over one simulated hour in which nobody reads anything (the seeded chats keep our messages
  below READ: the worst case), and what its first check alone asks;
- CPU seconds per idle cycle, beside the CPU of making the same number of bare httpx
  requests to the same simulators (the baseline: what the HTTP alone costs);
- wall time of one cycle that finds one new message in every session, beside an idle cycle,
  and the requests of the cycle after it (a chat read because its head moved is read once
  more while its newest second is young: same-second arrivals behind an untied head).

The simulators run in-process behind `httpx.ASGITransport` (no sockets), so the CPU figures
include the simulators' own work in both the measurement and the baseline. Bounded: one
sync, three idle cycles, one busy cycle. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from benchjson import Figure, add_json_option, write

from wasync.config import parse
from wasync.pipeline import Pipeline
from wasync.poller import Poller
from wasync.registry import provider_for, sync
from wasync.sim import EvolutionSim, WahaSim, seed_evolution_bulk, seed_waha_bulk
from wasync.store import Store

WAHA_KEY, EVO_KEY = "waha-sim-key", "evolution-sim-key"
CONCURRENCY = 64


class Router(httpx.AsyncBaseTransport):
    """Send each simulator's base URL to its ASGI app."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transports[request.url.host].handle_async_request(request)


def plan(provider: str, sessions: int) -> tuple[int, int]:
    """How many WAHA sessions and Evolution instances."""
    if provider == "waha":
        return sessions, 0
    if provider == "evolution":
        return 0, sessions
    return sessions - sessions // 2, sessions // 2


def build(args: argparse.Namespace) -> tuple[WahaSim, EvolutionSim, list[str], list[str]]:
    """Seeded simulators (WAHA WEBJS: the chat-list strategy, the harder idle case)."""
    n_waha, n_evo = plan(args.provider, args.sessions)
    waha, evo = WahaSim(api_key=WAHA_KEY), EvolutionSim(api_key=EVO_KEY)
    now = time.time()
    wnames = seed_waha_bulk(
        waha,
        sessions=n_waha,
        chats=args.chats,
        messages_per_chat=2,
        engine="WEBJS",
        prefix="w",
        now=now,
        span_s=3600,
    )
    enames = seed_evolution_bulk(
        evo,
        instances=n_evo,
        chats=args.chats,
        messages_per_chat=2,
        prefix="e",
        now=now,
        span_s=3600,
    )
    return waha, evo, wnames, enames


def settings_for(db: Path, wnames: Sequence[str], enames: Sequence[str]) -> Any:
    """One tenant per session, as a hosting provider would run it."""
    tenants = [
        {
            "id": f"t-{n}",
            "sessions": [
                {"name": n, "provider": "waha", "base_url": "http://waha", "api_key": WAHA_KEY}
            ],
        }
        for n in wnames
    ] + [
        {
            "id": f"t-{n}",
            "sessions": [
                {"name": n, "provider": "evolution", "base_url": "http://evo", "api_key": EVO_KEY}
            ],
        }
        for n in enames
    ]
    return parse(
        {
            "database": {"url": f"sqlite+aiosqlite:///{db}"},
            "poll": {"log_idle_cycles": False, "status_interval_s": 3600},
            "tenants": tenants,
        }
    )


async def each(pollers: Sequence[Poller]) -> float:
    """One cycle of every poller, `CONCURRENCY` at a time; returns wall seconds."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(p: Poller) -> None:
        async with gate:
            stats = await p.cycle()
            if stats.error:
                raise RuntimeError(f"{p.label}: {stats.error}")

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in pollers))
    return time.perf_counter() - started


async def check_hour(
    pollers: Sequence[Poller], waha: WahaSim, evo: EvolutionSim
) -> tuple[float, float]:
    """Ack checks every `ack_interval_s` over one simulated hour (the checks' clock moved, the
    simulators unchanged); requests per session of the first check and of the hour."""
    fake = [time.time()]
    for p in pollers:
        p.recheck.clock = lambda: fake[0]
    interval = pollers[0].poll.ack_interval_s
    r0 = requests_total(waha, evo)
    first = 0
    for _ in range(round(3600 / interval)):
        await checks(pollers)
        first = first or requests_total(waha, evo) - r0
        fake[0] += interval
    total = requests_total(waha, evo) - r0
    for p in pollers:  # back on the real clock, the next check an interval away
        p.recheck.clock = time.time
        p.recheck.next_at = time.time() + interval
    n = len(pollers)
    return first / n, total / n


async def checks(pollers: Sequence[Poller]) -> None:
    """One ack check of every poller, `CONCURRENCY` at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(p: Poller) -> None:
        async with gate:
            await p.recheck.run()

    await asyncio.gather(*(one(p) for p in pollers))


async def bare_requests(
    client: httpx.AsyncClient, wnames: Sequence[str], enames: Sequence[str]
) -> float:
    """CPU seconds for the same requests an idle cycle makes, without wasync around them."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def call(make: Callable[[], Awaitable[httpx.Response]]) -> None:
        async with gate:
            (await make()).raise_for_status()

    calls = [
        lambda n=n: client.get(
            f"http://waha/api/{n}/chats/overview",
            params={"limit": 50, "offset": 0},
            headers={"X-Api-Key": WAHA_KEY},
        )
        for n in wnames
    ] + [
        lambda n=n: client.post(
            f"http://evo/chat/findChats/{n}",
            json={"take": 50, "skip": 0},
            headers={"apikey": EVO_KEY},
        )
        for n in enames
    ]
    started = time.process_time()
    await asyncio.gather(*(call(c) for c in calls))
    return time.process_time() - started


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument("--provider", choices=["waha", "evolution", "mixed"], default="mixed")
    add_json_option(parser)
    args = parser.parse_args(argv)
    waha, evo, wnames, enames = build(args)
    transport = Router({"waha": waha.app, "evo": evo.app})
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(Path(tmp) / "bench.db", wnames, enames)
        async with (
            Store(settings.database.url) as store,
            httpx.AsyncClient(transport=transport) as client,
        ):
            await store.upgrade()
            registry = await sync(store, settings)
            async with Pipeline(store) as pipeline:
                pollers = [
                    Poller(
                        provider_for(ref, client, settings.poll),
                        pipeline,
                        store,
                        settings.poll,
                        label=ref.label,
                    )
                    for ref in registry
                ]
                figures = await report(args, pollers, waha, evo, client, wnames, enames)
    write(args.json, "bench_poll", figures, sessions=args.sessions, chats=args.chats)
    return 0


def requests_total(waha: WahaSim, evo: EvolutionSim) -> int:
    """Requests both simulators have answered."""
    return int(waha.requests_total + evo.requests_total)


async def report(
    args: argparse.Namespace,
    pollers: Sequence[Poller],
    waha: WahaSim,
    evo: EvolutionSim,
    client: httpx.AsyncClient,
    wnames: Sequence[str],
    enames: Sequence[str],
) -> list[Figure]:
    n = len(pollers)
    print(f"{n} sessions ({len(wnames)} WAHA WEBJS, {len(enames)} Evolution) x {args.chats} chats")
    first_sync = await each(pollers)
    stored = sum(p.last.new for p in pollers if p.last)
    print(f"first sync: {first_sync:.2f} s wall, {stored} messages stored")
    idle_req, idle_cpu, idle_wall = [], [], []
    # The ack check is measured on its own (`check_hour`): the sessions' first checks are
    # spread over the interval from start-up, so some would fall in these idle cycles.
    for p in pollers:
        p.recheck.next_at = time.time() + p.poll.ack_interval_s
    for _ in range(3):
        r0, c0 = requests_total(waha, evo), time.process_time()
        idle_wall.append(await each(pollers))
        idle_cpu.append(time.process_time() - c0)
        idle_req.append(requests_total(waha, evo) - r0)
    base_cpu = await bare_requests(client, wnames, enames)
    per_session = min(idle_req) / n
    cpu = min(idle_cpu)
    first, per_hour = await check_hour(pollers, waha, evo)
    interval = pollers[0].poll.ack_interval_s
    print(
        f"idle cycle: {per_session:.2f} requests per session (target 1.00); ack check "
        f"(every {interval:.0f} s): {per_hour:.1f} requests per session per hour, the first "
        f"check {first:.2f} (idle cycles: {3600 / pollers[0].poll.interval_s:.0f} per hour)"
    )
    print(
        f"idle cycle: {cpu:.3f} CPU s for {n} sessions; bare httpx for the same requests "
        f"{base_cpu:.3f} CPU s; ratio {cpu / base_cpu:.2f}"
    )
    for name in wnames:
        waha.add_incoming(name, "5531988880000", text="Oi, chegou agora")
    for name in enames:
        evo.add_incoming(name, "5531988880000", text="Oi, chegou agora")
    busy = await each(pollers)
    found = sum(p.last.new for p in pollers if p.last)
    idle = min(idle_wall)
    print(
        f"one new message in every session: {busy:.2f} s wall ({found} stored); idle cycle "
        f"{idle:.2f} s; ratio {busy / idle:.2f}"
    )
    r0 = requests_total(waha, evo)
    await each(pollers)
    after = (requests_total(waha, evo) - r0) / n
    print(f"the cycle after it: {after:.2f} requests per session (the changed chat read once more)")
    if found != n:
        print(f"WARNING: expected {n} new messages, stored {found}", file=sys.stderr)
    return [
        Figure(
            name="poll: requests per session per idle cycle", value=per_session, unit="", target="1"
        ),
        Figure(
            name="poll: ack check, requests per session per hour",
            value=per_hour,
            unit="",
            baseline=3600 / pollers[0].poll.interval_s,
            baseline_name="idle-cycle requests an hour",
            ratio=per_hour / (3600 / pollers[0].poll.interval_s),
        ),
        Figure(
            name=f"poll: CPU per idle cycle, {n} sessions",
            value=cpu,
            unit="s",
            baseline=base_cpu,
            baseline_name="the same requests made bare with httpx",
            ratio=cpu / base_cpu if base_cpu else None,
        ),
        Figure(
            name="poll: one cycle finding one new message in every session",
            value=busy,
            unit="s",
            baseline=idle,
            baseline_name="an idle cycle",
            ratio=busy / idle if idle else None,
        ),
        Figure(name="poll: first sync", value=first_sync, unit="s"),
    ]


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
