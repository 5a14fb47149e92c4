"""`wasync media retry`: FAILED media back in the queue, for the running daemon to fetch."""

from __future__ import annotations

from typing import Annotated

import typer

from wasync.cli.base import ConfigOpt, SessionOpt, TenantOpt, fail, load_settings, run_async
from wasync.config import Settings


def media_retry(
    config: ConfigOpt = None,
    tenant: TenantOpt = None,
    session: SessionOpt = None,
    since: Annotated[
        str | None, typer.Option(help="Only media of messages sent since: ISO date or date-time.")
    ] = None,
) -> None:
    """Queue FAILED media again (PENDING, attempts from zero); `wasync run` fetches them."""
    from wasync.backfill.options import BackfillUsageError, check_selection, parse_when

    settings = load_settings(config)
    try:
        check_selection(settings, tenant, session)
        start = parse_when(since) if since else None
    except BackfillUsageError as exc:
        raise fail(str(exc), 2) from None
    count = run_async(_retry(settings, tenant, session, start))
    typer.echo(f"queued={count}")


async def _retry(
    settings: Settings, tenant: str | None, session: str | None, since: float | None
) -> int:
    from wasync.media.requeue import retry_failed
    from wasync.registry import sync
    from wasync.store import Store

    async with Store.from_config(settings.database) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        refs = [
            r
            for r in registry
            if (tenant is None or r.tenant_id == tenant) and (session is None or r.name == session)
        ]
        chosen = refs if session is not None else None
        return await retry_failed(settings, store, sessions=chosen, tenant_id=tenant, since=since)
