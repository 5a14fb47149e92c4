"""`GET /api/messages/{id}/media`: a stored file, for whoever may see its message (JWT).

The same predicate as the message itself (`wasync.scopes.visible_chats` on its chat): a
message of a chat the caller may not see, or of another tenant, is 404, and so is a message
without media. Media not stored (yet) is 409 with its status (`PENDING`, `FAILED`), or 410
when the provider lost it (`EXPIRED`). The token comes in the `Authorization` header (the
page fetches with `fetch()` and shows a blob URL); there is no `?token=` here.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wasync.api.doc import Op, documented
from wasync.api.guard import Problem, error, guarded
from wasync.errors import MediaStoreUnavailable
from wasync.events import MediaStatus
from wasync.media.store import MediaStore
from wasync.media.stream import file_name, media_response
from wasync.principal import Principal
from wasync.scopes import visible_chats
from wasync.store import Store
from wasync.store import models as m

T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]


def media_routes(store: Store, media: MediaStore, secret: str | None) -> list[BaseRoute]:
    """The media route."""
    endpoint = guarded(MediaApi(store, media).get, secret)

    async def header_only(request: Request) -> Response:
        # A token in a URL ends up in logs and browser history: this route takes the header.
        if "authorization" not in request.headers:
            return error(401, "missing or invalid token")
        return await endpoint(request)

    op = Op(summary="A message's stored file (Range, ETag)", tag="media",
            media_type="application/octet-stream", errors=(404, 409, 410, 416, 503))  # fmt: skip
    return [documented(Route("/api/messages/{message_id}/media", header_only, methods=["GET"]), op)]


class MediaApi:
    """Serves stored files."""

    def __init__(self, store: Store, media: MediaStore) -> None:
        self.store, self.media = store, media

    async def get(self, request: Request, p: Principal) -> Response:
        """The file, whole or the asked `Range` (see the module docstring)."""
        raw = request.path_params["message_id"]
        if not (raw.isdigit() and len(raw) < 19):
            raise Problem(404, "message not found")
        c = T_MESSAGES.c
        names = ("id", "type", "media_status", "media_key", "media_size", "media_mimetype")
        stmt = (
            select(*(c[n] for n in names), c.media_filename)
            .select_from(T_MESSAGES.join(T_CHATS, T_CHATS.c.id == c.chat_id))
            .where(c.id == int(raw), c.tenant_id == p.tenant_id, visible_chats(p, T_CHATS))
        )
        async with self.store.read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None or row.media_status == MediaStatus.NONE.value:
            raise Problem(404, "message not found" if row is None else "message has no media")
        if row.media_status != MediaStatus.STORED.value or not row.media_key:
            status = 410 if row.media_status == MediaStatus.EXPIRED.value else 409
            body = {"error": f"media is {row.media_status}", "mediaStatus": row.media_status}
            return JSONResponse(body, status_code=status)
        mimetype = row.media_mimetype or "application/octet-stream"
        name = file_name(row.media_filename, mimetype=mimetype, fallback=f"{row.type}-{row.id}")
        if row.media_size is None:
            raise Problem(503, "media size unknown")
        key = str(row.media_key)
        try:
            return await media_response(
                request,
                lambda start, end: self.media.read(key, start, end),
                key=key,
                size=int(row.media_size),
                mimetype=mimetype,
                name=name,
            )
        except MediaStoreUnavailable:
            raise Problem(503, "media store unavailable") from None
