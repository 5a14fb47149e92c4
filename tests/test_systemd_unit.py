"""The shipped unit (`scripts/wasync.service`) passes `systemd-analyze verify` and rates 2.0 or
lower in `systemd-analyze security`, through `scripts/systemd_security` (CI installs systemd
when `systemd-analyze` is missing, as it does Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "systemd_security"
UNIT = ROOT / "scripts" / "wasync.service"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: apt-get install -y systemd"
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_unit_verifies_and_rates_at_most_2() -> None:
    """verify passes; the exposure score printed is at most 2.0 and the script exits 0."""
    done = _run()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "verify: ok" in done.stdout
    score = re.search(r"^score: ([0-9.]+)", done.stdout, re.MULTILINE)
    assert score is not None and float(score.group(1)) <= 2.0, done.stdout[-500:]


def test_the_script_fails_above_its_threshold() -> None:
    """A threshold below the unit's score makes the script exit 1, naming the score: the
    check can fail."""
    done = _run("--threshold", "0.1")
    assert done.returncode == 1 and "is above 0.1" in done.stderr, done.stderr


def test_the_unit_is_a_notify_service_with_a_watchdog() -> None:
    """What the daemon's notify calls rely on is in the unit."""
    text = UNIT.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "ProtectSystem=strict", "StateDirectory="):
        assert re.search(rf"^{re.escape(line)}", text, re.MULTILINE), line
    assert re.search(r"^WatchdogSec=\d+", text, re.MULTILINE)


# MemoryDenyWriteExecute=true is what prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) enforces
# (Linux 6.3+); inherited across fork and exec, so the daemon runs under it.
MDWE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
os.execv(sys.executable, [sys.executable, "-m", "wasync", *sys.argv[1:]])
"""


def test_the_daemon_runs_without_writable_executable_memory(tmp_path: Path) -> None:
    """`wasync demo` (simulators, daemon, HTTP, SQLite) under the kernel's
    memory-deny-write-execute: what the unit's MemoryDenyWriteExecute=true relies on."""
    args = ["demo", "--state-dir", str(tmp_path / "demo"), "--duration", "3"]
    done = subprocess.run(
        [sys.executable, "-c", MDWE, *args],
        capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path,
    )  # fmt: skip
    if done.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "demo stopped:" in done.stdout
