"""A stateful WAHA (WhatsApp HTTP API) simulator.

Sessions on the WEBJS, NOWEB and GOWS engines hold chats and messages stored as real `WAMessage`
dicts with each engine's `from`/`to`/`_data`; the app serves the endpoints wasync uses with the
quirks of /work/shared/providers/waha.md (sections cited as "waha.md §n"), and `deliver()` fires
signed webhooks the way WAHA's `WebhookSender` does.
"""

from wasync.sim.waha.guard import DOCS_URL, NOT_WORKING
from wasync.sim.waha.hooks import EVENTS, sign_body, webhook_config
from wasync.sim.waha.session import ACK_NAMES, ENGINES, STATUSES, WahaChat, WahaSession
from wasync.sim.waha.simulator import WahaSim

# The routes that serve files (`Faults(routes=DOWNLOAD_ROUTES)` fails a share of downloads).
DOWNLOAD_ROUTES = frozenset({"files", "chats.message"})

__all__ = [
    "ACK_NAMES",
    "DOCS_URL",
    "DOWNLOAD_ROUTES",
    "ENGINES",
    "EVENTS",
    "NOT_WORKING",
    "STATUSES",
    "WahaChat",
    "WahaSession",
    "WahaSim",
    "sign_body",
    "webhook_config",
]
