"""The shapes the HTTP API takes and answers, for `/openapi.json` (`wasync.api.openapi`).

Row shapes are derived from the SQLModel tables, with the same camelCase and field lists the
handlers answer with (`wasync.eventlog.to_json`), so a new column shows up in the document by
itself. Request bodies are pydantic models. Everything here is a JSON Schema (2020-12, as
OpenAPI 3.1 uses) under `#/components/schemas/`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from wasync.api.chatview import PREVIEW_FIELDS
from wasync.api.crm import LEAD_FIELDS
from wasync.api.rest import CHAT_FIELDS, NOTIFICATION_FIELDS
from wasync.eventlog import MESSAGE_FIELDS, camel
from wasync.store import models as m

Json = dict[str, Any]


def ref(name: str) -> Json:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def _column_schema(column: sa.Column[Any]) -> Json:
    kind = column.type
    schema: Json
    if isinstance(kind, sa.Boolean):
        schema = {"type": "boolean"}
    elif isinstance(kind, sa.Integer):
        schema = {"type": "integer"}
    elif isinstance(kind, sa.Float | sa.Numeric):
        schema = {"type": "number"}
    elif isinstance(kind, sa.DateTime) or "DateTime" in type(kind).__name__:
        schema = {"type": "string", "format": "date-time"}
    elif isinstance(kind, sa.JSON):
        schema = {}
    else:
        schema = {"type": "string"}
    if column.nullable and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def row_schema(table: sa.Table, fields: Iterable[str], extra: Mapping[str, Json] = {}) -> Json:
    """A row of `table` as the API answers it: `fields` in camelCase, plus `extra`."""
    props = {camel(name): _column_schema(table.c[name]) for name in fields}
    props.update(extra)
    return _obj(**props)


def _page(item: str, key: str) -> Json:
    """A cursor-paginated list."""
    return _obj(**{key: {"type": "array", "items": ref(item)}, "nextCursor": NULLABLE})


def _obj(**props: Json) -> Json:
    """An object with exactly these properties (every one always present, maybe null)."""
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}  # fmt: skip


STRING: Json = {"type": "string"}
INTEGER: Json = {"type": "integer"}
BOOLEAN: Json = {"type": "boolean"}
NULLABLE: Json = {"type": ["string", "null"]}
T = m.Message.__table__  # type: ignore[attr-defined]


class AssignBody(BaseModel):
    """`POST /api/chats/{id}/assign`."""

    model_config = ConfigDict(extra="forbid")
    userId: str = Field(max_length=100)


class StatusBody(BaseModel):
    """`POST /api/chats/{id}/status`."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["OPEN", "CLOSED"]


class LeadPatch(BaseModel):
    """`PATCH /api/leads/{id}`: at least one field; `status` one of `[crm] lead_statuses`."""

    model_config = ConfigDict(extra="forbid")
    firstName: str | None = Field(default=None, max_length=100)
    lastName: str | None = Field(default=None, max_length=100)
    status: str | None = None


class SendBody(BaseModel):
    """A message to send: `text`, or a media `type` with exactly one of `url` or `data`."""

    text: str | None = None
    type: Literal["text", "image", "video", "audio", "voice", "document"] = "text"
    url: str | None = None
    data: str | None = Field(default=None, description="base64")
    mimetype: str | None = None
    caption: str | None = None
    filename: str | None = None


class SendToPhone(SendBody):
    """`POST /api/messages`: `to` a phone, on `session` or the tenant's first session."""

    to: str
    session: str | None = None


MODELS: tuple[type[BaseModel], ...] = (AssignBody, StatusBody, LeadPatch, SendBody, SendToPhone)


def components() -> dict[str, Json]:
    """Every component schema, by name."""
    chats = m.Chat.__table__  # type: ignore[attr-defined]
    session = _obj(id=INTEGER, name=STRING, provider=STRING)
    names = {"firstName": NULLABLE, "lastName": NULLABLE}
    lead_ref = {"anyOf": [_obj(id=INTEGER, status=STRING, **names), {"type": "null"}]}
    preview = {"anyOf": [row_schema(T, PREVIEW_FIELDS), {"type": "null"}]}
    out: dict[str, Json] = {
        "Error": {"type": "object", "properties": {"error": STRING}, "required": ["error"]},
        "Chat": row_schema(
            chats,
            CHAT_FIELDS,
            {"sortAt": STRING, "session": session, "lead": lead_ref, "lastMessage": preview},
        ),
        "Message": row_schema(T, MESSAGE_FIELDS),
        "Notification": row_schema(m.Notification.__table__, NOTIFICATION_FIELDS),  # type: ignore[attr-defined]
        "Lead": row_schema(m.Lead.__table__, LEAD_FIELDS),  # type: ignore[attr-defined]
        "ChatPage": _page("Chat", "chats"),
        "MessagePage": _page("Message", "messages"),
        "NotificationPage": _page("Notification", "notifications"),
        "OutboxRow": _obj(
            id=INTEGER,
            status={"enum": ["QUEUED", "SENDING", "UNKNOWN", "SENT", "FAILED"]},
            chatId={"type": ["integer", "null"]},
            messageId={"type": ["integer", "null"]},
            providerMessageId=NULLABLE,
            to=STRING,
            kind=STRING,
            attempts=INTEGER,
            lastError=NULLABLE,
            idempotencyKey=NULLABLE,
            createdAt={"type": "string", "format": "date-time"},
        ),
        "Me": _obj(tenantId=STRING, userId=STRING, role={"enum": ["ADMIN", "USER"]}),
        "Agents": _obj(agents={"type": "array", "items": _obj(id=STRING, admin=BOOLEAN)}),
        "QuickReplies": _obj(quickReplies={"type": "array", "items": STRING}),
        "LeadStatuses": _obj(leadStatuses={"type": "array", "items": STRING}),
        "NotificationRead": _obj(id=INTEGER, read=BOOLEAN),
        "Health": _obj(status=STRING, database=STRING, pid=INTEGER),
        "Ready": {  # `failing` only on a 503
            "type": "object",
            "properties": {
                "status": {"enum": ["ok", "unavailable"]},
                "checks": {"type": "object", "additionalProperties": STRING},
                "failing": {"type": "array", "items": STRING},
            },
            "required": ["status", "checks"],
            "additionalProperties": False,
        },
        "WebhookAnswer": {  # `detail` on a refusal; counts (and `quarantined`) when stored
            "type": "object",
            "properties": {
                "ok": BOOLEAN,
                "new": INTEGER,
                "duplicate": INTEGER,
                "ignored": INTEGER,
                "quarantined": INTEGER,
                "detail": STRING,
            },
            "required": ["ok"],
        },
    }
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out
