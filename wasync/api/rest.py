"""REST under `/api/` (JWT): chats, their messages, assignment, status, notifications.

The same token and the same scoping predicate as `/ws` (`wasync.auth.visible_chats`): a chat
outside the caller's scope is 404, never 403, so its existence does not leak. Changes go
through `Pipeline.record()`: the row and its event-log row commit together, in id order with
ingest, and reach `/ws` clients like everything else.

Assignment is ADMIN only. A USER sees only the chats assigned to it, so claiming an unassigned
chat cannot be expressed without widening the predicate, and handing a chat to a colleague is
a supervisor's call: a USER gets 403 on its own chats, 404 on the others.

Lists are newest first with cursor pagination: `?limit=` (1..200, default 50) and
`?cursor=<nextCursor of the previous page>`. Errors are one line of JSON, `{"error": "..."}`:
401 bad token, 403, 404, 422 bad input, 503 store unavailable.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wasync.auth import AuthError, Principal, bearer, verify_token, visible_chats
from wasync.config import Settings
from wasync.errors import ConfigError, StoreUnavailable
from wasync.hub import MESSAGE_FIELDS, iso, to_json
from wasync.pipeline import CHAT_UPDATED, EventSink, Pipeline
from wasync.store import Store
from wasync.store import models as m

log = logging.getLogger(__name__)

T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_NOTIFICATIONS = m.Notification.__table__  # type: ignore[attr-defined]
CHAT_FIELDS = tuple(c.name for c in T_CHATS.c)
NOTIFICATION_FIELDS = tuple(c.name for c in T_NOTIFICATIONS.c if c.name != "tenant_id")
NOTIFICATION_READ = "notification:read"
CHAT_STATUSES = ("OPEN", "CLOSED")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_USER_ID = 100

Handler = Callable[[Request, Principal], Awaitable[Response]]


class Problem(Exception):
    """An error answer: HTTP status and a one-line message."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


def jwt_secret(settings: Settings) -> str | None:
    """The `[auth]` secret, or None (logged) when it is not configured: every call is 401."""
    try:
        return settings.auth.secret()
    except ConfigError as exc:
        log.warning("REST and /ws refuse every request until it is set: %s", exc)
        return None


def rest_routes(store: Store, pipeline: Pipeline, secret: str | None) -> list[BaseRoute]:
    """The `/api/` routes for CRM clients."""
    api = RestApi(store, pipeline, secret)
    chat = "/api/chats/{chat_id}"
    return [
        Route("/api/chats", api.wrap(api.list_chats), methods=["GET"]),
        Route(chat, api.wrap(api.get_chat), methods=["GET"]),
        Route(f"{chat}/messages", api.wrap(api.list_messages), methods=["GET"]),
        Route(f"{chat}/assign", api.wrap(api.assign), methods=["POST"]),
        Route(f"{chat}/status", api.wrap(api.set_status), methods=["POST"]),
        Route(f"{chat}/read", api.wrap(api.mark_read), methods=["POST"]),
        Route("/api/notifications", api.wrap(api.list_notifications), methods=["GET"]),
        Route(
            "/api/notifications/{notification_id}/read",
            api.wrap(api.read_notification),
            methods=["POST"],
        ),
    ]


