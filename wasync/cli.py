"""The `wasync` command line (typer): parse, load config, call one function; no logic here."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from wasync import config as config_mod
from wasync.errors import ConfigError, WasyncError

app = typer.Typer(
    name="wasync",
    help="Keep WhatsApp conversations from WAHA and Evolution API in sync with a CRM database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")

T = TypeVar("T")
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: $WASYNC_CONFIG or config.example.toml)."
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear line to stderr and return the Exit to raise."""
    typer.echo(f"wasync: {message}", err=True)
    return typer.Exit(code)


def load_settings(path: Path | None) -> config_mod.Settings:
    """Load and validate the config; exit 2 with one line naming the bad key."""
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn wasync errors into one line and exit 1."""
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None
    except WasyncError as exc:
        raise fail(str(exc)) from None


def setup_logging(level: str) -> None:
    """One line per record on stderr."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached" is the designed behaviour
    # (max_instances=1) while a long first sync runs; not worth a line every interval.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the schema migrations (the daemon also does this at start)."""
    from wasync.store import Store

    settings = load_settings(config)

    async def go() -> None:
        async with Store(settings.database.url) as store:
            await store.upgrade()

    run_async(go())
    typer.echo("database schema is up to date")


def main() -> None:
    """Console-script entry point."""
    app()


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Poll every configured session (and serve webhooks when enabled) until SIGTERM/SIGINT."""
    from wasync import daemon

    settings = load_settings(config)
    setup_logging(settings.log_level)
    run_async(daemon.run(settings))


@app.command()
def replay(
    files: Annotated[
        list[Path], typer.Argument(help="JSON files: webhook bodies or messages.")
    ] = [],  # noqa: B006
    config: ConfigOpt = None,
    session: Annotated[
        str | None, typer.Option(help="Session for bare message lists (provider from config).")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant, when a session name is ambiguous.")
    ] = None,
    dead_letters: Annotated[
        bool, typer.Option("--dead-letters", help="Re-run the rows of dead_letters.")
    ] = False,
) -> None:
    """Feed captured provider JSON through the pipeline; print new, duplicate and rejected."""
    from wasync.replay import replay_cli

    settings = load_settings(config)
    setup_logging("WARNING")
    if not files and not dead_letters:
        raise fail("give JSON files to replay, or --dead-letters", 2)
    report = run_async(replay_cli(settings, files, session, tenant, dead_letters))
    for error in report.errors:
        typer.echo(f"rejected: {error}", err=True)
    typer.echo(
        f"new={report.new} duplicate={report.duplicate} ignored={report.ignored} "
        f"rejected={report.rejected}"
    )
    if report.rejected:
        raise typer.Exit(1)


@app.command()
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


webhooks_app = typer.Typer(help="Provider webhook registration.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
TenantOpt = Annotated[str | None, typer.Option(help="Only this tenant.")]
SessionOpt = Annotated[str | None, typer.Option(help="Only this session / instance.")]


@webhooks_app.command("register")
def webhooks_register(
    public_url: Annotated[
        str | None,
        typer.Option(help="This daemon's public base URL (default [webhook] public_url)."),
    ] = None,
    config: ConfigOpt = None,
    tenant: TenantOpt = None,
    session: SessionOpt = None,
) -> None:
    """Point every configured session's provider webhook at this daemon (idempotent)."""
    from wasync.webhooks import run_all

    settings = load_settings(config)
    url = public_url or settings.webhook.public_url
    if not url:
        raise fail("pass --public-url or set [webhook] public_url", 2)
    _print_webhooks(run_async(run_all(settings, public_url=url, tenant=tenant, session=session)))


@webhooks_app.command("status")
def webhooks_status(
    config: ConfigOpt = None, tenant: TenantOpt = None, session: SessionOpt = None
) -> None:
    """Show what each provider has registered."""
    from wasync.webhooks import run_all

    settings = load_settings(config)
    _print_webhooks(run_async(run_all(settings, public_url=None, tenant=tenant, session=session)))


def _print_webhooks(states: list[Any]) -> None:
    failed = False
    for state in states:
        if isinstance(state, str):
            typer.echo(f"error: {state}", err=True)
            failed = True
            continue
        verb = "updated" if state.changed else "ok"
        signed = "signed" if state.signed else "UNSIGNED"
        note = f" - {state.note}" if state.note else ""
        url = state.url or "(no webhook)"
        typer.echo(
            f"{state.session}: {verb} {url} [{signed}] events={','.join(state.events)}{note}"
        )
    if failed:
        raise typer.Exit(1)
