"""`wasync webhooks register|status`: point each provider session's webhook at this daemon.

What a provider needs registered (WAHA's session config, Evolution's `/webhook/set` with a
`jwt_key`) is its kind's `admin`; this module picks the sessions, builds each one's endpoint
URL and reports. Registration is idempotent: nothing is sent when the provider already has
what we want.
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from wasync.config import Settings
from wasync.errors import ConfigError, ProviderError
from wasync.providers import WebhookState
from wasync.providers.http import Http
from wasync.registry import SessionRef, http_for, selected_refs


def endpoint_url(public_url: str, ref: SessionRef) -> str:
    """Our endpoint for one session; the tenant is in the query when session names repeat."""
    query = urlencode({"tenant": ref.tenant_id})
    return f"{public_url.rstrip('/')}/api/webhooks/{ref.kind.name}?{query}"


async def register(http: Http, ref: SessionRef, url: str, secret: str | None) -> WebhookState:
    """Make the provider deliver this session's events to `url`."""
    return await ref.kind.admin.register(http, ref.name, url, secret, label=ref.label)


async def status(http: Http, ref: SessionRef) -> WebhookState:
    """What the provider has registered for this session."""
    return await ref.kind.admin.status(http, ref.name, label=ref.label)


async def run_all(
    settings: Settings,
    *,
    public_url: str | None,
    tenant: str | None = None,
    session: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[WebhookState | str]:
    """Register (with `public_url`) or read (without) every selected session's webhook.

    A session whose provider call fails gives its error line instead; the others go on.
    """
    refs = selected_refs(settings, tenant=tenant, session=session)
    out: list[WebhookState | str] = []
    async with httpx.AsyncClient(transport=transport) as client:
        for ref in refs:
            http = http_for(ref, client, settings.poll)
            try:
                if public_url:
                    secret = ref.config.resolved_webhook_secret()
                    out.append(await register(http, ref, endpoint_url(public_url, ref), secret))
                else:
                    out.append(await status(http, ref))
            except (ProviderError, ConfigError) as exc:
                out.append(f"{ref.label}: {exc}")
    return out