class RestApi:
    """The handlers; each gets the request and the authenticated principal."""

    def __init__(self, store: Store, pipeline: Pipeline, secret: str | None) -> None:
        self.store, self.pipeline, self.secret = store, pipeline, secret

    def wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Authenticate, run, and turn problems into one-line JSON errors."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request, self._principal(request))
            except Problem as exc:
                return _error(exc.status, exc.error)
            except StoreUnavailable:
                return _error(503, "store unavailable")

        return endpoint

    def _principal(self, request: Request) -> Principal:
        token = bearer(request.headers, request.query_params)
        if token is None or self.secret is None:
            raise Problem(401, "missing or invalid token")
        try:
            return verify_token(self.secret, token)
        except AuthError as exc:
            raise Problem(401, str(exc)) from None

    # --- chats --------------------------------------------------------------------------------

    async def list_chats(self, request: Request, p: Principal) -> Response:
        """`GET /api/chats?status=&assigned=me|none|<user>&unread=true|false`, by last activity."""
        q = request.query_params
        limit, after = _limit(q), _cursor(q, 2)
        c = T_CHATS.c
        key = func.coalesce(c.last_message_at, c.created_at)
        stmt = select(T_CHATS, key.label("sort_at")).where(
            visible_chats(p, T_CHATS), *_chat_filters(q, p)
        )
        if after is not None:
            stmt = stmt.where(_before(key, c.id, _time(after[0]), after[1]))
        stmt = stmt.order_by(key.desc(), c.id.desc()).limit(limit + 1)
        async with self.store.read() as conn:
            rows = [r._mapping for r in await conn.execute(stmt)]
        more, page = len(rows) > limit, rows[:limit]
        cursor = _encode([iso(page[-1]["sort_at"]), page[-1]["id"]]) if more else None
        return JSONResponse({"chats": [chat_json(r) for r in page], "nextCursor": cursor})

    async def get_chat(self, request: Request, p: Principal) -> Response:
        """`GET /api/chats/{id}`."""
        chat_id = _path_id(request, "chat_id")
        async with self.store.read() as conn:
            return JSONResponse(chat_json(await _visible_chat(conn, p, chat_id)))

    async def list_messages(self, request: Request, p: Principal) -> Response:
        """`GET /api/chats/{id}/messages`, newest first (by provider time, then id)."""
        chat_id, q = _path_id(request, "chat_id"), request.query_params
        limit, after = _limit(q), _cursor(q, 2)
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
        """`POST /api/chats/{id}/assign {"userId": "u2" | null}`: ADMIN only."""
        chat_id = _path_id(request, "chat_id")
        body = await _json_body(request)
        if "userId" not in body:
            raise Problem(422, "userId is required (a user id, or null to unassign)")
        user = body["userId"]
        if user is not None and not (isinstance(user, str) and 0 < len(user) <= MAX_USER_ID):
            raise Problem(422, "userId must be a user id (string) or null")
        if not p.is_admin:
            async with self.store.read() as conn:
                await _visible_chat(conn, p, chat_id)
            raise Problem(403, "only an ADMIN may assign chats")
        names = ("assignedUserId", "previousUserId")
        row = await self._change_chat(p, chat_id, "assigned_user_id", user, names)
        return JSONResponse(chat_json(row))

    async def set_status(self, request: Request, p: Principal) -> Response:
        """`POST /api/chats/{id}/status {"status": "OPEN" | "CLOSED"}`."""
        chat_id = _path_id(request, "chat_id")
        status = (await _json_body(request)).get("status")
        if status not in CHAT_STATUSES:
            raise Problem(422, "status must be OPEN or CLOSED")
        row = await self._change_chat(p, chat_id, "status", status, ("status", "previousStatus"))
        return JSONResponse(chat_json(row))

    async def mark_read(self, request: Request, p: Principal) -> Response:
        """`POST /api/chats/{id}/read`: the agent has seen the chat; its unread count goes back
        to 0 (idempotent: a change logs `chat:updated`). No read receipt goes to WhatsApp."""
        chat_id = _path_id(request, "chat_id")
        names = ("unreadCount", "previousUnreadCount")
        row = await self._change_chat(p, chat_id, "unread_count", 0, names)
        return JSONResponse(chat_json(row))

    async def _change_chat(
        self, p: Principal, chat_id: int, column: str, value: Any, names: tuple[str, str]
    ) -> Mapping[Any, Any]:
        """Set one column of a visible chat; a real change logs `chat:updated` with the new
        and the previous value (`names`). 404 when the chat is not visible."""

        async def work(conn: AsyncConnection, sink: EventSink) -> Mapping[Any, Any] | None:
            try:
                old = await _visible_chat(conn, p, chat_id)
            except Problem:
                return None
            if old[column] == value:
                return old
            stmt = update(T_CHATS).where(T_CHATS.c.id == chat_id)
            stmt = stmt.values({column: value, "updated_at": m.utcnow()}).returning(*T_CHATS.c)
            new = (await conn.execute(stmt)).one()._mapping
            sink.emit(
                p.tenant_id, CHAT_UPDATED, chat_id, **{names[0]: value, names[1]: old[column]}
            )
            return new

        row = await self.pipeline.record(work)
        if row is None:
            raise Problem(404, "chat not found")
        return row

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
            stmt = stmt.where(n.id < _int(after[0]))
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

        async def work(conn: AsyncConnection, sink: EventSink) -> bool:
            n = T_NOTIFICATIONS.c
            mine = and_(n.id == note_id, n.tenant_id == p.tenant_id, n.user_id == p.user_id)
            row = (await conn.execute(select(n.read, n.chat_id).where(mine))).first()
            if row is None:
                return False
            if not row.read:
                stmt = update(T_NOTIFICATIONS).where(n.id == note_id)
                await conn.execute(stmt.values(read=True, read_at=m.utcnow()))
                sink.emit(
                    p.tenant_id,
                    NOTIFICATION_READ,
                    row.chat_id,
                    notificationId=note_id,
                    userId=p.user_id,
                )
            return True

        if not await self.pipeline.record(work):
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
        out.append(c.assigned_user_id == (p.user_id if assigned == "me" else assigned))
    if q.get("unread") is not None:
        out.append(c.unread_count > 0 if _flag(q, "unread") else c.unread_count == 0)
    return out


def _before(key: Any, id_col: Any, at: datetime, last_id: int) -> ColumnElement[bool]:
    """Keyset condition for a newest-first order on `(key, id)`."""
    return or_(key < at, and_(key == at, id_col < last_id))


def _error(status: int, error: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error}, status_code=status, headers=headers)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise Problem(422, "body must be JSON") from None
    if not isinstance(body, dict):
        raise Problem(422, "body must be a JSON object")
    return body


def _path_id(request: Request, name: str) -> int:
    return _int(request.path_params[name], name)


def _int(raw: Any, name: str = "cursor") -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.isdigit() and len(raw) < 19:
        return int(raw)
    raise Problem(422, f"{name} must be a positive integer")


def _limit(q: QueryParams) -> int:
    raw = q.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    limit = _int(raw, "limit")
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


def _cursor(q: QueryParams, size: int) -> list[Any] | None:
    """The values of `?cursor=`, checked for shape; None when absent."""
    raw = q.get("cursor")
    if not raw:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        raise Problem(422, "cursor is not valid") from None
    if not isinstance(values, list) or len(values) != size:
        raise Problem(422, "cursor is not valid")
    _int(values[-1])
    return values


def _time(raw: Any) -> datetime:
    try:
        at = datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        raise Problem(422, "cursor is not valid") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
