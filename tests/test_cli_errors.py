"""One error vocabulary for every command, as a user meets it: bad input or configuration is one
line on stderr and exit 2; a failure of the world (provider down, database down, port in
use) is one line and exit 1; never a traceback (without `--debug`). Real subprocesses."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from tests.conftest import free_port
from wasync.cli import app

SECRET = "cli-errors-secret-5f2a"


def write_config(path: Path, *, base_url: str, secret: bool = True, db: str | None = None) -> Path:
    """One tenant, one WAHA session at `base_url`, SQLite beside the file."""
    url = db or f"sqlite+aiosqlite:///{path.parent / 'errors.db'}"
    auth = f'[auth]\njwt_secret = "{SECRET}"\n' if secret else ""
    path.write_text(
        f'[database]\nurl = "{url}"\n[http]\nport = 0\n{auth}'
        '[[tenants]]\nid = "acme"\nadmins = ["u1"]\n'
        f'[[tenants.sessions]]\nname = "default"\nprovider = "waha"\nbase_url = "{base_url}"\n'
        'api_key = "k"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Config files and inputs shared by the cases (a provider nobody answers for)."""
    root = tmp_path_factory.mktemp("cli-errors")
    down = f"http://127.0.0.1:{free_port()}"
    (root / "text.txt").write_text("just text\n")
    (root / "leads.csv").write_text("phone\n5511987650001\n")
    (root / "bad.toml").write_text("[database]\nurl = 5\n")
    (root / "a-file").write_text("x")
    (root / "hook.json").write_text('{"event": "message", "session": "default", "payload": {}}')
    yield {
        "root": str(root),
        "cfg": str(write_config(root / "ok.toml", base_url=down)),
        "nosecret": str(write_config(root / "nosecret.toml", base_url=down, secret=False)),
        "pgdown": str(
            write_config(
                root / "pg.toml",
                base_url=down,
                db=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none",
            )
        ),
        "down": down,
    }


