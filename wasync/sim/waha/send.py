"""WAHA's send endpoints: text, image, file, voice and video sends stored as fromMe messages
with each engine's 201 body, and `sendSeen`."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wasync.sim.base import Json, SentRequest, SimError, read_json, version_tuple
from wasync.sim.content import Content, media, raw_message_id, text
from wasync.sim.directory import digits_of
from wasync.sim.waha.guard import DOCS_URL, Handlers, bad_request, nest
from wasync.sim.waha.render import send_response
from wasync.sim.waha.session import WahaSession, cus

_SEND_KINDS = {
    "sendImage": "image",
    "sendFile": "document",
    "sendVoice": "voice",
    "sendVideo": "video",
}


class SendRoutes(Handlers):
    """`/api/send*`: what a send stores and answers, and what `sends` records."""

    async def send_text(self, request: Request) -> Response:
        """`POST /api/sendText`."""
        body = await self._send_body(request, "text")
        with self._record("sendText", body) as record:
            session = self.working(str(body.get("session") or "default"))
            reply_to = body.get("reply_to")
            result = self._send(session, body, text(str(body["text"])), reply_to)
        return self._sent(record, result)

    def send_media(self, endpoint: str) -> Callable[[Request], Awaitable[Response]]:
        """The handler of one media endpoint (`sendImage`, `sendFile`, `sendVoice`, `sendVideo`)."""
        kind = _SEND_KINDS[endpoint]

        async def handler(request: Request) -> Response:
            body = await self._send_body(request, "file", convert=kind in ("voice", "video"))
            with self._record(endpoint, body) as record:
                session = self.working(str(body.get("session") or "default"))
                self._plus_only(session, endpoint)
                file = body["file"]
                content = media(
                    kind,
                    caption=body.get("caption"),
                    filename=file.get("filename"),
                    mimetype=file.get("mimetype"),
                )
                result = self._send(session, body, content, body.get("reply_to"))
            return self._sent(record, result)

        return handler

    async def send_seen(self, request: Request) -> Response:
        """`POST /api/sendSeen`: recorded in `seen`; the chat's unread count is cleared."""
        body = await self._send_body(request, None)
        session = self.working(str(body.get("session") or "default"))
        self.state.seen.append(body)
        chat = session.chats.get(self._send_chat_id(str(body["chatId"])))
        if chat is not None:
            chat.unread = 0
        return JSONResponse({}, status_code=201)

    async def _send_body(
        self, request: Request, field_name: str | None, *, convert: bool = False
    ) -> Json:
        body = await read_json(request, bad_request)
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        problems = []
        if not isinstance(body.get("chatId"), str) or not body["chatId"]:
            problems.append("chatId should not be empty")
        if field_name == "text" and not isinstance(body.get("text"), str):
            problems.append("text must be a string")
        if field_name == "file":
            file = body.get("file")
            if not isinstance(file, dict) or not (file.get("url") or file.get("data")):
                problems.append("file must contain either url or data")
        if convert and not isinstance(body.get("convert"), bool):
            problems.append("convert must be a boolean value")
        if problems:
            raise bad_request(*problems)
        return body

    def _record(self, route: str, body: Json) -> contextlib.AbstractContextManager[SentRequest]:
        return self.state.record_send(route, str(body.get("session") or "default"), body)

    def _sent(self, record: SentRequest, result: tuple[str, Json]) -> Response:
        record.status, record.message_id = 201, result[0]
        return JSONResponse(result[1], status_code=201)

    def _plus_only(self, session: WahaSession, endpoint: str) -> None:
        """waha.md version notes: media sends were Plus-only in Core before 2026.6.1 (422)."""
        if self.state.tier == "CORE" and version_tuple(self.state.version) < (2026, 6, 1):
            message = (
                f"The feature is available only in Plus version for '{session.engine}' engine. "
                f"Check this out: {DOCS_URL}"
            )
            raise SimError(422, nest(422, message, "Unprocessable Entity"))

    def _send_chat_id(self, chat_id: str) -> str:
        return f"{digits_of(chat_id)}@c.us" if "@" not in chat_id else cus(chat_id)

    def _send(
        self, session: WahaSession, body: Json, content: Content, reply_to: Any
    ) -> tuple[str, Json]:
        """Store an API send as a fromMe message; the engine-specific 201 body (waha.md §6)."""
        chat_id = self._send_chat_id(str(body["chatId"]))
        raw = raw_message_id(self.state.rng, "web")
        ts = int(self.state.clock())
        msg = self.state.store(
            session,
            chat_id,
            content,
            raw_id=raw,
            ts=ts,
            from_me=True,
            sender=None,
            push_name=None,
            ack=1,
            source="api",
        )
        if reply_to:
            target = session.index.get(str(reply_to))
            msg["replyTo"] = {"id": str(reply_to), "body": target["body"] if target else None}
        return str(msg["id"]), send_response(
            session, msg, content, chat_id, raw, ts, self.state.rng
        )
