"""`wasync run` and `wasync doctor` agree on every configuration error: both call
`wasync.config.checks.findings`, and on the same bad configs `run` refuses (exit 2, one line)
with exactly the words `doctor` prints as a FAIL (exit 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import env
from wasync.config import parse
from wasync.config.checks import check, findings

BAD = {
    "unset api_key_env": ('api_key_env = "WASYNC_TEST_UNSET_KEY"', False),
    "unset webhook_secret_env": ('webhook_secret_env = "WASYNC_TEST_UNSET_HMAC"', True),
}


def write_config(path: Path, session_line: str, webhooks: bool) -> Path:
    """One WAHA session (nobody listening) with `session_line` added."""
    path.write_text(
        f"""
[database]
url = "sqlite+aiosqlite:///{path.parent / "wasync.db"}"
[http]
port = 0
[webhook]
enabled = {"true" if webhooks else "false"}
[auth]
jwt_secret = "config-checks-jwt-secret-0123456789abcdef"
[[tenants]]
id = "acme"
[[tenants.sessions]]
name = "default"
provider = "waha"
base_url = "http://127.0.0.1:9"
{session_line}
"""
    )
    return path


def _wasync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wasync", *args],
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.parametrize("case", sorted(BAD))
def test_run_and_doctor_refuse_the_same_config_with_the_same_words(
    tmp_path: Path, case: str
) -> None:
    """`run` exits 2 with one `config error: <key>: <problem>` line; `doctor` prints that
    `<key>: <problem>` as a FAIL of the config and exits 1."""
    config = write_config(tmp_path / "wasync.toml", *BAD[case])
    ran = _wasync("run", "--config", str(config))
    assert ran.returncode == 2, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wasync: config error: "), lines
    problem = lines[0].removeprefix("wasync: config error: ")
    doctor = _wasync("doctor", "--config", str(config))
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert f"FAIL  config: {problem}" in doctor.stdout.splitlines(), doctor.stdout


def test_a_webhook_session_without_a_secret_is_a_warning_for_both() -> None:
    """No secret with webhooks on: `run` starts (a warning), `doctor` warns in the same words,
    and `allow_unsigned` changes what the warning says."""
    data = {
        "webhook": {"enabled": True},
        "tenants": [
            {
                "id": "acme",
                "sessions": [{"name": "x", "provider": "waha", "base_url": "http://h"}],
            }
        ],
    }
    closed = findings(parse(data))
    assert [(f.level, f.key) for f in closed] == [("warn", "session 'x' webhook_secret")]
    assert "refused (401)" in closed[0].problem
    assert check(parse(data)) == closed  # run: no failure raised, the warning returned
    data["webhook"] = {"enabled": True, "allow_unsigned": True}
    assert "accepted" in findings(parse(data))[0].problem
