"""`wasync webhooks register|status`: point each provider session's webhook at this daemon.

WAHA has no webhook endpoint of its own: the session config is read, our webhook merged into
`config.webhooks` (others kept) and the whole config PUT back, which restarts the session
(waha.md section 2). Evolution takes the nested `{"webhook": {...}}` body with explicit events
and `headers.jwt_key`, from which it signs an HS256 JWT per delivery (evolution.md 3.1, 3.3).
Both are idempotent: nothing is sent when the provider already has what we want.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from wasync.config import Settings
from wasync.errors import ConfigError, FatalProviderError, ProviderError
from wasync.providers import make_http
from wasync.providers.http import Http
from wasync.registry import SessionRef, configured_refs

# `message.any` (not also `message`: both doubles every delivery, waha#1384).
WAHA_EVENTS = [
    "message.any",
    "message.ack",
    "message.ack.group",
    "message.revoked",
    "message.edited",
    "message.reaction",
    "session.status",
]
# WAHA before 2025.12.2 has no `message.ack.group` (group acks came as message.ack) and
# refuses a config naming it (waha.md 4).
WAHA_EVENTS_BEFORE_GROUP_ACKS = [e for e in WAHA_EVENTS if e != "message.ack.group"]
EVOLUTION_EVENTS = [
    "MESSAGES_UPSERT",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "MESSAGES_EDITED",
    "SEND_MESSAGE",
    "CONNECTION_UPDATE",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookState:
    """What one provider session has registered, for `status` and `register` output."""

    session: str
    url: str | None
    events: list[str]
    signed: bool
    changed: bool = False
    note: str = ""


def endpoint_url(public_url: str, ref: SessionRef) -> str:
    """Our endpoint for one session; the tenant is in the query when session names repeat."""
    query = urlencode({"tenant": ref.tenant_id})
    return f"{public_url.rstrip('/')}/api/webhooks/{ref.provider}?{query}"


async def register(http: Http, ref: SessionRef, url: str, secret: str | None) -> WebhookState:
    """Make the provider deliver this session's events to `url`."""
    return await REGISTER[ref.provider](http, ref, url, secret)


async def status(http: Http, ref: SessionRef) -> WebhookState:
    """What the provider has registered for this session."""
    return await STATUS[ref.provider](http, ref)


# --- WAHA -----------------------------------------------------------------------------------


def _waha_hook(url: str, secret: str | None) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "url": url,
        "events": WAHA_EVENTS,
        "retries": {"policy": "exponential", "delaySeconds": 2, "attempts": 15},
    }
    if secret:
        hook["hmac"] = {"key": secret}
    return hook


async def _waha_register(http: Http, ref: SessionRef, url: str, secret: str | None) -> WebhookState:
    path = f"/api/sessions/{quote(ref.name, safe='')}"
    info = await http.get(path) or {}
    config = dict(info.get("config") or {})
    others = [h for h in config.get("webhooks") or [] if h.get("url") != url]
    ours = _waha_hook(url, secret)
    current = [h for h in config.get("webhooks") or [] if h.get("url") == url]
    tags = _needs_webjs_tags(info, config)
    if len(current) == 1 and _same(current[0], ours) and not tags:
        return WebhookState(session=ref.label, url=url, events=WAHA_EVENTS, signed=bool(secret))
    note = "WAHA restarts the session to apply a new config"
    if tags:
        config["webjs"] = {**(config.get("webjs") or {}), "tagsEventsOn": True}
        note += "; webjs.tagsEventsOn turned on (WEBJS sends no acks without it)"
    config["webhooks"] = [*others, ours]
    try:
        await http.call("PUT", path, json={"config": config})
    except FatalProviderError as exc:
        if exc.status != 400 or "known event" not in str(exc):
            raise
        ours = {**ours, "events": WAHA_EVENTS_BEFORE_GROUP_ACKS}
        config["webhooks"] = [*others, ours]
        await http.call("PUT", path, json={"config": config})
        note += "; this WAHA predates message.ack.group: group acks come as message.ack"
    return WebhookState(
        session=ref.label,
        url=url,
        events=list(ours["events"]),
        signed=bool(secret),
        changed=True,
        note=note,
    )


