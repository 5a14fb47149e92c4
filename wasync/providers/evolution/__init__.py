"""Evolution API (v2.x, Baileys channel), split by concern: `parse` (pure message parsing),
`webhook` (detection, JWT / token check, `parse_webhook`), `adapter` (one instance's I/O),
`send` (send bodies and receipts), `admin` (webhook registration). `KIND` describes Evolution
to the rest of wasync (`wasync.providers.KINDS`).

Facts and section numbers cited in these modules come from `evolution.md` (the shared provider
notes); issue numbers are `EvolutionAPI/evolution-api#n`.
"""

from wasync.providers.base import ProviderKind
from wasync.providers.evolution.adapter import EvolutionProvider, make_adapter
from wasync.providers.evolution.admin import EVOLUTION_EVENTS, EvolutionAdmin
from wasync.providers.evolution.parse import ack_from, parse_message, stored_changes, typed_on_phone
from wasync.providers.evolution.webhook import (
    EVOLUTION_JWT_LEEWAY_S,
    detect,
    event_name,
    parse_webhook,
    session_in_raw,
    session_name,
    verify,
)

KIND = ProviderKind(
    name="evolution",
    auth_header="apikey",
    secret_headers=frozenset({"apikey", "authorization"}),
    detect=detect,
    session_name=session_name,
    session_in_raw=session_in_raw,
    verify=verify,
    parse_webhook=parse_webhook,
    parse_message=parse_message,
    adapter=make_adapter,
    admin=EvolutionAdmin(),
    typed_on_phone=typed_on_phone,
    event_suffix=True,  # `byEvents: true` appends `/<event-with-hyphens>` (evolution.md 3.1)
)

__all__ = [
    "EVOLUTION_EVENTS",
    "EVOLUTION_JWT_LEEWAY_S",
    "KIND",
    "EvolutionProvider",
    "ack_from",
    "event_name",
    "parse_message",
    "parse_webhook",
    "stored_changes",
]
