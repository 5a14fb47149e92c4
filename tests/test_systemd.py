"""systemd's notify protocol: a real `wasync run` under a notify socket the test binds sends
READY=1 after its first poll cycle, WATCHDOG=1 pings with a STATUS line, and STOPPING=1 on
SIGTERM; the heartbeat is a job on the event loop, so a blocked loop stops pinging."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.daemon import start_daemon
from wasync.scheduler import Scheduler
from wasync.sim import WahaSim, serve
from wasync.systemd import Notifier, heartbeat

WAHA_KEY = "waha-key-for-the-systemd-test"


@contextmanager
def notify_socket(abstract: bool) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket and its `$NOTIFY_SOCKET` spelling (`@name` for an
    abstract one); a short path, as sun_path holds 108 bytes."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    where = tempfile.mkdtemp(prefix="wsd-")
    try:
        if abstract:
            name = f"wasync-test-{uuid.uuid4().hex[:12]}"
            sock.bind("\0" + name)
            yield sock, "@" + name
        else:
            path = os.path.join(where, "notify")
            sock.bind(path)
            yield sock, path
    finally:
        sock.close()
        for leftover in Path(where).iterdir():
            leftover.unlink()
        os.rmdir(where)


async def messages(sock: socket.socket, until: str, timeout_s: float = 60) -> list[dict[str, str]]:
    """Datagrams as `{KEY: value}`, read until one holds the key `until`."""
    loop = asyncio.get_running_loop()
    got: list[dict[str, str]] = []
    async with asyncio.timeout(timeout_s):
        while not got or until not in got[-1]:
            raw = await loop.sock_recv(sock, 4096)
            fields = dict(line.split("=", 1) for line in raw.decode().splitlines() if line)
            got.append(fields)
    return got


def write_config(path: Path, db_url: str, waha_url: str) -> Path:
    """One WAHA session, polling every 0.5 s."""
    path.write_text(
        f"""
[database]
url = "{db_url}"
[poll]
interval_s = 0.5
jitter_s = 0
[http]
port = 0
[[tenants]]
id = "acme"
[[tenants.sessions]]
name = "default"
provider = "waha"
base_url = "{waha_url}"
api_key = "{WAHA_KEY}"
"""
    )
    return path


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
async def test_ready_watchdog_and_stopping_from_a_real_run(
    db_url: str, tmp_path: Path, abstract: bool
) -> None:
    """READY=1 comes after the session was polled, with a STATUS line; WATCHDOG=1 keeps
    coming (WATCHDOG_USEC=1 s: every 0.5 s); SIGTERM brings STOPPING=1 and exit 0."""
    waha = WahaSim(api_key=WAHA_KEY)
    waha.add_session("default", engine="WEBJS")
    async with serve(waha.app) as waha_url:
        config = write_config(tmp_path / "wasync.toml", db_url, waha_url)
        with notify_socket(abstract) as (sock, address):
            env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}
            proc, _base = await start_daemon(config, tmp_path / "wasync.log", env)
            try:
                before_ready = await messages(sock, until="READY")
                polled_by_then = waha.requests_total
                pings = []
                for _ in range(3):
                    pings += [m for m in await messages(sock, until="WATCHDOG") if "WATCHDOG" in m]
                proc.send_signal(signal.SIGTERM)
                after = await messages(sock, until="STOPPING")
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0, (tmp_path / "wasync.log").read_text()[-2000:]
    ready = before_ready[-1]
    assert ready["READY"] == "1" and "1 session(s)" in ready["STATUS"], ready
    assert polled_by_then > 0  # the first cycle asked the provider before READY
    assert len(pings) >= 3 and all(p["WATCHDOG"] == "1" for p in pings)
    assert all("poll cycles" in p["STATUS"] for p in pings), pings
    assert after[-1]["STOPPING"] == "1"


async def test_a_blocked_event_loop_stops_the_pings() -> None:
    """The heartbeat is a scheduler job: while a job blocks the loop for 1.5 s no WATCHDOG=1
    goes out, so systemd's WatchdogSec would see the silence."""
    with notify_socket(abstract=True) as (sock, address):
        notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
        assert notifier.watchdog_s == pytest.approx(0.1)
        scheduler = Scheduler(interval_s=3600)
        scheduler.add("systemd:watchdog", lambda: heartbeat(notifier, lambda: "ok"), interval_s=0.1)
        seen: list[float] = []

        async def wedge() -> None:
            await asyncio.sleep(0.5)
            time.sleep(1.5)  # noqa: ASYNC251 - the point: a wedged loop, nothing else runs

        scheduler.start()
        blocker = asyncio.ensure_future(wedge())
        try:
            async with asyncio.timeout(30):
                while len(seen) < 20 or not blocker.done():
                    await asyncio.get_running_loop().sock_recv(sock, 4096)
                    seen.append(time.monotonic())
        finally:
            await scheduler.stop()
            notifier.close()
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert max(gaps) >= 1.4, gaps  # the wedge
    assert sorted(gaps)[len(gaps) // 2] < 1.0  # otherwise steady pings


def test_outside_systemd_nothing_is_sent() -> None:
    """No `$NOTIFY_SOCKET`: disabled, no watchdog; another pid's watchdog is not ours."""
    assert not Notifier({}).enabled
    assert Notifier({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "0"}).watchdog_s is None
    other = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert Notifier(other).watchdog_s is None
    Notifier({}).ready("nothing to tell")  # a no-op, not an error
