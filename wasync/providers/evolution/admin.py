"""Evolution webhook registration: point an instance's webhook at this daemon, or read it back.

Evolution takes the nested `{"webhook": {...}}` body with explicit events and
`headers.jwt_key`, from which it signs an HS256 JWT per delivery (evolution.md 3.1, 3.3).
Idempotent: nothing is sent when Evolution already has what we want.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from wasync.providers.base import SessionSetup, WebhookState
from wasync.providers.evolution.version import polling_misses_deletes, server_version
from wasync.providers.http import Http

EVOLUTION_EVENTS = [
    "MESSAGES_UPSERT",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "MESSAGES_EDITED",
    "SEND_MESSAGE",
    # Edits made through Evolution's own API (`/chat/updateMessage`) come only as this.
    "SEND_MESSAGE_UPDATE",
    "CONNECTION_UPDATE",
]


class EvolutionAdmin:
    """`WebhookAdmin` for Evolution: `/webhook/find` and `/webhook/set` per instance."""

    async def register(
        self, http: Http, session: str, url: str, secret: str | None, *, label: str
    ) -> WebhookState:
        """Set the instance's webhook to `url`, our events, `jwt_key` = `secret`, unless it
        already is exactly that."""
        name = quote(session, safe="")
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
                session=label, url=url, events=EVOLUTION_EVENTS, signed=bool(secret)
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
            session=label, url=url, events=EVOLUTION_EVENTS, signed=bool(secret), changed=True
        )

    async def prepare_polling(self, http: Http, session: str, *, label: str) -> SessionSetup:
        """Nothing per instance: what Evolution stores (and so lists) is its server's
        `DATABASE_SAVE_DATA_*` environment (evolution.md 5.1), not an API setting."""
        return SessionSetup(
            session=label,
            changed=False,
            note="nothing per instance (the server needs DATABASE_SAVE_DATA_NEW_MESSAGE)",
        )

    async def polling_gaps(self, http: Http, session: str) -> str | None:
        """2.3.0-2.3.4 record a delete for everyone like an edit, 2.3.7 on like a delivery:
        polling cannot tell one (`wasync.providers.evolution.version`)."""
        version = await server_version(http)
        if not polling_misses_deletes(version):
            return None
        shown = ".".join(map(str, version or ()))
        return f"Evolution {shown} keeps no trace of a delete for everyone that polling can tell"

    async def status(self, http: Http, session: str, *, label: str) -> WebhookState:
        """The instance's webhook, when enabled; signed when its headers hold `jwt_key`."""
        found = await http.get(f"/webhook/find/{quote(session, safe='')}")
        if not isinstance(found, Mapping) or not found.get("enabled"):
            return WebhookState(session=label, url=None, events=[], signed=False)
        return WebhookState(
            session=label,
            url=str(found.get("url")),
            events=list(found.get("events") or []),
            signed="jwt_key" in (found.get("headers") or {}),
        )
