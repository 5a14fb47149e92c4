"""`wasync sessions` (each session as the database knows it) and `wasync sessions configure`."""

from __future__ import annotations

import typer

from wasync.cli.base import ConfigOpt, SessionOpt, TenantOpt, load_settings, run_async


def sessions_configure(
    config: ConfigOpt = None, tenant: TenantOpt = None, session: SessionOpt = None
) -> None:
    """Turn on what polling needs in each provider session (WAHA NOWEB: its store); idempotent."""
    from wasync.sessions import configure_all

    settings = load_settings(config)
    failed = False
    for done in run_async(configure_all(settings, tenant=tenant, session=session)):
        if isinstance(done, str):
            typer.echo(f"wasync: {done}", err=True)
            failed = True
            continue
        verb = "updated" if done.changed else "ok"
        typer.echo(f"{done.session}: {verb}" + (f" - {done.note}" if done.note else ""))
    if failed:
        raise typer.Exit(1)


def sessions_show(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Each configured session as the database knows it: its state, messages, and what was
    kept aside (quarantined events, unparsed webhook bodies) with the newest reason."""
    if ctx.invoked_subcommand is not None:
        return
    from wasync.session_status import read_sessions, render

    settings = load_settings(config)
    for line in render(run_async(read_sessions(settings))):
        typer.echo(line)
