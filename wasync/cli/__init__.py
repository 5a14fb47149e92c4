"""The `wasync` command line (typer): parse, load config, call one function; no logic here.

Split by command family: `run` (run, demo, sessions, doctor, db upgrade), `messages` (send, replay,
backfill), `realtime` (token, tail), `webhooks` (register, status); `base` holds the apps and
the one-line error handling they share. Commands are registered here, in the order `--help`
lists them.
"""

from __future__ import annotations

from wasync.cli import messages, realtime, run, webhooks
from wasync.cli.base import app, db_app, webhooks_app

app.command()(run.run)
app.command()(run.demo)
app.command()(run.sessions)
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
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
