"""Evolution's send endpoints (`sendText`, `sendMedia`, `sendWhatsAppAudio`): validate, check
the number, store the row as PENDING, answer its `prepareMessage()` shape."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wasync.sim.base import Json, read_json, version_tuple
from wasync.sim.content import Content, media, raw_message_id, text
from wasync.sim.evolution.guard import Handlers, bad, bad_json, connected
from wasync.sim.evolution.instance import EvoInstance
from wasync.sim.evolution.params import is_base64, is_url, js_int, media_content
from wasync.sim.evolution.render import prepared


class SendRoutes(Handlers):
    """`/message/send*/{instance}`: what a send stores and answers, and what `sends` records."""

    async def send_text(self, request: Request, inst: EvoInstance) -> Response:
        """`sendText`: a non-blank `text` is required."""

        def content(body: Json) -> Content:
            message = body.get("text")
            if not isinstance(message, str) or not message.strip():
                raise bad("Text is required")
            return text(message)

        return await self._send(request, inst, "sendText", content)

    async def send_media(self, request: Request, inst: EvoInstance) -> Response:
        """`sendMedia`: image, video, document or audio by URL or base64; from 2.3.3 on the
        file name decides the mimetype."""
        by_name = version_tuple(self.state.version.split("-")[0]) >= (2, 3, 3)
        return await self._send(
            request, inst, "sendMedia", partial(media_content, typed_by_name=by_name)
        )

    async def send_audio(self, request: Request, inst: EvoInstance) -> Response:
        """`sendWhatsAppAudio`: a voice note by URL or base64."""

        def content(body: Json) -> Content:
            audio = body.get("audio")
            if not isinstance(audio, str) or not (is_url(audio) or is_base64(audio)):
                raise bad("Owned media must be a url or base64")
            return media("voice")

        return await self._send(request, inst, "sendWhatsAppAudio", content)

    async def _send(
        self,
        request: Request,
        inst: EvoInstance,
        route: str,
        build: Callable[[Json], Content],
    ) -> Response:
        """The common send pipeline (evolution.md §6): validate, check the number, store the
        row as `PENDING`, answer 201 with its `prepareMessage()` shape."""
        body = await read_json(request, bad_json)
        with self.state.record_send(route, inst.name, body) as record:
            row = await self._send_row(inst, body, build)
        record.status, record.message_id = 201, row["key"]["id"]
        if self.state.throw_after_send:
            record.status = 400
            raise bad(self.state.throw_after_send.popleft())
        return JSONResponse(prepared(row, lid_rewrite=False), status_code=201)

    async def _send_row(
        self, inst: EvoInstance, body: Any, build: Callable[[Json], Content]
    ) -> Json:
        if not isinstance(body, dict) or not isinstance(body.get("number"), str):
            raise bad('instance requires property "number"')
        content = build(body)
        connected(inst)
        number = body["number"]
        exists, jid = self.state.lookup(inst, number)
        if not exists:
            raise bad({"jid": jid, "exists": False, "number": number})
        delay = js_int(body.get("delay"))
        if delay:
            await asyncio.sleep(delay / 1000)
        raw = raw_message_id(self.state.rng, "web")
        ts = int(self.state.clock())
        return self.state.store(
            inst,
            jid,
            content,
            raw_id=raw,
            ts=ts,
            from_me=True,
            sender=None,
            push_name="Você",
            status="PENDING",
            context=self._send_context(inst, body, ts),
        )

    def _send_context(self, inst: EvoInstance, body: Json, ts: int) -> Json:
        context: Json = {
            "mentionedJid": [],
            "groupMentions": [],
            "ephemeralSettingTimestamp": {"low": ts, "high": 0, "unsigned": False},
            "disappearingMode": {"initiator": 0},
        }
        quoted = body.get("quoted")
        if isinstance(quoted, dict) and isinstance(quoted.get("key"), dict):
            target = inst.by_key.get(str(quoted["key"].get("id")))
            context["stanzaId"] = quoted["key"].get("id")
            context["quotedMessage"] = quoted.get("message") or (target or {}).get("message")
        return context
