"""The README's second section, run as a newcomer runs it: `wasync sim` in one process,
`wasync run` in another, then `token`, `tail`, REST, `send`, `backfill` and `doctor` as
subprocesses, in polling mode and in webhook mode with reconciliation.

The commands are the README's; only the ports differ (free ones, so tests can run beside a
real daemon). Every wait is on an event (a line printed, a row stored) with a generous limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import sqlite3
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

WAIT_S = 240.0


def clean_env() -> dict[str, str]:
    """The environment without WASYNC_* overrides, and wide output for tables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASYNC_")}
    return {**env, "COLUMNS": "200"}


class Background:
    """A `wasync` subprocess whose stdout and stderr lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._readers = [
            asyncio.create_task(self._read(stream)) for stream in (proc.stdout, proc.stderr)
        ]

    async def _read(self, stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace"))

    @property
    def text(self) -> str:
        """Everything printed so far."""
        return "".join(self.lines)

    async def line(self, pattern: str, timeout_s: float = WAIT_S) -> re.Match[str]:
        """The first line matching `pattern`, waiting for it (failing if the process ends)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.lines:
                if found := re.search(pattern, line):
                    return found
            assert self.proc.returncode is None, f"exited {self.proc.returncode}:\n{self.text}"
            assert time.monotonic() < deadline, f"no line like {pattern!r}:\n{self.text}"
            await asyncio.sleep(0.1)

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process and wait for its exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), 60)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code


@contextlib.asynccontextmanager
async def background(cwd: Path, *args: str) -> AsyncIterator[Background]:
    """`python -m wasync ARGS` running in `cwd` for the block; killed if still running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasync", *args, cwd=cwd, env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    bg = Background(proc)
    try:
        yield bg
    finally:
        if proc.returncode is None:
            await bg.stop(signal.SIGKILL)


async def wasync(cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run `python -m wasync ARGS` to the end: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasync", *args, cwd=cwd, env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def query(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Rows from the daemon's SQLite file (read beside the running daemon)."""
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            return list(conn.execute(sql, params))
    except sqlite3.OperationalError:  # the schema is not there yet
        return []


