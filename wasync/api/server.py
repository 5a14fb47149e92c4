"""uvicorn inside the caller's event loop, stopped cooperatively (the daemon owns signals)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM/SIGINT to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` until the block exits; yields the base URL (`port=0` picks a free port)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        ws="websockets-sansio",  # the `websockets` library, its current implementation
        access_log=False,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(), name=f"uvicorn-{host}:{port}")
    try:
        while not server.started:
            if task.done():
                task.result()  # raises the bind error
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        sock = server.servers[0].sockets[0]
        bound = sock.getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=5)
        if not task.done():
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
