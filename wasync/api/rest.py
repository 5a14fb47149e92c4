"""REST under `/api/` (JWT): chats, their messages, assignment, status, notifications.

The same token and the same scoping predicate as `/ws` (`wasync.scopes.visible_chats`): a
chat outside the caller's scope is 404, never 403, so its existence does not leak. Changes
are commands (`wasync.events.ChangeChat`, `ReadNotification`) run by the one writer: the row
and its event-log row commit together, in id order with ingest, and reach `/ws` clients like
everything else.

Assignment is ADMIN only. A USER sees only the chats assigned to it, so claiming an unassigned
chat cannot be expressed without widening the predicate, and handing a chat to a colleague is
a supervisor's call: a USER gets 403 on its own chats, 404 on the others. The attendance
page's "assign to me" is therefore an ADMIN assigning itself; a USER's page has no such button
(its chats are already its own, and it never sees an unassigned one). Decided for the page
(issue 15): letting USERs claim from a queue of unassigned chats would widen the one
predicate for REST, `/ws` and the page at once, so it stays closed until that is decided as a
whole.

Lists are newest first with cursor pagination: `?limit=` (1..200, default 50) and
`?cursor=<nextCursor of the previous page>`. Errors are `wasync.api.guard`'s one shape:
400 a body that is not a JSON object, 401 bad token, 403, 404, 422 a bad value, 503 store
unavailable.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wasync.api.chatview import chat_select, chat_views, search, sort_key
from wasync.api.doc import Op, Param, documented
from wasync.api.guard import Problem, guarded, int_param, json_body, text_param
from wasync.eventlog import MESSAGE_FIELDS, iso, to_json
from wasync.events import ChangeChat, ChatField, ReadNotification
from wasync.pipeline import Pipeline
from wasync.principal import Principal
from wasync.scopes import visible_chats
from wasync.store import Store
from wasync.store import models as m
from wasync.store.types import as_utc
from wasync.untrusted import INT32_MAX, INT64_MAX, loads

T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_NOTIFICATIONS = m.Notification.__table__  # type: ignore[attr-defined]
CHAT_FIELDS = tuple(c.name for c in T_CHATS.c)
NOTIFICATION_FIELDS = tuple(c.name for c in T_NOTIFICATIONS.c if c.name != "tenant_id")
CHAT_STATUSES = ("OPEN", "CLOSED")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_USER_ID = 100


def rest_routes(store: Store, pipeline: Pipeline, secret: str | None) -> list[BaseRoute]:
    """The `/api/` routes for CRM clients."""
    api = RestApi(store, pipeline)
    chat = "/api/chats/{chat_id}"
    note = "/api/notifications/{notification_id}/read"
    page = (Param(name="cursor", description="nextCursor of the previous page"),
            Param(name="limit", description=f"1..{MAX_LIMIT}", type="integer"))  # fmt: skip
    filters = (
        Param(name="status", description="OPEN or CLOSED"),
        Param(name="assigned", description="a user id"),
        Param(name="unread", description="true: only chats with unread messages", type="boolean"),
        Param(name="q", description="name (chat or lead) or 3+ digits of the phone"),
    )
    errors = (404, 422, 503)
    return [
        _route("/api/chats", guarded(api.list_chats, secret), "GET",
               Op(summary="The caller's chats", tag="chats", response="ChatPage",
                  params=(*filters, *page), errors=(422, 503))),
        _route(chat, guarded(api.get_chat, secret), "GET",
               Op(summary="One chat", tag="chats", response="Chat", errors=errors)),
        _route(f"{chat}/messages", guarded(api.list_messages, secret), "GET",
               Op(summary="A chat's messages, newest first", tag="chats",
                  response="MessagePage", params=page, errors=errors)),
        _route(f"{chat}/assign", guarded(api.assign, secret), "POST",
               Op(summary="Assign a chat (ADMIN)", tag="chats", body="AssignBody",
                  response="Chat", errors=(400, 403, *errors))),
        _route(f"{chat}/status", guarded(api.set_status, secret), "POST",
               Op(summary="Open or close a chat", tag="chats", body="StatusBody",
                  response="Chat", errors=(400, *errors))),
        _route(f"{chat}/read", guarded(api.mark_read, secret), "POST",
               Op(summary="Mark a chat read", tag="chats", response="Chat", errors=errors)),
        _route("/api/notifications", guarded(api.list_notifications, secret), "GET",
               Op(summary="The caller's notifications", tag="notifications",
                  response="NotificationPage", params=page, errors=(422, 503))),
        _route(note, guarded(api.read_notification, secret), "POST",
               Op(summary="Mark a notification read", tag="notifications",
                  response="NotificationRead", errors=errors)),
    ]  # fmt: skip


def _route(path: str, endpoint: Any, method: str, op: Op) -> BaseRoute:
    return documented(Route(path, endpoint, methods=[method]), op)


class RestApi:
    """The handlers; each gets the request and the authenticated principal."""

    def __init__(self, store: Store, pipeline: Pipeline) -> None:
        self.store, self.pipeline = store, pipeline

    # --- chats --------------------------------------------------------------------------------

    async def list_chats(self, request: Request, p: Principal) -> Response:
        """`GET /api/chats?status=&assigned=me|none|<user>&unread=true|false&q=`, by last
        activity; each chat with its session, lead and last message (`wasync.api.chatview`)."""
        q = request.query_params
        limit, after = _limit(q), _cursor(q, 2)
        c, key = T_CHATS.c, sort_key()
        stmt = chat_select(p).where(*_chat_filters(q, p))
        if after is not None:
            stmt = stmt.where(_before(key, c.id, _time(after[0]), after[1]))
        stmt = stmt.order_by(key.desc(), c.id.desc()).limit(limit + 1)
        async with self.store.read() as conn:
            rows = [r._mapping for r in await conn.execute(stmt)]
            more, page = len(rows) > limit, rows[:limit]
            chats = await chat_views(conn, page)
        cursor = _encode([iso(page[-1]["sort_at"]), page[-1]["id"]]) if more else None
        return JSONResponse({"chats": chats, "nextCursor": cursor})

    async def get_chat(self, request: Request, p: Principal) -> Response:
        """`GET /api/chats/{id}`: as in the list."""
        chat_id = _path_id(request, "chat_id")
        async with self.store.read() as conn:
            row = (await conn.execute(chat_select(p).where(T_CHATS.c.id == chat_id))).first()
            if row is None:
                raise Problem(404, "chat not found")
            return JSONResponse((await chat_views(conn, [row._mapping]))[0])

    async def list_messages(self, request: Request, p: Principal) -> Response:
        """`GET /api/chats/{id}/messages`, newest first (by provider time, then id)."""
        chat_id, q = _path_id(request, "chat_id"), request.query_params
        limit, after = _limit(q), _cursor(q, 2, hi=INT64_MAX)
        c = T_MESSAGES.c
        stmt = select(*(c[n] for n in MESSAGE_FIELDS)).where(
            c.chat_id == chat_id, c.tenant_id == p.tenant_id
        )
        if after is not None:
            stmt = stmt.where(_before(c.sent_at, c.id, _time(after[0]), after[1]))
        stmt = stmt.order_by(c.sent_at.desc(), c.id.desc()).limit(limit + 1)
        async with self.store.read() as conn:
            await _visible_chat(conn, p, chat_id)
            rows = [r._mapping for r in await conn.execute(stmt)]
        more, page = len(rows) > limit, rows[:limit]
        cursor = _encode([iso(page[-1]["sent_at"]), page[-1]["id"]]) if more else None
        messages = [to_json(r, MESSAGE_FIELDS) for r in page]
        return JSONResponse({"messages": messages, "nextCursor": cursor})

    async def assign(self, request: Request, p: Principal) -> Response:
        """`POST /api/chats/{id}/assign {"userId": "u2" | null}`: ADMIN only (to itself:
        the page's "assign to me"; to another: "transfer"). A USER may not claim an unassigned
        chat: it cannot see one (the predicate), so it gets 404 there, and 403 on its own
        chats: see the module docstring for why this stays so."""
        chat_id = _path_id(request, "chat_id")
        body = await json_body(request)
        if "userId" not in body:
            raise Problem(422, "userId is required (a user id, or null to unassign)")
        user = body["userId"]
        if user is not None and not (isinstance(user, str) and 0 < len(user) <= MAX_USER_ID):
            raise Problem(422, "userId must be a user id (string) or null")
        if user is not None:
            text_param(user, "userId")
        if not p.is_admin:
            async with self.store.read() as conn:
                await _visible_chat(conn, p, chat_id)
            raise Problem(403, "only an ADMIN may assign chats")
        return await self._change_chat(p, chat_id, "assigned_user_id", user)

    async def set_status(self, request: Request, p: Principal) -> Response:
        """`POST /api/chats/{id}/status {"status": "OPEN" | "CLOSED"}`."""
        chat_id = _path_id(request, "chat_id")
        status = (await json_body(request)).get("status")
        if status not in CHAT_STATUSES:
            raise Problem(422, "status must be OPEN or CLOSED")
        return await self._change_chat(p, chat_id, "status", status)

    async def mark_read(self, request: Request, p: Principal) -> Response:
        """`POST /api/chats/{id}/read`: the agent has seen the chat; its unread count goes back
        to 0 (idempotent: a change logs `chat:updated`). No read receipt goes to WhatsApp."""
        return await self._change_chat(p, _path_id(request, "chat_id"), "unread_count", 0)

    async def _change_chat(
        self, p: Principal, chat_id: int, field: ChatField, value: Any
    ) -> Response:
        """Set one field of a visible chat (`wasync.ingest.actions`); 404 when not visible."""
        command = ChangeChat(actor=p, chat_id=chat_id, field=field, value=value)
        row = await self.pipeline.execute(command, source="rest")
        if row is None:
            raise Problem(404, "chat not found")
        return JSONResponse(chat_json(row))

    # --- notifications ------------------------------------------------------------------------

    async def list_notifications(self, request: Request, p: Principal) -> Response:
        """`GET /api/notifications[?unread=true]`: the caller's, newest first."""
        q = request.query_params
        limit, after = _limit(q), _cursor(q, 1)
        n = T_NOTIFICATIONS.c
        stmt = select(T_NOTIFICATIONS).where(n.tenant_id == p.tenant_id, n.user_id == p.user_id)
        if q.get("unread") is not None:
            stmt = stmt.where(n.read.is_(not _flag(q, "unread")))
        if after is not None:
            stmt = stmt.where(n.id < after[0])
        stmt = stmt.order_by(n.id.desc()).limit(limit + 1)
        async with self.store.read() as conn:
            rows = [r._mapping for r in await conn.execute(stmt)]
        more, page = len(rows) > limit, rows[:limit]
        items = [to_json(r, NOTIFICATION_FIELDS) for r in page]
        cursor = _encode([page[-1]["id"]]) if more else None
        return JSONResponse({"notifications": items, "nextCursor": cursor})

    async def read_notification(self, request: Request, p: Principal) -> Response:
        """`POST /api/notifications/{id}/read`: idempotent; logs `notification:read` once."""
        note_id = _path_id(request, "notification_id")
        command = ReadNotification(actor=p, notification_id=note_id)
        if not await self.pipeline.execute(command, source="rest"):
            raise Problem(404, "notification not found")
        return JSONResponse({"id": note_id, "read": True})


def chat_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A `chats` row as camelCase JSON."""
    return to_json(row, CHAT_FIELDS)


async def _visible_chat(conn: AsyncConnection, p: Principal, chat_id: int) -> Mapping[Any, Any]:
    stmt = select(T_CHATS).where(T_CHATS.c.id == chat_id, visible_chats(p, T_CHATS))
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise Problem(404, "chat not found")
    return row._mapping


def _chat_filters(q: QueryParams, p: Principal) -> list[ColumnElement[bool]]:
    c, out = T_CHATS.c, []
    status, assigned = q.get("status"), q.get("assigned")
    if status is not None:
        if status not in CHAT_STATUSES:
            raise Problem(422, "status must be OPEN or CLOSED")
        out.append(c.status == status)
    if assigned == "none":
        out.append(c.assigned_user_id.is_(None))
    elif assigned is not None:
        user = p.user_id if assigned == "me" else text_param(assigned, "assigned")
        out.append(c.assigned_user_id == user)
    if q.get("unread") is not None:
        out.append(c.unread_count > 0 if _flag(q, "unread") else c.unread_count == 0)
    if (text := q.get("q", "").strip()) != "":
        out.append(search(p, text))
    return out


def _before(key: Any, id_col: Any, at: datetime, last_id: int) -> ColumnElement[bool]:
    """Keyset condition for a newest-first order on `(key, id)`."""
    return or_(key < at, and_(key == at, id_col < last_id))


def _path_id(request: Request, name: str) -> int:
    return int_param(request.path_params[name], name, hi=INT32_MAX)


def _limit(q: QueryParams) -> int:
    raw = q.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    limit = int_param(raw, "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise Problem(422, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _flag(q: QueryParams, name: str) -> bool:
    raw = (q.get(name) or "").lower()
    if raw not in ("true", "false", "1", "0"):
        raise Problem(422, f"{name} must be true or false")
    return raw in ("true", "1")


def _encode(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(q: QueryParams, size: int, *, hi: int = INT32_MAX) -> list[Any] | None:
    """The values of `?cursor=`, checked for shape, the last an id up to `hi`; None when
    absent."""
    raw = q.get("cursor")
    if not raw:
        return None
    try:
        values = loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        raise Problem(422, "cursor is not valid") from None
    if not isinstance(values, list) or len(values) != size:
        raise Problem(422, "cursor is not valid")
    values[-1] = int_param(values[-1], "cursor", hi=hi)
    return values


def _time(raw: Any) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(raw))
    except (TypeError, ValueError, OverflowError):  # 9999-12-31T23:59-14:00 overflows UTC
        raise Problem(422, "cursor is not valid") from None
