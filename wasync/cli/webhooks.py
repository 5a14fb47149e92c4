"""`wasync webhooks register|status`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from wasync.cli.base import (
    ConfigOpt,
    SessionOpt,
    TenantOpt,
    check_selection,
    fail,
    load_settings,
    run_async,
)


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
    check_selection(settings, tenant, session)
    url = public_url or settings.webhook.public_url
    if not url:
        raise fail("pass --public-url or set [webhook] public_url", 2)
    _print_webhooks(run_async(run_all(settings, public_url=url, tenant=tenant, session=session)))


def webhooks_status(
    config: ConfigOpt = None, tenant: TenantOpt = None, session: SessionOpt = None
) -> None:
    """Show what each provider has registered."""
    from wasync.webhooks import run_all

    settings = load_settings(config)
    check_selection(settings, tenant, session)
    _print_webhooks(run_async(run_all(settings, public_url=None, tenant=tenant, session=session)))


def _print_webhooks(states: list[Any]) -> None:
    failed = False
    for state in states:
        if isinstance(state, str):
            typer.echo(f"wasync: {state}", err=True)
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
