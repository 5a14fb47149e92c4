"""Provider adapters, picked by name: `waha` and `evolution`."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from wasync.config import PollConfig
from wasync.events import Event
from wasync.providers import evolution, waha
from wasync.providers.base import Provider
from wasync.providers.evolution import EvolutionProvider
from wasync.providers.http import Http, RetryPolicy
from wasync.providers.waha import WahaProvider
from wasync.registry import SessionRef

PROVIDERS: dict[str, type[WahaProvider] | type[EvolutionProvider]] = {
    "waha": WahaProvider,
    "evolution": EvolutionProvider,
}
AUTH_HEADER = {"waha": "X-Api-Key", "evolution": "apikey"}
# Pure parsers by provider: a webhook body into events, one provider message into an event.
WEBHOOK_PARSERS: dict[str, Callable[..., list[Event]]] = {
    "waha": waha.parse_webhook,
    "evolution": evolution.parse_webhook,
}
MESSAGE_PARSERS: dict[str, Callable[..., Event]] = {
    "waha": waha.parse_message,
    "evolution": evolution.parse_message,
}


def make_http(ref: SessionRef, client: httpx.AsyncClient, poll: PollConfig) -> Http:
    """The HTTP of one configured session: base URL, API key header, retries, timeout."""
    key = ref.config.resolved_api_key()
    headers = {AUTH_HEADER[ref.provider]: key} if key else {}
    retry = RetryPolicy(
        attempts=poll.max_attempts, backoff_s=poll.backoff_s, max_wait_s=poll.max_retry_wait_s
    )
    return Http(client, ref.config.base_url, headers=headers, retry=retry, timeout_s=poll.timeout_s)


def make_provider(ref: SessionRef, client: httpx.AsyncClient, poll: PollConfig) -> Provider:
    """The adapter for a configured session."""
    cls = PROVIDERS[ref.provider]
    return cls(
        make_http(ref, client, poll), session=ref.name, session_id=ref.id, engine=ref.config.engine
    )


__all__ = [
    "MESSAGE_PARSERS",
    "PROVIDERS",
    "WEBHOOK_PARSERS",
    "Provider",
    "make_http",
    "make_provider",
]
