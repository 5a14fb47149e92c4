"""`wasync run`, `demo`, `doctor` and `db upgrade`: the daemon and its checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wasync.cli.base import ConfigOpt, fail, load_settings, run_async, setup_logging


def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the schema migrations (the daemon also does this at start)."""
    from wasync.store import Store

    settings = load_settings(config)

    async def go() -> None:
        async with Store.from_config(settings.database) as store:
            await store.upgrade()

    run_async(go())
    typer.echo("database schema is up to date")


def run(
    config: ConfigOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="HTTP processes on the one port (Postgres only); polling, sending and media "
            "stay in the first.",
        ),
    ] = 1,
    worker_index: Annotated[int, typer.Option(hidden=True, min=0)] = 0,
    worker_port: Annotated[int, typer.Option(hidden=True, min=0, max=65535)] = 0,
) -> None:
    """Poll every configured session (and serve webhooks when enabled) until SIGTERM/SIGINT."""
    from wasync import daemon
    from wasync import workers as group
    from wasync.errors import ConfigError

    settings = load_settings(config)
    try:
        group.check_workers(settings, max(workers, worker_index + 1))
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    setup_logging(settings.log_level, settings.secret_values(), settings.log_format)
    if worker_index:  # a child of `--workers N` (wasync.workers)
        run_async(group.serve_worker(settings, index=worker_index, port=worker_port))
    elif workers > 1:
        run_async(group.run(settings, workers=workers, config=config))
    else:
        run_async(daemon.run(settings))


def demo(
    state_dir: Annotated[
        Path | None, typer.Option(help="Where the demo's SQLite file goes (default ./state/demo).")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            min=0, help="Stop this many seconds after the daemon is up (default: Ctrl-C)."
        ),
    ] = None,
) -> None:
    """Both simulators, two tenants, live conversations: the daemon syncing them, printed live."""
    from wasync.demo import default_state_dir, run_demo

    where = state_dir or default_state_dir()
    if where.exists() and not where.is_dir():
        raise fail(f"--state-dir {where} is not a directory", 2)
    setup_logging("WARNING")
    synced = run_async(run_demo(where, duration_s=duration))
    typer.echo(f"demo stopped: {synced} messages in the database")


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
