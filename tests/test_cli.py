"""The `wasync` command line as a user runs it: real subprocesses, real files, loopback sims."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from wasync.sim import WahaSim, seed_waha, serve

SAMPLES = Path(__file__).parent / "samples"


def env() -> dict[str, str]:
    """The environment without WASYNC_* overrides from the caller."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WASYNC_")}


def write_config(tmp_path: Path, base_url: str, **extra: str) -> Path:
    """A config with one tenant and one WAHA session on `base_url`, SQLite in tmp_path."""
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[database]
url = "sqlite+aiosqlite:///{tmp_path / "wasync.db"}"
[poll]
interval_s = 0.3
jitter_s = 0
[http]
port = 0
[[tenants]]
id = "acme"
admins = ["u1"]
[[tenants.sessions]]
name = "default"
provider = "waha"
base_url = "{base_url}"
api_key = "waha-sim-key"
{extra.get("session_extra", "")}
"""
    )
    return path


def count(db: Path, sql: str = "SELECT count(*) FROM messages") -> int:
    """One integer from the SQLite file."""
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def test_run_syncs_then_sigterm_exits_zero_within_10s(tmp_path: Path):
    """`wasync run` syncs a session, logs a line per cycle, and exits 0 soon after SIGTERM."""
    sim = WahaSim(api_key="waha-sim-key")
    sim.add_session("default", engine="WEBJS")
    seed_waha(sim, "default", chats=5, messages_per_chat=10, span_s=3600)
    async with serve(sim.app) as url:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wasync",
            "run",
            "--config",
            str(write_config(tmp_path, url)),
            env=env(),
            stderr=asyncio.subprocess.PIPE,
        )
        # The first cycle's line comes once the whole cycle is done, after its last message
        # is stored: read the log as it is written, until that line.
        assert proc.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while not any("poll acme/default: chats=5" in line for line in lines):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "".join(lines)
            line = await asyncio.wait_for(proc.stderr.readline(), remaining)
            assert line, "".join(lines)
            lines.append(line.decode())
        assert count(tmp_path / "wasync.db") == 50
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _out, err = await asyncio.wait_for(proc.communicate(), 10)
        assert time.monotonic() - started < 10
    log = "".join(lines) + err.decode()
    assert proc.returncode == 0, log
    assert "stopped" in log


def test_run_with_bad_config_exits_2_with_one_line(tmp_path: Path):
    """A config error is one line on stderr and exit code 2."""
    import subprocess

    path = write_config(tmp_path, "http://127.0.0.1:9", session_extra="engine = 5")
    done = subprocess.run(
        [sys.executable, "-m", "wasync", "run", "--config", str(path)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "tenants[0].sessions[0].engine" in done.stderr


def test_replay_counts_new_then_duplicates(tmp_path: Path):
    """`wasync replay` stores captured webhooks once and reports duplicates on a rerun."""
    import subprocess

    path = write_config(tmp_path, "http://127.0.0.1:9")
    files = [
        str(SAMPLES / "waha" / "message.reaction.json"),
        str(SAMPLES / "waha" / "message.noweb.image.captured.json"),
    ]
    config = path.read_text().replace('name = "default"', 'name = "default"') + (
        '[[tenants.sessions]]\nname = "chatwoot"\nprovider = "waha"\n'
        'base_url = "http://127.0.0.1:9"\n'
    )
    path.write_text(config)
    args = [sys.executable, "-m", "wasync", "replay", "--config", str(path), *files]
    first = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=240)
    second = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "new=2 duplicate=0 ignored=0 rejected=0"
    assert second.stdout.strip() == "new=0 duplicate=2 ignored=0 rejected=0"
    bad = tmp_path / "bad.json"
    bad.write_text('{"event": "message", "session": "default", "payload": {')
    third = subprocess.run(
        [*args[:6], str(bad)], env=env(), capture_output=True, text=True, timeout=240
    )
    assert third.returncode == 1
    assert "rejected=1" in third.stdout and "bad.json" in third.stderr


@pytest.mark.timeout(300)
def test_demo_runs_and_syncs(tmp_path: Path):
    """`wasync demo --duration` runs both simulators, syncs and prints messages, exits 0."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "wasync", "demo", "--duration", "8", "--state-dir", str(tmp_path)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "padaria" in done.stdout and "oficina" in done.stdout
    synced = count(tmp_path / "demo.db")
    assert synced >= 4 * 4 * 6  # 4 sessions x 4 chats x 6 seeded messages, plus live ones
    assert f"demo stopped: {synced} messages" in done.stdout
    # Piped, lines do not wrap at 80 columns; the daemon's own address is printed.
    lines = done.stdout.splitlines()
    assert any("WAHA sim http" in line and "Evolution sim http" in line for line in lines)
    assert any(line.startswith("daemon http://127.0.0.1:") for line in lines)
