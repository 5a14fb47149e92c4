"""Evolution sends (pure): the route and body of each kind of message, and the message id in
the answer (evolution.md section 6).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wasync.providers.parsing import compact, dig, maybe_timestamp
from wasync.providers.sending import Outgoing, SendReceipt


def _number(jid: str) -> str:
    """Evolution takes digits or a full jid; `@c.us` is WAHA's spelling of a phone jid."""
    user, _, server = jid.partition("@")
    return f"{user}@s.whatsapp.net" if server == "c.us" else jid


def send_request(out: Outgoing) -> tuple[str, dict[str, Any]]:
    """Route and JSON body (evolution.md 6): media is a URL or RAW base64 (no `data:` prefix);
    a base64 document needs `fileName`; a voice note is `sendWhatsAppAudio` (PTT)."""
    number = _number(out.to_jid)
    if out.kind == "text":
        return "sendText", {"number": number, "text": out.text or ""}
    media = out.url or out.data or ""
    if out.kind == "voice":
        return "sendWhatsAppAudio", {"number": number, "audio": media}
    body: dict[str, Any] = {"number": number, "mediatype": out.kind, "media": media}
    body.update(compact(mimetype=out.mimetype, caption=out.text, fileName=out.filename))
    return "sendMedia", body


def receipt_of(answer: Any) -> SendReceipt | None:
    """`key.id` and `messageTimestamp` (a number or a string) of a send answer."""
    if not isinstance(answer, Mapping):
        return None
    key_id = dig(answer, "key", "id")
    if not isinstance(key_id, str) or not key_id:
        return None
    stamp = maybe_timestamp(answer.get("messageTimestamp"))
    return SendReceipt(provider_message_id=key_id, timestamp=stamp.timestamp() if stamp else None)
