"""WAHA (WhatsApp HTTP API), split by concern: `ids` and `content` and `parse` (pure message
parsing), `webhook` (detection, HMAC check, `parse_webhook`), `adapter` (one session's I/O),
`send` (send bodies and receipts), `admin` (webhook registration). `KIND` describes WAHA to
the rest of wasync (`wasync.providers.KINDS`).

Facts and section numbers cited in these modules come from `waha.md` (the shared provider
notes); issue numbers are `devlikeapro/waha#n`.
"""

from wasync.providers.base import ProviderKind
from wasync.providers.waha.adapter import LID_RETRY_S, WahaProvider, make_adapter
from wasync.providers.waha.admin import WAHA_EVENTS, WAHA_EVENTS_BEFORE_GROUP_ACKS, WahaAdmin
from wasync.providers.waha.ids import MessageKey, ack_from, message_key
from wasync.providers.waha.parse import parse_message, typed_on_phone
from wasync.providers.waha.webhook import (
    detect,
    parse_webhook,
    session_in_raw,
    session_name,
    verify,
)

KIND = ProviderKind(
    name="waha",
    auth_header="X-Api-Key",
    secret_headers=frozenset({"x-api-key", "x-webhook-hmac"}),
    detect=detect,
    session_name=session_name,
    session_in_raw=session_in_raw,
    verify=verify,
    parse_webhook=parse_webhook,
    parse_message=parse_message,
    adapter=make_adapter,
    admin=WahaAdmin(),
    typed_on_phone=typed_on_phone,
)

__all__ = [
    "KIND",
    "LID_RETRY_S",
    "WAHA_EVENTS",
    "WAHA_EVENTS_BEFORE_GROUP_ACKS",
    "MessageKey",
    "WahaProvider",
    "ack_from",
    "message_key",
    "parse_message",
    "parse_webhook",
]
