"""Sending over REST: queue a message in the durable outbox, follow it.

- `POST /api/chats/{id}/messages` — to a chat the caller can see (ADMIN: its tenant; USER:
  chats assigned to it, `auth.can_see`); 404 outside that scope.
- `POST /api/messages` — to a phone (`to`), on `session` or the tenant's first session; a
  USER may only write to a phone whose chat is assigned to it.
- `GET /api/outbox/{id}` — the row's status, provider id and last error.

Body: `{"text": "..."}` or `{"type": "image|video|audio|voice|document", "url": "https://..."
| "data": "<base64>", "mimetype"?, "filename"?, "caption"?}`. Server files are never read.
An `Idempotency-Key` header makes a retried request return the first row (200, not 201).
Answers (`wasync.api.guard`'s one shape): 201 queued, 200 replay, 400 malformed, 401 token,
404 scope, 409 the chat's session is not enabled, 422 refused (not on WhatsApp, media too
large or of the wrong type), 503 store or provider check unavailable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wasync.api.doc import Op, Param, documented
from wasync.api.guard import Problem, guarded, int_param, json_body, text_param
from wasync.outbox import (
    T_CHATS,
    Outbox,
    Queued,
    SendRequest,
    data_request,
    media_request,
    parse_to,
    text_request,
)
from wasync.principal import Principal
from wasync.providers.sending import MEDIA_KINDS
from wasync.registry import Registry
from wasync.scopes import can_see
from wasync.store import Store
from wasync.untrusted import INT32_MAX

MAX_KEY_CHARS = 200


def send_routes(
    outbox: Outbox, registry: Registry, store: Store, secret: str | None
) -> list[BaseRoute]:
    """The send endpoints (the daemon registers them when it runs an outbox)."""
    api = _SendApi(outbox, registry, store)
    key = (
        Param(
            name="Idempotency-Key",
            where="header",
            description="a retried request with the same key returns the first row",
        ),
    )
    errors = (400, 404, 409, 422, 503)
    return [
        documented(
            Route("/api/chats/{chat_id}/messages", guarded(api.to_chat, secret), methods=["POST"]),
            Op(summary="Send in a chat", tag="send", body="SendBody", response="OutboxRow",
               status=201, params=key, errors=(200, *errors)),
        ),
        documented(
            Route("/api/messages", guarded(api.to_phone, secret), methods=["POST"]),
            Op(summary="Send to a phone", tag="send", body="SendToPhone", response="OutboxRow",
               status=201, params=key, errors=(200, *errors)),
        ),
        documented(
            Route("/api/outbox/{outbox_id}", guarded(api.status, secret), methods=["GET"]),
            Op(summary="A send's state", tag="send", response="OutboxRow", errors=(404,)),
        ),
    ]  # fmt: skip


class _SendApi:
    """The handlers, sharing the outbox, the configured sessions and the store."""

    def __init__(self, outbox: Outbox, registry: Registry, store: Store) -> None:
        self.outbox, self.registry, self.store = outbox, registry, store

    async def to_chat(self, request: Request, who: Principal) -> Response:
        """`POST /api/chats/{id}/messages`."""
        chat_id = int_param(request.path_params["chat_id"], "chat", status=404, hi=INT32_MAX)
        chat = await self._chat(who, "id", chat_id)
        if chat is None:
            raise Problem(404, "chat not found")
        body, key = await json_body(request), _idempotency_key(request)
        if (replay := await self._replay(who, key)) is not None:
            return replay
        ref = self.registry.sessions.get(chat.session_id)
        if ref is None or not ref.config.enabled or ref.tenant_id != who.tenant_id:
            raise Problem(409, "the chat's session is not configured or not enabled")
        send = _request(body, self.outbox.cfg.max_media_bytes)
        target = await self.outbox.target_chat(ref, chat)
        return _queued(await self.outbox.enqueue(target, send, key))

    async def to_phone(self, request: Request, who: Principal) -> Response:
        """`POST /api/messages`."""
        body, key = await json_body(request), _idempotency_key(request)
        if (replay := await self._replay(who, key)) is not None:
            return replay
        to, session = _opt_str(body, "to"), _opt_str(body, "session")
        if to is None or not to.strip():
            raise Problem(400, "`to` (a phone number) is required")
        phone = parse_to(to)
        if not who.is_admin and await self._chat(who, "phone", phone) is None:
            raise Problem(404, "chat not found (a USER writes only to chats assigned to it)")
        ref = self.outbox.session(who.tenant_id, session)
        send = _request(body, self.outbox.cfg.max_media_bytes)
        target = await self.outbox.target_phone(ref, phone)
        return _queued(await self.outbox.enqueue(target, send, key))

    async def status(self, request: Request, who: Principal) -> Response:
        """`GET /api/outbox/{id}`."""
        outbox_id = int_param(request.path_params["outbox_id"], "outbox", status=404, hi=INT32_MAX)
        row = await self.outbox.get(who.tenant_id, outbox_id)
        if row is None or not await self._visible(who, row):
            raise Problem(404, "outbox row not found")
        return JSONResponse(row.to_json())

    async def _chat(self, who: Principal, column: str, value: Any) -> Any:
        """The chat by id or phone, when `who` may see it (the one scoping predicate)."""
        c = T_CHATS.c
        q = select(c.id, c.tenant_id, c.session_id, c.kind, c.jid, c.phone, c.assigned_user_id)
        q = q.where(c.tenant_id == who.tenant_id, c[column] == value)
        async with self.store.read() as conn:
            chat = (await conn.execute(q)).first()
        if chat is None:
            return None
        seen = can_see(who, tenant_id=chat.tenant_id, assigned_user_id=chat.assigned_user_id)
        return chat if seen else None

    async def _visible(self, who: Principal, row: Queued) -> bool:
        return row.chat_id is not None and await self._chat(who, "id", row.chat_id) is not None

    async def _replay(self, who: Principal, key: str | None) -> Response | None:
        """The row an earlier request with this key queued (200), if the caller may see it."""
        if key is None:
            return None
        row = await self.outbox.find(who.tenant_id, key)
        if row is None:
            return None
        if not await self._visible(who, row):
            raise Problem(404, "chat not found")
        return _queued(row)


def _queued(row: Queued) -> JSONResponse:
    return JSONResponse(row.to_json(), status_code=201 if row.created else 200)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_CHARS:
        raise Problem(400, f"Idempotency-Key must be 1-{MAX_KEY_CHARS} characters")
    return key


def _request(body: Mapping[str, Any], max_bytes: int) -> SendRequest:
    """A SendRequest from the JSON body; media only as a URL or base64 data."""
    kind = body.get("type") or "text"
    text, caption = _opt_str(body, "text"), _opt_str(body, "caption")
    if kind == "text":
        if text is None:
            raise Problem(400, "`text` is required for a text message")
        return text_request(text)
    if kind not in MEDIA_KINDS:
        raise Problem(400, f"`type` must be text or one of {sorted(MEDIA_KINDS)}")
    url, data = _opt_str(body, "url"), _opt_str(body, "data")
    filename, mimetype = _opt_str(body, "filename"), _opt_str(body, "mimetype")
    if (url is None) == (data is None):
        raise Problem(400, f"a {kind} needs exactly one of `url` or `data` (base64)")
    if url is not None:
        return media_request(
            kind, url, caption=caption or text, filename=filename, mimetype=mimetype,
            max_bytes=max_bytes, allow_files=False,
        )  # fmt: skip
    assert data is not None
    return data_request(
        kind, data, mimetype=mimetype, caption=caption or text, filename=filename,
        max_bytes=max_bytes,
    )  # fmt: skip


def _opt_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Problem(400, f"`{name}` must be a string")
    return text_param(value, f"`{name}`", status=400)