async def until(what: str, check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Wait until `check()` holds."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


class Ports:
    """Free ports for the two simulators and the daemon."""

    def __init__(self) -> None:
        self.waha, self.evolution, self.daemon = free_port(), free_port(), free_port()

    def sim_args(self) -> list[str]:
        """The port options of `wasync sim` (the README uses the defaults)."""
        return [
            "--waha-port", str(self.waha), "--evolution-port", str(self.evolution),
            "--public-url", self.url,
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """The daemon's base URL."""
        return f"http://127.0.0.1:{self.daemon}"


@pytest.mark.timeout(600)
async def test_polling_mode_end_to_end_as_the_readme_walks_through_it(tmp_path: Path) -> None:
    """sim + run (polling) + token + tail + REST + send (phone and chat id) + backfill +
    doctor: each a subprocess, each exits as the README says."""
    ports, cfg, db = Ports(), "wasync.toml", tmp_path / "wasync-sim.db"
    sim_cmd = ["sim", "--write-config", cfg, "--rate", "60", *ports.sim_args()]
    async with background(tmp_path, *sim_cmd) as sim:
        await sim.line(r"^traffic: ")
        mode = stat.S_IMODE((tmp_path / cfg).stat().st_mode)
        assert mode == 0o600
        async with background(tmp_path, "run", "--config", cfg) as daemon:
            await daemon.line(r"wasync running: 2 session\(s\), polling every 2")
            sql = "SELECT count(*) FROM messages WHERE source = 'poll'"
            await until("polled messages", lambda: query(db, sql)[0][0] > 40)
            engines = "SELECT engine FROM sessions WHERE provider = 'waha'"
            await until("the engine", lambda: query(db, engines) == [("WEBJS",)])
            assert "alembic.runtime.plugins" not in daemon.text

            code, token, err = await wasync(
                tmp_path, "token", "--config", cfg, "--tenant", "loja", "--user", "admin",
                "--role", "ADMIN",
            )  # fmt: skip
            assert code == 0, err
            token = token.strip()
            async with background(tmp_path, "tail", "--url", ports.url, "--token", token) as tail:
                await tail.line(r'^\{"id":\d+')
                async with httpx.AsyncClient(base_url=ports.url, timeout=30) as http:
                    auth = {"Authorization": f"Bearer {token}"}
                    chats = (await http.get("/api/chats", headers=auth)).json()
                assert chats["chats"], chats
                direct = [c for c in chats["chats"] if c.get("phone")]
                phone, chat_id = direct[0]["phone"], direct[-1]["id"]
                for to in (f"+{phone}", str(chat_id)):
                    code, out, err = await wasync(
                        tmp_path, "send", "--config", cfg, "--tenant", "loja", "--to", to,
                        "--text", "Olá! Recebemos sua mensagem.",
                    )  # fmt: skip
                    assert code == 0, err
                    assert out.strip()  # the provider's message id
                await tail.line(r'"type":"chat:new-message".*Recebemos sua mensagem')
                assert await tail.stop(signal.SIGINT) == 0

            since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
            code, out, err = await wasync(tmp_path, "backfill", "--config", cfg, "--since", since)
            assert code == 0, out + err
            code, out, err = await wasync(tmp_path, "doctor", "--config", cfg)
            assert code == 0, out + err
            assert await daemon.stop() == 0
        assert await sim.stop() == 0
    assert "Traceback" not in sim.text + daemon.text


@pytest.mark.timeout(600)
async def test_webhook_mode_with_reconciliation_end_to_end(tmp_path: Path) -> None:
    """`wasync sim --webhooks` registers signed webhooks and loses some on purpose: the daemon
    stores what arrives by webhook, and its reconciliation polls store what was lost."""
    ports, cfg, db = Ports(), "wasync.toml", tmp_path / "wasync-sim.db"
    args = ["sim", "--write-config", cfg, "--webhooks", "--rate", "90", "--drop-webhooks", "0.5"]
    async with background(tmp_path, *args, "--media-share", "0", *ports.sim_args()) as sim:
        await sim.line(r"^traffic: ")
        assert len(re.findall(r"webhook loja/\S+: \S+ \[signed\]", sim.text)) == 2
        async with background(tmp_path, "run", "--config", cfg) as daemon:
            await daemon.line(r"polling every 15(\.0)?s.*\(webhooks on\)")
            by_hook = "SELECT count(*) FROM messages WHERE source = 'webhook'"
            await until("webhook messages", lambda: query(db, by_hook)[0][0] >= 3)
            await until("a lost webhook repaired", lambda: _repaired(sim.lines, db), 180)
            code, out, err = await wasync(tmp_path, "webhooks", "status", "--config", cfg)
            assert code == 0, err
            assert out.count("[signed]") == 2
            assert await daemon.stop() == 0
        assert await sim.stop() == 0
    assert "Traceback" not in sim.text + daemon.text


_LOST = re.compile(r"^\S+ \S+ <- \+(\d+): (.+) \(webhook lost: polling will repair it\)$")


def _repaired(lines: list[str], db: Path) -> bool:
    """Whether a message whose webhook was lost is stored, by a (reconciliation) poll."""
    sql = (
        "SELECT count(*) FROM messages m JOIN chats c ON c.id = m.chat_id"
        " WHERE c.phone = ? AND m.body = ? AND m.source = 'poll'"
    )
    for line in list(lines):
        found = _LOST.match(line.strip())
        if found and query(db, sql, found[1], found[2])[0][0] > 0:
            return True
    return False


def test_the_written_config_is_the_users(tmp_path: Path) -> None:
    """`--write-config` never overwrites a file it did not write (exit 2, one line)."""
    import subprocess

    mine = tmp_path / "wasync.toml"
    mine.write_text("# my own config\n")
    done = subprocess.run(
        [sys.executable, "-m", "wasync", "sim", "--write-config", str(mine), "--duration", "0"],
        env=clean_env(), capture_output=True, text=True, timeout=WAIT_S,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"wasync: {mine} exists and was not written by `wasync sim`: pass --force"
    ]
    assert mine.read_text() == "# my own config\n"
    assert json.dumps(done.stdout) == '""'
