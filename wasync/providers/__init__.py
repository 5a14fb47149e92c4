"""The providers wasync speaks, one `ProviderKind` each, and the one registry of them.

Only this package knows a provider: everything else looks a kind up (`kind(name)` for a
configured session, `detect_kind(body)` for a webhook body) and calls its fields. Nothing
here imports the store, the pipeline or the registry of configured sessions: a session is
reached through plain values (`Endpoint`); `wasync.registry.provider_for` is the glue.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import httpx

from wasync.events import Message
from wasync.providers import evolution, waha
from wasync.providers.base import Endpoint, Provider, ProviderKind, WebhookState
from wasync.providers.http import DEFAULT_TIMEOUT_S, Http, RetryPolicy

KINDS: Mapping[str, ProviderKind] = MappingProxyType(
    {k.name: k for k in (waha.KIND, evolution.KIND)}
)


def kind(name: str) -> ProviderKind:
    """The kind named `name` (a configured session's `provider`); KeyError for no such one."""
    return KINDS[name]


def detect_kind(body: Any) -> ProviderKind | None:
    """The one kind whose envelope `body` is; None for anything else, including a body that
    looks like several (both `payload` and `data`) or like none."""
    found = [k for k in KINDS.values() if k.detect(body)]
    return found[0] if len(found) == 1 else None


def typed_on_phone(message: Message) -> bool:
    """True when a kind says `message` was typed on the phone app (never one of our sends)."""
    return any(k.typed_on_phone(message) for k in KINDS.values())


def make_http(
    kind: ProviderKind,
    endpoint: Endpoint,
    client: httpx.AsyncClient,
    *,
    retry: RetryPolicy = RetryPolicy(),
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Http:
    """The HTTP of one session: base URL, the kind's API key header, retries, timeout; the
    session's adapter is then `kind.adapter(http, endpoint)`."""
    key = endpoint.api_key
    headers = {kind.auth_header: key} if key else {}
    return Http(client, endpoint.base_url, headers=headers, retry=retry, timeout_s=timeout_s)


__all__ = [
    "KINDS",
    "Endpoint",
    "Provider",
    "ProviderKind",
    "WebhookState",
    "detect_kind",
    "kind",
    "make_http",
    "typed_on_phone",
]
