"""Evolution's media download: `POST /chat/getBase64FromMediaMessage/{instance}`
(evolution.md 6), with the CDN's expiry (`media_lifetime_s`), files WhatsApp lost and
downloads that fail a few times first (`glitch_media`).

Evolution answers every error as a 400 with the error's text (whatsapp.baileys.service.ts
2.3.7 l.3977); a download that failed twice (Baileys, then its `directPath` fallback) says
`Error: Failed to fetch stream from https://mmg.whatsapp.net<directPath>`, whatever the cause.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wasync.sim.base import Json, read_json
from wasync.sim.content import Content
from wasync.sim.evolution.guard import Handlers, bad, bad_json, connected
from wasync.sim.evolution.instance import EvoInstance
from wasync.sim.files import file_bytes


def _long(value: int) -> Json:
    return {"low": value & 0xFFFFFFFF, "high": value >> 32, "unsigned": True}


class MediaRoutes(Handlers):
    """`/chat/getBase64FromMediaMessage`."""

    async def get_base64(self, request: Request, inst: EvoInstance) -> Response:
        """The decrypted file as base64; 400 when there is no such message or no media in
        it, or when the download fails (the CDN copy expired and the phone cannot upload it
        again, or a glitch)."""
        body = await read_json(request, bad_json)
        message = body.get("message") if isinstance(body, dict) else None
        key = message.get("key") if isinstance(message, dict) else None
        key_id = key.get("id") if isinstance(key, dict) else None
        if not isinstance(key_id, str):
            raise bad("message.key.id is required")
        inner = message.get("message") if isinstance(message, dict) else None
        if isinstance(inner, dict) and isinstance(inner.get("templateMessage"), dict):
            # Evolution uses a `message` it is handed, and reads a template's parts: one
            # without them throws, answered 400 (whatsapp.baileys.service.ts 2.3.7 l.3842-3977).
            template = inner["templateMessage"]
            if not (template.get("hydratedTemplate") or template.get("hydratedFourRowTemplate")):
                raise bad("TypeError: Cannot read properties of undefined (reading 'imageMessage')")
        connected(inst)
        content = inst.media.get(key_id)
        if content is None:  # thrown as strings: no `Error: ` (l.3845, l.3888)
            known = key_id in inst.by_key
            raise bad("The message is not of the media type" if known else "Message not found")
        lost = f"Error: Failed to fetch stream from {_cdn_url(inst, key_id)}"
        if not self.state.media_alive(inst, key_id):
            raise bad(lost)
        glitches = inst.glitches.get(key_id)
        if glitches:
            raise bad(glitches.pop(0) or lost)
        convert = isinstance(body, dict) and body.get("convertToMp4") is True
        return JSONResponse(self._answer(inst, key_id, content, convert))

    def _answer(self, inst: EvoInstance, key_id: str, content: Content, convert: bool) -> Json:
        row = inst.row(key_id)
        proto: dict[str, Any] = next(iter(row["message"].values()), {})
        if convert and content.kind in ("audio", "voice"):
            content = replace(content, mimetype="audio/mp4")
            raw = file_bytes(content, key_id + ":mp4")
        else:
            raw = file_bytes(content, key_id)
        return {
            "mediaType": row["messageType"],
            "fileName": content.filename or f"{key_id}.bin",
            "caption": proto.get("caption"),
            "size": {
                "fileLength": _long(content.size),
                "height": proto.get("height"),
                "width": proto.get("width"),
            },
            "mimetype": content.mimetype,
            "base64": base64.b64encode(raw).decode(),
            "buffer": None,
        }


def _cdn_url(inst: EvoInstance, key_id: str) -> str:
    """The URL Evolution's fallback download asks for: WhatsApp's CDN and the `directPath`."""
    proto: Any = next(iter(inst.row(key_id)["message"].values()), {})
    path = proto.get("directPath") if isinstance(proto, dict) else None
    return "https://mmg.whatsapp.net" + (path if isinstance(path, str) else "")
