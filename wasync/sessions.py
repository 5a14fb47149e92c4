"""`wasync sessions configure`: turn on, in each provider session, what polling needs.

What that is belongs to each kind's `admin` (WAHA NOWEB: `config.noweb.store.enabled`, without
which WAHA answers 400 to every messages and overview call, waha.md 2); this module picks the
sessions and reports. Idempotent: nothing is sent when a session already has it.
"""

from __future__ import annotations

import httpx

from wasync.config import Settings
from wasync.errors import ConfigError, ProviderError
from wasync.providers.base import SessionSetup
from wasync.registry import http_for, selected_refs


async def configure_all(
    settings: Settings,
    *,
    tenant: str | None = None,
    session: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[SessionSetup | str]:
    """Prepare every selected session for polling; a session whose provider call fails gives
    its error line instead, and the others go on."""
    out: list[SessionSetup | str] = []
    async with httpx.AsyncClient(transport=transport) as client:
        for ref in selected_refs(settings, tenant=tenant, session=session):
            try:
                http = http_for(ref, client, settings.poll)
                out.append(await ref.kind.admin.prepare_polling(http, ref.name, label=ref.label))
            except (ProviderError, ConfigError) as exc:
                out.append(f"{ref.label}: {exc}")
    return out
