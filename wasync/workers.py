"""`wasync run --workers N`: N processes serving one HTTP port, so one machine uses its cores.

Postgres only (SQLite has one writer). Worker 0 is the process that was started: the whole
daemon (polling, sending, media downloads, the event-log prune) and HTTP. Workers 1..N-1 are
`wasync run` children started with a hidden `--worker-index`: HTTP only (webhooks, REST,
`/ws`), each with its own pipeline and hub. Every worker binds the port with SO_REUSEPORT and
the kernel spreads the connections among them. They share the database as nodes do: ingest is
idempotent, event-log appends are serialized by the advisory lock, and each hub hears the
others' commits through LISTEN/NOTIFY, so a `/ws` client sees every worker's webhooks.

The non-HTTP duties stay with worker 0 until session leases (Postgres) let every worker behave
as a node. A worker that dies stops the group (exit 1; systemd restarts it); SIGTERM to worker 0
stops the children first-hand and drains every pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from contextlib import suppress
from pathlib import Path

from sqlalchemy.engine import make_url

from wasync import daemon
from wasync.api.server import reserve_port
from wasync.config import Settings
from wasync.errors import ConfigError, WasyncError

log = logging.getLogger(__name__)

READY = b"wasync-worker-ready\n"  # a child's stdout line once it serves
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


class WorkerFailed(WasyncError):
    """A worker process exited while the group was running."""


def check_workers(settings: Settings, workers: int) -> None:
    """`--workers` above 1 needs Postgres: raises ConfigError (exit 2) on SQLite."""
    if workers > 1 and make_url(settings.database.url).get_backend_name() == "sqlite":
        raise ConfigError(
            "--workers", f"{workers} needs Postgres: SQLite has one writer (database.url is sqlite)"
        )


def on_port(settings: Settings, port: int) -> Settings:
    """The settings with the port every worker binds."""
    return settings.model_copy(update={"http": settings.http.model_copy(update={"port": port})})


async def run(settings: Settings, *, workers: int, config: Path | None) -> None:
    """Start workers 1..N-1, wait until they serve, run worker 0 here; stop them all."""
    check_workers(settings, workers)
    holder = reserve_port(settings.http.host, settings.http.port)  # port 0 becomes a real one
    port = int(holder.getsockname()[1])
    stop = asyncio.Event()
    children: list[asyncio.subprocess.Process] = []
    failed: list[str] = []
    watch: asyncio.Task[None] | None = None
    try:
        for index in range(1, workers):
            children.append(await _spawn(index, port, config))
        for index, child in enumerate(children, start=1):
            await _ready(index, child)
        watch = asyncio.create_task(_watch(children, stop, failed))
        pids = ", ".join(str(c.pid) for c in children)
        log.info("http workers 1-%d serving port %d (pids %s)", workers - 1, port, pids)
        await daemon.run(on_port(settings, port), stop=stop, reuse_port=True)
    finally:
        if watch is not None:
            watch.cancel()
        await _stop(children)
        holder.close()
    if failed:
        raise WorkerFailed(failed[0])


async def serve_worker(settings: Settings, *, index: int, port: int) -> None:
    """A child: the HTTP worker `index` on `port`; tells the parent on stdout when it serves."""

    def ready(_daemon: daemon.Daemon) -> None:
        sys.stdout.buffer.write(READY)
        sys.stdout.flush()

    log.info("http worker %d starting (pid %d)", index, os.getpid())
    await daemon.run(on_port(settings, port), on_ready=ready, duties=False, reuse_port=True)


async def _spawn(index: int, port: int, config: Path | None) -> asyncio.subprocess.Process:
    args = [sys.executable, "-m", "wasync", "run", "--worker-index", str(index)]
    args += ["--worker-port", str(port)]
    if config is not None:
        args += ["--config", str(config)]
    return await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)


async def _ready(index: int, child: asyncio.subprocess.Process) -> None:
    assert child.stdout is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), START_TIMEOUT_S)
    except TimeoutError:
        line = b""
    if line != READY:
        raise WorkerFailed(f"http worker {index} did not start (exit code {child.returncode})")


async def _watch(
    children: list[asyncio.subprocess.Process], stop: asyncio.Event, failed: list[str]
) -> None:
    """The first child to exit stops the group."""
    waits = {asyncio.create_task(c.wait()): i for i, c in enumerate(children, start=1)}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
    if stop.is_set():  # the group is stopping (a SIGTERM to all of it): not a failure
        return
    for task in done:
        index = waits[task]
        failed.append(f"http worker {index} exited with code {task.result()}")
        log.error("http worker %d exited with code %s: stopping", index, task.result())
    stop.set()


async def _stop(children: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM every child still running; kill one that has not drained in time."""
    for child in children:
        if child.returncode is None:
            with suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            await asyncio.wait_for(child.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with suppress(ProcessLookupError):
                child.kill()
            await child.wait()
