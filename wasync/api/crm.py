"""REST for the attendance page's CRM panel (JWT): who I am, the agents, quick replies, leads.

- `GET /api/me` — the token's tenant, user and role.
- `GET /api/agents` — who a chat may be transferred to: the tenant's `admins` and `agents`
  from the config, then anyone a chat is assigned to now (ADMIN only: transfer is theirs).
- `GET /api/quick-replies` — `[crm] quick_replies`; `GET /api/lead-statuses` — `[crm]
  lead_statuses`.
- `GET /api/leads/{id}` — a lead the caller may see through one of its chats (the one
  predicate, `wasync.scopes.visible_chats`); 404 otherwise, its existence never leaks.
- `PATCH /api/leads/{id}` `{"firstName"?, "lastName"?, "status"?}` — the `UpdateLead` command
  through the one writer; a change logs `lead:updated` on each of the lead's chats, so every
  `/ws` client that sees one of them hears of it. `status` must be one of
  `[crm] lead_statuses` (422 otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wasync.api.doc import Op, documented
from wasync.api.guard import Problem, guarded, json_body
from wasync.config import Settings
from wasync.eventlog import to_json
from wasync.events import LeadField, UpdateLead
from wasync.pipeline import Pipeline
from wasync.principal import Principal
from wasync.scopes import visible_chats
from wasync.store import Store
from wasync.store import models as m

T_CHATS = m.Chat.__table__  # type: ignore[attr-defined]
T_LEADS = m.Lead.__table__  # type: ignore[attr-defined]
LEAD_FIELDS = tuple(c.name for c in T_LEADS.c if c.name != "tenant_id")
EDITABLE: dict[str, LeadField] = {
    "firstName": "first_name",
    "lastName": "last_name",
    "status": "status",
}
MAX_NAME = 100


def crm_routes(
    store: Store, pipeline: Pipeline, settings: Settings, secret: str | None
) -> list[BaseRoute]:
    """The routes above."""
    api = CrmApi(store, pipeline, settings)
    lead = "/api/leads/{lead_id:int}"

    def route(path: str, endpoint: Any, method: str, op: Op) -> BaseRoute:
        return documented(Route(path, guarded(endpoint, secret), methods=[method]), op)

    return [
        route("/api/me", api.me, "GET", Op(summary="Who the token is", tag="crm", response="Me")),
        route("/api/agents", api.agents, "GET",
              Op(summary="Who a chat may be transferred to (ADMIN)", tag="crm",
                 response="Agents", errors=(403,))),
        route("/api/quick-replies", api.quick_replies, "GET",
              Op(summary="[crm] quick_replies", tag="crm", response="QuickReplies")),
        route("/api/lead-statuses", api.lead_statuses, "GET",
              Op(summary="[crm] lead_statuses", tag="crm", response="LeadStatuses")),
        route(lead, api.get_lead, "GET",
              Op(summary="A lead the caller sees", tag="crm", response="Lead", errors=(404,))),
        route(lead, api.update_lead, "PATCH",
              Op(summary="Change a lead", tag="crm", body="LeadPatch", response="Lead",
                 errors=(400, 404, 422, 503))),
    ]  # fmt: skip


class CrmApi:
    """The handlers; each gets the request and the authenticated principal."""

    def __init__(self, store: Store, pipeline: Pipeline, settings: Settings) -> None:
        self.store, self.pipeline, self.settings = store, pipeline, settings

    async def me(self, request: Request, p: Principal) -> Response:
        """`GET /api/me`."""
        return JSONResponse({"tenantId": p.tenant_id, "userId": p.user_id, "role": p.role})

    async def agents(self, request: Request, p: Principal) -> Response:
        """`GET /api/agents`: configured staff first, then current assignees, each once."""
        if not p.is_admin:
            raise Problem(403, "only an ADMIN may list agents")
        tenant = next((t for t in self.settings.tenants if t.id == p.tenant_id), None)
        admins = set(tenant.admins) if tenant else set()
        ids = tenant.staff() if tenant else []
        c = T_CHATS.c
        stmt = (
            select(c.assigned_user_id)
            .where(c.tenant_id == p.tenant_id, c.assigned_user_id.is_not(None))
            .distinct()
        )
        async with self.store.read() as conn:
            assigned = sorted(r[0] for r in await conn.execute(stmt))
        ids = list(dict.fromkeys([*ids, *assigned]))
        return JSONResponse({"agents": [{"id": i, "admin": i in admins} for i in ids]})

    async def quick_replies(self, request: Request, p: Principal) -> Response:
        """`GET /api/quick-replies`."""
        return JSONResponse({"quickReplies": list(self.settings.crm.quick_replies)})

    async def lead_statuses(self, request: Request, p: Principal) -> Response:
        """`GET /api/lead-statuses`."""
        return JSONResponse({"leadStatuses": list(self.settings.crm.lead_statuses)})

    async def get_lead(self, request: Request, p: Principal) -> Response:
        """`GET /api/leads/{id}`."""
        lead_id = request.path_params["lead_id"]
        c, ld = T_CHATS.c, T_LEADS.c
        seen = select(c.id).where(c.lead_id == lead_id, visible_chats(p, T_CHATS))
        stmt = select(T_LEADS).where(ld.id == lead_id, seen.exists())
        async with self.store.read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise Problem(404, "lead not found")
        return JSONResponse(lead_json(row._mapping))

    async def update_lead(self, request: Request, p: Principal) -> Response:
        """`PATCH /api/leads/{id}`."""
        lead_id = request.path_params["lead_id"]
        changes = self._changes(await json_body(request))
        command = UpdateLead(actor=p, lead_id=lead_id, changes=changes)
        row = await self.pipeline.execute(command, source="rest")
        if row is None:
            raise Problem(404, "lead not found")
        return JSONResponse(lead_json(row))

    def _changes(self, body: Mapping[str, Any]) -> dict[LeadField, str]:
        unknown = sorted(set(body) - set(EDITABLE))
        if unknown:
            raise Problem(422, f"cannot change {unknown[0]!r}: only {', '.join(EDITABLE)}")
        if not body:
            raise Problem(422, f"nothing to change: give one of {', '.join(EDITABLE)}")
        out: dict[LeadField, str] = {}
        for key, value in body.items():
            if not isinstance(value, str):
                raise Problem(422, f"{key} must be a string")
            out[EDITABLE[key]] = value.strip()
        first = out.get("first_name")
        if first is not None and not 0 < len(first) <= MAX_NAME:
            raise Problem(422, f"firstName must be 1 to {MAX_NAME} characters")
        if len(out.get("last_name", "")) > MAX_NAME:
            raise Problem(422, f"lastName must be at most {MAX_NAME} characters")
        statuses = self.settings.crm.lead_statuses
        if "status" in out and out["status"] not in statuses:
            raise Problem(422, f"status must be one of {', '.join(statuses)}")
        return out


def lead_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A `leads` row as camelCase JSON."""
    return to_json(row, LEAD_FIELDS)
