"""The `wasync` command line (typer): parse, load config, call one function; no logic here.

Split by command family: `run` (run, demo, doctor, db upgrade), `sim` (the simulators to try
the daemon against), `messages` (send, replay, backfill), `realtime` (token, tail), `webhooks`
(register, status); `base` holds the apps and
the one-line error handling they share. Commands are registered here, in the order `--help`
lists them.
"""

from __future__ import annotations

import typer

from wasync.cli import messages, realtime, run, sim, webhooks
from wasync.cli.base import app, db_app, debugging, describe, exit_code_of, webhooks_app

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


def main() -> None:
    """Console-script entry point: whatever escapes a command is still one line (exit 1 or
    2), never a traceback, unless `--debug`."""
    try:
        app()
    except Exception as exc:
        if debugging():
            raise
        raise SystemExit(_one_line(exc)) from None


def _one_line(exc: Exception) -> int:
    typer.echo(f"wasync: {' '.join(describe(exc).split())}", err=True)
    return exit_code_of(exc)


__all__ = ["app", "main"]