def _needs_webjs_tags(info: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """A WEBJS session sends `message.ack` only with `config.webjs.tagsEventsOn` (off by
    default since WAHA 2025.8.3; waha.md section 2, waha#1311)."""
    engine = info.get("engine")
    name = engine.get("engine") if isinstance(engine, Mapping) else engine
    webjs = config.get("webjs")
    return name == "WEBJS" and not (isinstance(webjs, Mapping) and webjs.get("tagsEventsOn"))


def _same(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    keys = ("url", "hmac", "retries")
    events = (WAHA_EVENTS, WAHA_EVENTS_BEFORE_GROUP_ACKS)
    return all(have.get(k) == want.get(k) for k in keys) and have.get("events") in events


async def _waha_status(http: Http, ref: SessionRef) -> WebhookState:
    info = await http.get(f"/api/sessions/{quote(ref.name, safe='')}") or {}
    hooks = (info.get("config") or {}).get("webhooks") or []
    if not hooks:
        return WebhookState(session=ref.label, url=None, events=[], signed=False)
    first = hooks[0]
    more = f" (+{len(hooks) - 1} more)" if len(hooks) > 1 else ""
    return WebhookState(
        session=ref.label,
        url=str(first.get("url")) + more,
        events=list(first.get("events") or []),
        signed=bool((first.get("hmac") or {}).get("key")),
    )


# --- Evolution ------------------------------------------------------------------------------


async def _evolution_register(
    http: Http, ref: SessionRef, url: str, secret: str | None
) -> WebhookState:
    name = quote(ref.name, safe="")
    found = await http.get(f"/webhook/find/{name}")
    want_headers = {"jwt_key": secret} if secret else {}
    if (
        isinstance(found, Mapping)
        and found.get("enabled")
        and found.get("url") == url
        and sorted(found.get("events") or []) == sorted(EVOLUTION_EVENTS)
        and (found.get("headers") or {}) == want_headers
        # byEvents appends /<event> to the URL (our ?tenant= would break); base64 inlines
        # whole media files into the bodies (evolution.md 3.1).
        and not found.get("webhookByEvents")
        and not found.get("webhookBase64")
    ):
        return WebhookState(
            session=ref.label, url=url, events=EVOLUTION_EVENTS, signed=bool(secret)
        )
    body = {
        "webhook": {
            "enabled": True,
            "url": url,
            "headers": want_headers,
            "byEvents": False,
            "base64": False,
            "events": EVOLUTION_EVENTS,
        }
    }
    await http.post(f"/webhook/set/{name}", body)
    return WebhookState(
        session=ref.label, url=url, events=EVOLUTION_EVENTS, signed=bool(secret), changed=True
    )


async def _evolution_status(http: Http, ref: SessionRef) -> WebhookState:
    found = await http.get(f"/webhook/find/{quote(ref.name, safe='')}")
    if not isinstance(found, Mapping) or not found.get("enabled"):
        return WebhookState(session=ref.label, url=None, events=[], signed=False)
    return WebhookState(
        session=ref.label,
        url=str(found.get("url")),
        events=list(found.get("events") or []),
        signed="jwt_key" in (found.get("headers") or {}),
    )


REGISTER: dict[str, Callable[[Http, SessionRef, str, str | None], Awaitable[WebhookState]]] = {
    "waha": _waha_register,
    "evolution": _evolution_register,
}
STATUS: dict[str, Callable[[Http, SessionRef], Awaitable[WebhookState]]] = {
    "waha": _waha_status,
    "evolution": _evolution_status,
}


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
    refs = [
        ref
        for ref in configured_refs(settings)
        if (tenant is None or ref.tenant_id == tenant) and (session is None or ref.name == session)
    ]
    out: list[WebhookState | str] = []
    async with httpx.AsyncClient(transport=transport) as client:
        for ref in refs:
            http = make_http(ref, client, settings.poll)
            try:
                if public_url:
                    secret = ref.config.resolved_webhook_secret()
                    out.append(await register(http, ref, endpoint_url(public_url, ref), secret))
                else:
                    out.append(await status(http, ref))
            except (ProviderError, ConfigError) as exc:
                out.append(f"{ref.label}: {exc}")
    return out
