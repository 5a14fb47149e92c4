"""WAHA's chat reads: the chats overview, a chat's messages page (with WEBJS's short pages),
one message, and the media files."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from wasync.sim.base import Json, SimError, read_json, version_tuple
from wasync.sim.files import file_chunks
from wasync.sim.waha.guard import DOCS_URL, Handlers, bad_request, nest
from wasync.sim.waha.params import MessageQuery, bool_param, chat_param, int_param
from wasync.sim.waha.render import raw_chat
from wasync.sim.waha.session import WahaChat, WahaSession, cus, msg_ts

SORTS_SINCE = (2025, 10, 5)  # `sortBy`/`sortOrder` on the messages list (WAHA 4aef38ff)

_NOTICE = "_wasync_sim_notice"


def _ts_or_none(msg: Json | None) -> int:
    return msg_ts(msg) if msg is not None else -1


class ChatRoutes(Handlers):
    """`/api/{session}/chats/...` and `/api/files/...`."""

    async def overview_get(self, request: Request) -> Response:
        """`GET …/chats/overview?limit&offset&ids`: newest last message first."""
        session = self.working(request.path_params["session"])
        limit = int_param(request, "limit", 20)
        offset = int_param(request, "offset", 0)
        ids = request.query_params.getlist("ids")
        return JSONResponse(self._overview(session, limit, offset, ids))

    async def overview_post(self, request: Request) -> Response:
        """`POST …/chats/overview`: `pagination` is required since 2026.5.1."""
        body = await read_json(request, bad_request)
        pagination = body.get("pagination") if isinstance(body, dict) else None
        if not isinstance(pagination, dict):
            raise bad_request("pagination should not be null or undefined")
        session = self.working(request.path_params["session"])
        ids = ((body.get("filter") or {}).get("ids")) or []
        limit, offset = int(pagination.get("limit", 20)), int(pagination.get("offset", 0))
        return JSONResponse(self._overview(session, limit, offset, ids))

    def _overview(
        self, session: WahaSession, limit: int, offset: int, ids: Sequence[str]
    ) -> list[Json]:
        self.store_required(session)
        wanted = {cus(i) for i in ids}
        chats = [c for c in session.chats.values() if not wanted or c.id in wanted]
        heads = {c.id: self._head(c) for c in chats}
        chats.sort(key=lambda c: _ts_or_none(heads[c.id]), reverse=True)
        return [self._summary(session, c, heads[c.id]) for c in chats[offset : offset + limit]]

    def _head(self, chat: WahaChat) -> Json | None:
        """The chat's last message; among several of its newest second, the newest stored, or
        with `head_ties="first"` the first (an overview that does not break ties)."""
        if not chat.messages:
            return None
        newest = max(msg_ts(m) for m in chat.messages)
        tied = [m for m in chat.messages if msg_ts(m) == newest]
        return tied[0] if self.state.head_ties == "first" else tied[-1]

    def _summary(self, session: WahaSession, chat: WahaChat, head: Json | None) -> Json:
        last = self.state.with_media(session, head, False, None) if head else None
        if chat.id in self.state.heads_unloaded:
            last = None
        return {
            "id": chat.id,
            "name": chat.name,
            "picture": chat.picture,
            "lastMessage": last,
            "_chat": raw_chat(session.engine, chat),
        }

    async def messages(self, request: Request) -> Response:
        """waha.md §3 `GET /api/{session}/chats/{chatId}/messages`."""
        sorts = version_tuple(self.state.version) >= SORTS_SINCE
        query = MessageQuery.parse(request, sorts=sorts)
        session = self.working(request.path_params["session"])
        chat_id = chat_param(request.path_params["chat_id"])
        if chat_id == "all" and session.engine == "WEBJS":
            message = (
                "Can not get messages from 'all' in WEBJS The method is not implemented by "
                f"'WEBJS' engine. Check the docs and try another engine: {DOCS_URL}"
            )
            raise SimError(501, nest(501, message, "Not Implemented"))
        self.store_required(session)
        if chat_id == "all":
            found = list(session.order)
            stamps = [t for notices in session.notices.values() for t in notices]
        else:
            chat = session.chats.get(chat_id)
            found = list(chat.messages) if chat else []
            stamps = list(session.notices.get(chat_id, ()))
        found += [{"timestamp": t, _NOTICE: True} for t in stamps]
        # A notice only has a time: the window applies to it, the fromMe/ack filters do not.
        found = [
            m
            for m in sorted(found, key=msg_ts)
            if (query.in_window(m) if m.get(_NOTICE) else query.accepts(m))
        ]
        if query.descending or session.engine == "WEBJS":  # WEBJS: always newest first
            found.reverse()
        # Each engine takes `limit` rows, then skips the rows it does not list (WEBJS
        # notifications; GOWS reactions, votes, protocol messages; NOWEB call logs): a page
        # comes back short before the end (waha.md 3, "increase offset always by limit, even
        # if you get less messages").
        page = [m for m in found[query.offset : query.offset + query.limit] if not m.get(_NOTICE)]
        base = str(request.base_url).rstrip("/")
        return JSONResponse([self.state.with_media(session, m, query.download, base) for m in page])

    async def message_get(self, request: Request) -> Response:
        """One message by its WAHA id or bare WhatsApp id, with its media link by default."""
        session = self.working(request.path_params["session"])
        wanted = request.path_params["message_id"]
        download = bool_param(request, "downloadMedia")
        for msg in session.order:
            if msg["id"] == wanted or msg["id"].split("_")[2:3] == [wanted]:
                base = str(request.base_url).rstrip("/")
                return JSONResponse(
                    self.state.with_media(session, msg, download is not False, base)
                )
        raise SimError(404, nest(404, "Message not found", "Not Found"))

    async def file(self, request: Request) -> Response:
        """waha.md §7: `GET /api/files/{session}/{messageId}.{ext}`."""
        session = self.known(request.path_params["session"])
        message_id = request.path_params["filename"].rsplit(".", 1)[0]
        content = session.media.get(message_id)
        if content is None or not self.state.file_alive(session, message_id):
            raise SimError(404, nest(404, "File not found", "Not Found"))
        return StreamingResponse(
            file_chunks(content, message_id),
            media_type=content.mimetype or "application/octet-stream",
            headers={"content-length": str(content.size)},
        )
