"""Serve a seeded WAHA simulator and Evolution simulator on loopback, in their own process.

Tests and benchmarks that must kill a wasync process (or keep the simulators' CPU out of the
measured process) start this script, read the one JSON line it prints on stdout (base URLs,
session names, API keys, message counts) and stop it with SIGTERM. `--truth FILE` writes the
bare provider ids of every message, per session, as JSON.

    python scripts/sim_serve.py --chats 100 --messages-per-chat 100 --now 1790000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from wasync.sim import EvolutionSim, WahaSim, seed_evolution, seed_waha

WAHA_KEY = "waha-sim-key"
EVO_KEY = "evolution-sim-key"
WAHA_SESSION = "hist-waha"
EVO_INSTANCE = "hist-evo"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line: world size, time span, WAHA engine, output file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chats", type=int, default=100, help="chats per simulator")
    ap.add_argument("--messages-per-chat", type=int, default=100)
    ap.add_argument("--now", type=float, required=True, help="epoch seconds of the newest message")
    ap.add_argument("--span-days", type=float, default=14)
    ap.add_argument("--engine", default="WEBJS", help="WAHA engine (WEBJS, NOWEB, GOWS)")
    ap.add_argument("--truth", type=Path, help="write the message ids per session here")
    ap.add_argument("--seed", default="backfill")
    return ap.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[WahaSim, EvolutionSim, dict[str, list[str]]]:
    """Both simulators, seeded; the bare ids of what they hold, per session."""
    waha, evo = WahaSim(api_key=WAHA_KEY, seed=1), EvolutionSim(api_key=EVO_KEY, seed=2)
    waha.add_session(WAHA_SESSION, engine=args.engine)
    evo.add_instance(EVO_INSTANCE)
    span = int(args.span_days * 86_400)
    size = {"chats": args.chats, "messages_per_chat": args.messages_per_chat}
    seed_waha(waha, WAHA_SESSION, now=args.now, span_s=span, seed=f"{args.seed}-w", **size)
    seed_evolution(evo, EVO_INSTANCE, now=args.now, span_s=span, seed=f"{args.seed}-e", **size)
    truth = {
        WAHA_SESSION: sorted({m["id"].split("_")[2] for m in waha.all_messages(WAHA_SESSION)}),
        EVO_INSTANCE: sorted({m["key"]["id"] for m in evo.all_messages(EVO_INSTANCE)}),
    }
    return waha, evo, truth


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (this script owns them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port; yields the base URL.

    Unlike `wasync.sim.serve`, asyncio binds the port itself, so accepted connections get
    TCP_NODELAY (asyncio skips a socket created with proto 0, and every keep-alive answer
    then waits ~40 ms for the client's delayed ACK), as a real WAHA/Evolution (Node) does.
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        ws="none",
        log_config=None,
        access_log=False,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("uvicorn stopped before it started serving")
            await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def main(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT."""
    waha, evo, truth = build(args)
    if args.truth:
        args.truth.write_text(json.dumps(truth))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        info: dict[str, Any] = {
            "waha": waha_url,
            "evolution": evo_url,
            "waha_session": WAHA_SESSION,
            "evo_instance": EVO_INSTANCE,
            "waha_key": WAHA_KEY,
            "evo_key": EVO_KEY,
            "messages": {name: len(ids) for name, ids in truth.items()},
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
