"""Tell a WAHA webhook body from an Evolution one, and name the session it belongs to.

WAHA envelopes are `{event, session, payload, ...}` (waha.md 4); Evolution envelopes are
`{event, instance, data, ...}` (evolution.md 4.1). Captures are sometimes trimmed (no `session`,
no `instance`, or no `event`), so the payload key decides and the name key confirms. Each
kind's `detect` and `session_name` hold the rule; these two ask the registry of kinds.
"""

from __future__ import annotations

from typing import Any

from wasync.providers import detect_kind


def detect_provider(body: Any) -> str | None:
    """The name of the kind `body` is a webhook of (`waha`, `evolution`); None for anything
    else, including bodies that carry both payload keys or neither."""
    found = detect_kind(body)
    return found.name if found is not None else None


def session_name(body: Any) -> str | None:
    """The provider session a body belongs to: WAHA `session`, Evolution `instance` (falling
    back to the name inside `payload`/`data` when the envelope lacks it)."""
    found = detect_kind(body)
    return found.session_name(body) if found is not None else None
