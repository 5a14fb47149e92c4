"""`wasync run`, `demo`, `sessions`, `doctor` and `db upgrade`: the daemon and its checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wasync.cli.base import ConfigOpt, load_settings, run_async, setup_logging


def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the schema migrations (the daemon also does this at start)."""
    from wasync.store import Store

    settings = load_settings(config)

    async def go() -> None:
        async with Store.from_config(settings.database) as store:
            await store.upgrade()

    run_async(go())
    typer.echo("database schema is up to date")


def run(config: ConfigOpt = None) -> None:
    """Poll every configured session (and serve webhooks when enabled) until SIGTERM/SIGINT."""
    from wasync import daemon

    settings = load_settings(config)
    setup_logging(settings.log_level, settings.secret_values())
    run_async(daemon.run(settings))


def demo(
    state_dir: Annotated[
        Path | None, typer.Option(help="Where the demo's SQLite file goes (default ./state/demo).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
) -> None:
    """Both simulators, two tenants, live conversations: the daemon syncing them, printed live."""
    from wasync.demo import default_state_dir, run_demo

    setup_logging("WARNING")
    synced = run_async(run_demo(state_dir or default_state_dir(), duration_s=duration))
    typer.echo(f"demo stopped: {synced} messages in the database")


def sessions(config: ConfigOpt = None) -> None:
    """Each configured session as the database knows it: its state, messages, and what was
    kept aside (quarantined events, unparsed webhook bodies) with the newest reason."""
    from wasync.session_status import read_sessions, render

    settings = load_settings(config)
    for line in render(run_async(read_sessions(settings))):
        typer.echo(line)


def doctor(config: ConfigOpt = None) -> None:
    """Check the config against the world: database, auth, every session's provider and
    webhook. One line per check; exit 1 if any check fails."""
    from wasync.doctor import diagnose

    settings = load_settings(config)
    checks = run_async(diagnose(settings))
    for check in checks:
        typer.echo(f"{check.level.upper():4}  {check.subject}: {check.detail}")
    if any(check.level == "fail" for check in checks):
        raise typer.Exit(1)
