"""WAHA sends (pure): the request of each kind of message, and the message id in the answer.

Facts and section numbers cited below come from `waha.md` section 6; issue numbers are
`devlikeapro/waha#n`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from wasync.providers.parsing import compact, dig, maybe_timestamp
from wasync.providers.sending import Outgoing, SendReceipt
from wasync.providers.waha.ids import message_key

_SEND_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "text": "/api/sendText",
        "image": "/api/sendImage",
        "video": "/api/sendVideo",
        "voice": "/api/sendVoice",
        "audio": "/api/sendFile",  # WAHA has no plain-audio send: it goes as a file
        "document": "/api/sendFile",
    }
)


def cus_jid(jid: str) -> str:
    """WAHA addresses people as `<digits>@c.us`; groups and LIDs keep their server."""
    user, _, server = jid.partition("@")
    return f"{user}@c.us" if server in ("s.whatsapp.net", "") else jid


def send_request(out: Outgoing, session: str) -> tuple[str, dict[str, Any]]:
    """Path and JSON body of a send (waha.md 6): `file` is a RemoteFile (`url`) or a
    BinaryFile (`data`); voice is converted to opus by WAHA (`convert: true`)."""
    body: dict[str, Any] = {"session": session, "chatId": cus_jid(out.to_jid)}
    if out.kind == "text":
        body["text"] = out.text or ""
        return _SEND_PATHS["text"], body
    file: dict[str, Any] = {"mimetype": out.mimetype or "application/octet-stream"}
    file.update(compact(url=out.url, data=out.data, filename=out.filename))
    body["file"] = file
    if out.kind == "voice":
        body["convert"] = True
    elif out.kind == "video":
        body["convert"] = (out.mimetype or "") != "video/mp4"
    if out.text and out.kind != "voice":
        body["caption"] = out.text
    return _SEND_PATHS[out.kind], body


def receipt_of(answer: Any) -> SendReceipt | None:
    """The message id of a send answer, whatever the engine (waha.md 6, #760): NOWEB `key.id`,
    GOWS `id` string, WEBJS `id` object."""
    if not isinstance(answer, Mapping):
        return None
    key = message_key(answer.get("id")) or message_key(dig(answer, "key", "id"))
    if key is None:
        return None
    stamp = maybe_timestamp(answer.get("timestamp"), answer.get("messageTimestamp"))
    return SendReceipt(provider_message_id=key.bare, timestamp=stamp.timestamp() if stamp else None)
