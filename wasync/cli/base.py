"""What every command shares: the typer apps, one-line errors and exit codes, config, logging.

Errors are one line on stderr: exit 2 for bad input or configuration, 1 for a failure of the
world (a provider or the database down, a port in use); a traceback only with `--debug`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

# typer (0.2x) vendors click: its context and usage errors live in `typer._click`, and only
# some of them are re-exported (`typer.Exit`, `typer.Abort`, `typer.TyperException`).
from typer._click.exceptions import UsageError
from typer._click.globals import get_current_context

from wasync import __version__, logs
from wasync import config as config_mod
from wasync.errors import ConfigError, Refused, StoreUnavailable, WasyncError
from wasync.logs import LogFormat

# Plain click help (no rich markup): rich swallowed bracketed names such as `[auth]`, and
# typer's rich panels print a `<bool>` metavar on every flag.
_PLAIN: dict[str, Any] = {"rich_markup_mode": None, "pretty_exceptions_enable": False}
app = typer.Typer(
    name="wasync",
    help="Keep WhatsApp conversations from WAHA and Evolution API in sync with a CRM database.",
    no_args_is_help=True,
    add_completion=False,
    **_PLAIN,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True, **_PLAIN)
app.add_typer(db_app, name="db")

webhooks_app = typer.Typer(help="Provider webhook registration.", no_args_is_help=True, **_PLAIN)
app.add_typer(webhooks_app, name="webhooks")

media_app = typer.Typer(help="Media (attachments) commands.", no_args_is_help=True)
app.add_typer(media_app, name="media")
sessions_app = typer.Typer(help="The sessions: their health; the settings polling needs.")
app.add_typer(sessions_app, name="sessions")

T = TypeVar("T")
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML config file (default: $WASYNC_CONFIG, else the first of "
        + ", ".join(config_mod.SEARCH_PATH)
        + ").",
    ),
]
TenantOpt = Annotated[str | None, typer.Option(help="Only this tenant.")]
SessionOpt = Annotated[str | None, typer.Option(help="Only this session / instance.")]


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"wasync {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Keep WhatsApp conversations from WAHA and Evolution API in sync with a CRM database."""


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear line to stderr and return the Exit to raise."""
    line = " ".join(message.split())  # one line, whatever the exception's text held
    typer.echo(f"wasync: {line}", err=True)
    return typer.Exit(code)


def exit_code_of(exc: BaseException) -> int:
    """2 for bad input or configuration (a refusal below 500), 1 for a failure of the world."""
    if isinstance(exc, ConfigError):
        return 2
    if isinstance(exc, Refused):
        return 1 if exc.status >= 500 or exc.from_world else 2
    return 1


def describe(exc: BaseException) -> str:
    """The one line an error prints: ours as written, anything else named by its type."""
    if isinstance(exc, ConfigError):
        return f"config error: {exc}"
    if isinstance(exc, StoreUnavailable):
        return f"database unavailable: {exc}"
    if isinstance(exc, WasyncError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def debugging() -> bool:
    """Whether `--debug` was given (read from the running command's root context)."""
    ctx = get_current_context(silent=True)
    if ctx is not None:
        return bool(ctx.find_root().params.get("debug"))
    return "--debug" in sys.argv[1:]


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; any error becomes one line and its exit code (`exit_code_of`)."""
    from wasync.api.server import new_event_loop  # uvicorn: imported by the commands using it

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(coro)
    except (KeyboardInterrupt, typer.Exit, typer.Abort, typer.TyperException):
        raise
    except Exception as exc:
        if debugging():
            raise
        raise fail(describe(exc), exit_code_of(exc)) from None


def usage_line(exc: typer.TyperException) -> str:
    """A usage error (bad option value, unknown command) as one line, naming the help."""
    ctx = exc.ctx if isinstance(exc, UsageError) else None
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"{' '.join(exc.format_message().split())}{hint}"


def load_settings(path: Path | None) -> config_mod.Settings:
    """Load and validate the config; exit 2 with one line naming the bad key."""
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None


def check_selection(settings: config_mod.Settings, tenant: str | None, session: str | None) -> None:
    """`--tenant` / `--session` must name something configured (exit 2 otherwise)."""
    tenants = [t for t in settings.tenants if tenant is None or t.id == tenant]
    if tenant is not None and not tenants:
        raise fail(f"unknown tenant {tenant!r} (not in the config)", 2)
    if session is not None and not any(s.name == session for t in tenants for s in t.sessions):
        raise fail(f"unknown session {session!r} (not in the config)", 2)


def setup_logging(level: str, secrets: Iterable[str] = (), fmt: LogFormat = "text") -> None:
    """One line per record on stderr (text, or JSON with `fmt="json"`), with tokens and
    `secrets` blanked (`wasync.logs`, `wasync.redact`)."""
    logs.setup(level, secrets, fmt)