def run(
    world: dict[str, str], *args: str, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m wasync ARGS` with {name} placeholders filled from `world`."""
    argv = [a.format(**world) for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASYNC_")}
    env["HOME"] = world["root"]  # no ~/.config/wasync/config.toml of the machine's
    return subprocess.run(
        [sys.executable, "-m", "wasync", *argv], cwd=cwd or world["root"], env=env,
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip


BAD_INPUT = [
    (["run", "--config", "missing.toml"], "missing.toml: config file not found"),
    (["run", "--config", "{root}/bad.toml"], "database.url"),
    (["demo", "--duration", "abc"], "Invalid value for '--duration'"),
    (["demo", "--state-dir", "{root}/a-file"], "is not a directory"),
    (["sim", "--engine", "FOO"], "--engine must be WEBJS, NOWEB or GOWS"),
    (["sim", "--public-url", "ftp://x"], "--public-url must be an http(s) URL"),
    (["doctor"], "no config file found (looked at --config, $WASYNC_CONFIG, ./wasync.toml"),
    (["send", "-c", "{cfg}", "--tenant", "acme", "--to", "abc", "--text", "x"], "not a phone"),
    (["send", "-c", "{cfg}", "--tenant", "nobody", "--to", "+5511987654321", "--text", "x"],
     "tenant 'nobody' has no enabled session"),
    (["send", "-c", "{cfg}", "--tenant", "acme", "--session", "nope", "--to", "+5511987654321",
      "--text", "x"], "has no session 'nope'"),
    (["send", "-c", "{cfg}", "--tenant", "acme", "--to", "+5511987654321"], "give the message"),
    (["send", "-c", "{cfg}", "--tenant", "acme", "--to", "+5511987654321", "--image", "no.jpg"],
     "no such file"),
    (["send", "-c", "{cfg}", "--tenant", "acme", "--to", "+5511987654321", "--text", "a",
      "--image", "{root}/text.txt"], "image must be image/* but"),
    (["send", "-c", "{cfg}", "--tenant", "acme", "--csv", "{root}/leads.csv", "--template",
      "Oi {{nope}}"], "the template uses ['nope']"),
    (["send", "-c", "{cfg}", "--tenant", "acme"], "give --to or --csv"),
    (["replay", "-c", "{cfg}", "missing.json"], "no such file: missing.json"),
    (["replay", "-c", "{cfg}", "--session", "nope", "{root}/hook.json"], "unknown session 'nope'"),
    (["backfill", "-c", "{cfg}", "--since", "last week"], "bad date"),
    (["token", "-c", "{cfg}", "--tenant", "acme", "--user", "u", "--role", "ROOT"],
     "--role must be ADMIN or USER"),
    (["token", "-c", "{nosecret}", "--tenant", "acme", "--user", "u", "--role", "ADMIN"],
     "auth.jwt_secret"),
    (["tail", "--url", "nowhere", "--token", "t"], "--url must look like http://host:port"),
    (["tail", "--url", "http://127.0.0.1:9", "--token", "t", "--max-retries", "x"],
     "Invalid value for '--max-retries'"),
    (["db", "upgrade", "--config", "missing.toml"], "config file not found"),
    (["webhooks", "register", "-c", "{cfg}"], "pass --public-url or set [webhook] public_url"),
    (["webhooks", "status", "-c", "{cfg}", "--tenant", "nobody"], "unknown tenant 'nobody'"),
    (["media", "retry", "-c", "{cfg}", "--since", "garbage"], "bad date 'garbage'"),
    (["sessions", "configure", "--config", "missing.toml"], "config file not found"),
    (["frobnicate"], "No such command 'frobnicate'"),
]  # fmt: skip

WORLD_FAILURE = [
    (["db", "upgrade", "-c", "{pgdown}"], ""),
    (["send", "-c", "{cfg}", "--tenant", "acme", "--to", "+5511987654321", "--text", "x"],
     "could not check +5511987654321 on acme/default"),
    (["tail", "--url", "{down}", "--token", "t", "--max-retries", "0"],
     "gave up after 0 reconnect attempts"),
    (["webhooks", "status", "-c", "{cfg}"], "acme/default"),
]  # fmt: skip


def _case_id(value: object) -> str:
    return " ".join(value)[:60] if isinstance(value, list) else "-"


@pytest.mark.parametrize(("args", "words"), BAD_INPUT, ids=_case_id)
def test_bad_input_is_one_line_and_exit_2(world: dict[str, str], args: list[str], words: str):
    """Each command refuses bad input with one `wasync:` line on stderr and exit code 2."""
    done = run(world, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wasync: "), done.stderr
    assert words in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize(("args", "words"), WORLD_FAILURE, ids=_case_id)
def test_a_failure_of_the_world_is_one_line_and_exit_1(
    world: dict[str, str], args: list[str], words: str
):
    """A provider or database that does not answer is one line on stderr and exit code 1."""
    done = run(world, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert words in lines[0] and lines[0].startswith(("wasync: ", "error: "))
    assert "Traceback" not in done.stdout + done.stderr


def test_a_port_in_use_is_one_line_and_exit_1(world: dict[str, str], tmp_path: Path):
    """`wasync run` on a taken port says so in one line, exit 1, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = Path(world["cfg"]).read_text().replace("port = 0", f"port = {port}")
        (tmp_path / "c.toml").write_text(cfg)
        done = run(world, "run", "-c", str(tmp_path / "c.toml"))
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"wasync: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_debug_shows_the_traceback(world: dict[str, str]):
    """`--debug` (a global option) lets the traceback through."""
    done = run(world, "--debug", "send", "-c", "{cfg}", "--tenant", "nobody", "--to", "x")
    assert done.returncode == 1 and "Traceback" in done.stderr


async def test_tail_with_a_token_the_daemon_refuses_exits_2(world: dict[str, str]):
    """A bad token is bad input: `tail` does not retry it, one line, exit 2."""
    from wasync import daemon
    from wasync.config import load

    settings = load(world["cfg"], env={})
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        daemon.run(settings, stop=stop, on_ready=lambda d: ready.set_result(d.base_url))
    )
    try:
        url = await asyncio.wait_for(ready, 60)
        done = await asyncio.to_thread(run, world, "tail", "--url", url, "--token", "forged")
    finally:
        stop.set()
        await task
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == ["wasync: refused with HTTP 401"]


def test_every_command_is_covered():
    """The cases above name every command of the CLI (a new command needs its bad input)."""
    group = typer.main.get_command(app)
    commands: set[str] = set()
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        commands |= {f"{name} {sub}" for sub in subs} if subs else {name}
    groups = {name for name, cmd in group.commands.items() if getattr(cmd, "commands", None)}  # type: ignore[attr-defined]
    covered = {" ".join(a[:2]) if a[0] in groups else a[0] for a, _ in BAD_INPUT}
    assert commands <= covered, sorted(commands - covered)
