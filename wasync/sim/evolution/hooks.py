"""Evolution webhooks: the event names (dotted and subscribable), and delivery as
`webhook.controller.ts emit()` does it (envelope, JWT header, backoff, no retry on 4xx)."""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import jwt
from jwt.warnings import InsecureKeyLengthWarning

from wasync.sim.base import Delivery, Json, compact_json, post_with_retries
from wasync.sim.evolution.instance import EvoInstance, iso
from wasync.sim.evolution.state import EvolutionState

EVENTS = (
    "application.startup", "qrcode.updated", "messages.set", "messages.upsert",
    "messages.edited", "messages.update", "messages.delete", "send.message",
    "send.message.update", "contacts.set", "contacts.upsert", "contacts.update",
    "presence.update", "chats.set", "chats.upsert", "chats.update", "chats.delete",
    "groups.upsert", "groups.update", "group-participants.update", "connection.update",
    "labels.edit", "labels.association", "call", "typebot.start", "typebot.change-status",
    "remove.instance", "logout.instance", "instance.create", "instance.delete",
    "status.instance",
)  # fmt: skip
# evolution.md §3.1: the subscribable enum says GROUP_UPDATE, so `groups.update` never goes out.
SUBSCRIBABLE = tuple(
    "GROUP_UPDATE" if e == "groups.update" else e.replace(".", "_").replace("-", "_").upper()
    for e in EVENTS
)
_DOTTED = {e.replace(".", "_").replace("-", "_").upper(): e for e in EVENTS}
_NON_RETRYABLE = frozenset({400, 401, 403, 404, 422})


def event_names(event: str) -> tuple[str, str]:
    """(dotted lower-case name, upper-case subscription name) of an event."""
    if event.isupper():
        return _DOTTED.get(event, event.lower().replace("_", ".")), event
    return event, event.replace(".", "_").replace("-", "_").upper()


async def post_event(
    state: EvolutionState,
    inst: EvoInstance,
    event: str,
    data: Any,
    *,
    client: httpx.AsyncClient,
    delay_s: float | None,
) -> Delivery | None:
    """`event` POSTed to the instance webhook, if enabled and subscribed, with retries."""
    dotted, upper = event_names(event)
    hook = inst.webhook
    if not hook or not hook["enabled"] or upper not in hook["events"]:
        return None
    url = str(hook["url"])
    if not url.startswith(("http://", "https://")):
        return None
    if hook["webhookByEvents"]:
        url = f"{url}/{upper.replace('_', '-').lower()}"
    body = compact_json(_webhook_envelope(state, inst, dotted, data, url))
    headers = _webhook_headers(state, dict(hook.get("headers") or {}))
    base: float = state.webhook_delay_s if delay_s is None else delay_s

    def wait(n: int) -> float:
        if base <= 0:
            return 0.0
        delay = min(base * 2.0 ** (n - 1), 300.0) * (1 + state.rng.uniform(-0.2, 0.2))
        return max(delay, base)

    return await post_with_retries(
        client,
        url,
        body,
        headers,
        max_attempts=state.webhook_max_attempts,
        delay_s=wait,
        retryable=lambda status: status not in _NON_RETRYABLE,
        log=state.deliveries,
    )


def _webhook_envelope(
    state: EvolutionState, inst: EvoInstance, event: str, data: Any, url: str
) -> Json:
    """evolution.md §4.1; `date_time` is local wall time with a `Z` suffix (not UTC)."""
    envelope: Json = {
        "event": event,
        "instance": inst.name,
        "data": data,
        "destination": url,
        "date_time": iso(state.clock() + state.tz_offset_s),
    }
    if inst.opened:
        envelope["sender"] = inst.owner_jid
    envelope["server_url"] = state.server_url
    envelope["apikey"] = inst.token if state.expose_token else None
    return envelope


def _webhook_headers(state: EvolutionState, configured: dict[str, Any]) -> dict[str, str]:
    """Static headers as configured; a `jwt_key` becomes `Authorization: Bearer <HS256>`."""
    headers = {"Content-Type": "application/json"}
    secret = configured.pop("jwt_key", None)
    headers.update({str(k): str(v) for k, v in configured.items()})
    if secret:
        iat = int(state.clock())
        claims = {"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}
        with warnings.catch_warnings():  # Evolution signs with any secret, however short
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            token = jwt.encode(claims, str(secret), algorithm="HS256")
        headers["Authorization"] = f"Bearer {token}"
    return headers
