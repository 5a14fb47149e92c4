"""What the media tests share: an S3 server (moto) on a loopback port, `[media]` settings for a
local directory or that bucket, and waiting until no media is PENDING."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from sqlalchemy import text

from wasync.store import Store

S3_KEY, S3_SECRET = "testing-key", "testing-secret"
FAST_MEDIA = {
    "poll_interval_s": 0.1,
    "backoff_s": 0.02,
    "max_backoff_s": 1,
    "retry_delay_s": 0.2,
    "tries": 6,
    "per_session": 8,
    "concurrency": 16,
    "max_attempts": 5,
}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto S3 server in its own process (no GIL shared with the daemon under test) on a
    free loopback port; yields its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert proc.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def make_bucket(endpoint: str) -> str:
    """A new bucket on the server; its name."""
    name = f"wasync-{uuid.uuid4().hex[:10]}"
    session = get_session()
    async with session.create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
    ) as client:
        await client.create_bucket(Bucket=name)
    return name


def media_section(backend: str, tmp_path: Path, s3: tuple[str, str] | None) -> dict[str, Any]:
    """`[media]` for a local directory under `tmp_path`, or the bucket (endpoint, name)."""
    section: dict[str, Any] = {"dir": str(tmp_path / "media"), **FAST_MEDIA}
    if backend == "s3":
        assert s3 is not None
        section.update(
            backend="s3",
            s3_endpoint_url=s3[0],
            s3_bucket=s3[1],
            s3_access_key_id_env="WASYNC_TEST_S3_KEY",
            s3_secret_access_key_env="WASYNC_TEST_S3_SECRET",
        )
    return section


async def media_counts(store: Store) -> dict[str, int]:
    """Messages by media status."""
    async with store.read() as conn:
        rows = await conn.execute(
            text("SELECT media_status, count(*) FROM messages GROUP BY media_status")
        )
        return {str(status): int(n) for status, n in rows}


async def wait_settled(store: Store, expected: int, *, timeout_s: float = 120) -> dict[str, int]:
    """Wait until `expected` media messages are stored and none is PENDING."""
    counts: dict[str, int] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while True:
                counts = await media_counts(store)
                tracked = sum(n for s, n in counts.items() if s != "NONE")
                if tracked >= expected and not counts.get("PENDING"):
                    return counts
                await asyncio.sleep(0.1)
    return counts


@contextlib.asynccontextmanager
async def s3_bucket(backend: str) -> AsyncIterator[tuple[str, str] | None]:
    """(endpoint, bucket) of a fresh moto server for `s3`, None for `local`."""
    if backend != "s3":
        yield None
        return
    with moto_server() as endpoint:
        yield endpoint, await make_bucket(endpoint)
