"""Tell a WAHA webhook body from an Evolution one, and name the session it belongs to.

WAHA envelopes are `{event, session, payload, ...}` (waha.md 4); Evolution envelopes are
`{event, instance, data, ...}` (evolution.md 4.1). Captures are sometimes trimmed (no `session`,
no `instance`, or no `event`), so the payload key decides and the name key confirms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from wasync.providers.parsing import dig, first_str

Provider = Literal["waha", "evolution"]


def detect_provider(body: Any) -> Provider | None:
    """`"waha"` for `payload` + (`event` or `session`), `"evolution"` for `data` + (`event` or
    `instance`); None for anything else, including bodies that carry both or neither."""
    if not isinstance(body, Mapping):
        return None
    has_payload, has_data = "payload" in body, "data" in body
    if has_payload and not has_data and ("event" in body or "session" in body):
        return "waha"
    if has_data and not has_payload and ("event" in body or "instance" in body):
        return "evolution"
    return None


def session_name(body: Any) -> str | None:
    """The provider session a body belongs to: WAHA `session`, Evolution `instance` (falling
    back to the name inside `payload`/`data` when the envelope lacks it)."""
    provider = detect_provider(body)
    if provider == "waha":
        name = first_str(body.get("session"), dig(body, "payload", "name"))
    elif provider == "evolution":
        name = first_str(body.get("instance"), dig(body, "data", "instance"))
    else:
        return None
    return name.strip() if name else None
