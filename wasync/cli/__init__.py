"""The `wasync` command line (typer): parse, load config, call one function; no logic here.

Split by command family: `run` (run, demo, doctor, db upgrade), `sim` (the simulators to try
the daemon against), `messages` (send, replay, backfill), `realtime` (token, tail), `webhooks`
(register, status), `media` (retry), `sessions` (the sessions' health; configure); `base`
holds the apps and the one-line error handling they share. Commands are registered here, in
the order `--help` lists them.
"""

from __future__ import annotations

import typer
from typer._click.exceptions import NoArgsIsHelpError  # typer vendors click

from wasync.cli import media, messages, realtime, run, sessions, sim, webhooks
from wasync.cli.base import (
    app,
    db_app,
    debugging,
    describe,
    exit_code_of,
    media_app,
    sessions_app,
    usage_line,
    webhooks_app,
)

app.command()(run.run)
app.command()(run.demo)
app.command()(sim.sim)
app.command()(run.doctor)
app.command()(messages.send)
app.command()(messages.replay)
app.command()(messages.backfill)
app.command()(realtime.token)
app.command()(realtime.tail)
db_app.command("upgrade")(run.db_upgrade)
webhooks_app.command("register")(webhooks.webhooks_register)
webhooks_app.command("status")(webhooks.webhooks_status)
media_app.command("retry")(media.media_retry)
sessions_app.callback(invoke_without_command=True)(sessions.sessions_show)
sessions_app.command("configure")(sessions.sessions_configure)


def main() -> None:
    """Console-script entry point: every error is one line on stderr (exit 2 for bad input,
    1 for a failure of the world), never a traceback unless `--debug`."""
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()  # no command given: the help, as before
        code = exc.exit_code
    except typer.TyperException as exc:  # a usage error: click would print three lines
        typer.echo(f"wasync: {usage_line(exc)}", err=True)
        code = exc.exit_code
    except typer.Abort:
        typer.echo("wasync: aborted", err=True)
        code = 1
    except Exception as exc:
        if debugging():
            raise
        typer.echo(f"wasync: {' '.join(describe(exc).split())}", err=True)
        code = exit_code_of(exc)
    raise SystemExit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
