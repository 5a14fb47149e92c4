"""WAHA webhooks: the event names, a session's `config.webhooks[]` (built and validated), and
delivery as `WebhookSender` does it (signed envelope, retry policy)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import httpx

from wasync.sim.base import Delivery, Json, compact_json, post_with_retries, version_tuple
from wasync.sim.content import ulid
from wasync.sim.waha.session import WahaSession
from wasync.sim.waha.state import WahaState

EVENTS = (
    "session.status", "message", "message.reaction", "message.any", "message.ack",
    "message.ack.group", "message.waiting", "message.revoked", "message.edited",
    "state.change", "group.join", "group.leave", "group.v2.join", "group.v2.leave",
    "group.v2.update", "group.v2.participants", "presence.update", "poll.vote",
    "poll.vote.failed", "chat.archive", "call.received", "call.accepted", "call.rejected",
    "label.upsert", "label.deleted", "label.chat.added", "label.chat.deleted",
    "event.response", "event.response.failed", "engine.event",
)  # fmt: skip


# The events a WAHA version knows only from a release on (waha.md 4).
_SINCE = {"message.ack.group": (2025, 12, 2), "message.edited": (2025, 6, 3)}


def sign_body(key: str, body: bytes) -> str:
    """`X-Webhook-Hmac`: hex HMAC-SHA512 of the raw body bytes (waha.md §5)."""
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


def webhook_config(
    url: str,
    *,
    events: Sequence[str] = ("message", "session.status"),
    hmac_key: str | None = None,
    retries: Json | None = None,
    custom_headers: Sequence[tuple[str, str]] = (),
) -> Json:
    """A session `config.webhooks[]` entry (`WebhookConfig`, waha.md §2)."""
    return {
        "url": url,
        "events": list(events),
        "hmac": {"key": hmac_key} if hmac_key else None,
        "retries": retries,
        "customHeaders": [{"name": n, "value": v} for n, v in custom_headers] or None,
    }


def subscribed(events: Sequence[str], event: str) -> bool:
    """Whether a webhook listening to `events` gets `event` (`*`: all but the engine's own)."""
    if event in events:
        return True
    return "*" in events and event not in ("state.change", "engine.event")


def webhook_problems(webhooks: Any, version: str) -> list[str]:
    """NestJS' messages for a bad `config.webhooks` value on server `version` (none: valid)."""
    if not isinstance(webhooks, list):
        return ["config.webhooks must be an array"]
    problems = []
    at = version_tuple(version)
    allowed = [e for e in EVENTS if at >= _SINCE.get(e, (0,))] + ["*"]
    for i, hook in enumerate(webhooks):
        url = hook.get("url") if isinstance(hook, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.append(f"config.webhooks.{i}.url must be a URL address")
        events = hook.get("events") if isinstance(hook, dict) else None
        if not isinstance(events, list) or not events:
            problems.append(f"config.webhooks.{i}.events should not be empty")
        elif any(e not in allowed for e in events):  # class-validator's @IsIn, each: true
            values = ", ".join(allowed)
            problems.append(
                f"config.webhooks.{i}.each value in events must be one of the following "
                f"values: {values}"
            )
    return problems


async def post_event(
    state: WahaState,
    sess: WahaSession,
    event: str,
    payload: Any,
    *,
    client: httpx.AsyncClient,
    delay_s: float | None,
) -> list[Delivery]:
    """The envelope of `event` POSTed to each of the session's webhooks subscribed to it."""
    ms = int(state.clock() * 1000)
    envelope: Json = {
        "id": "evt_" + ulid(state.rng, ms).lower(),
        "timestamp": ms,
        "event": event,
        "session": sess.name,
    }
    if "metadata" in sess.config:
        envelope["metadata"] = sess.config["metadata"]
    envelope.update(
        me=sess.me(),
        payload=payload,
        environment=state.environment(sess.engine),
        engine=sess.engine,
    )
    body = compact_json(envelope)
    results = []
    for hook in sess.config.get("webhooks") or []:
        if subscribed(hook.get("events") or [], event):
            results.append(await _post_hook(state, client, hook, body, ms, delay_s))
    return results


async def _post_hook(
    state: WahaState,
    client: httpx.AsyncClient,
    hook: Json,
    body: bytes,
    ms: int,
    delay_s: float | None,
) -> Delivery:
    headers = {
        "content-type": "application/json",
        "user-agent": f"WAHA/{state.version}",
        "X-Webhook-Request-Id": ulid(state.rng, ms),
        "X-Webhook-Timestamp": str(ms),
    }
    key = (hook.get("hmac") or {}).get("key")
    if key:
        headers["X-Webhook-Hmac"] = sign_body(str(key), body)
        headers["X-Webhook-Hmac-Algorithm"] = "sha512"
    for custom in hook.get("customHeaders") or []:
        headers[str(custom["name"])] = str(custom["value"])
    retries = hook.get("retries") or {}
    attempts = retries.get("attempts")
    base: float = delay_s if delay_s is not None else float(retries.get("delaySeconds") or 2)
    policy = retries.get("policy") or "constant"

    def wait(n: int) -> float:
        if policy == "linear":
            return base * n
        if policy == "exponential":
            return base * 2.0 ** (n - 1) * (1 + state.rng.uniform(0, 0.2))
        return base

    return await post_with_retries(
        client,
        str(hook["url"]),
        body,
        headers,
        max_attempts=1 + (15 if attempts is None else int(attempts)),
        delay_s=wait,
        retryable=lambda _status: True,
        log=state.deliveries,
    )
