"""What every command shares: the typer apps, one-line errors and exit codes, config, logging.

Errors are one line on stderr: exit 2 for bad input or configuration, 1 for failures.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from wasync import config as config_mod
from wasync import redact
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

webhooks_app = typer.Typer(help="Provider webhook registration.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")

T = TypeVar("T")
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: $WASYNC_CONFIG or config.example.toml)."
    ),
]
TenantOpt = Annotated[str | None, typer.Option(help="Only this tenant.")]
SessionOpt = Annotated[str | None, typer.Option(help="Only this session / instance.")]


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


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """One line per record on stderr, with tokens and `secrets` blanked (`wasync.redact`)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        redact.install(handler, secrets)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached" is the designed behaviour
    # (max_instances=1) while a long first sync runs; not worth a line every interval.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
