"""Evolution's instance endpoints: the root, `fetchInstances`, `connectionState`, and the
webhook config (`webhook/set`, `webhook/find`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wasync.sim.base import SimError, read_json
from wasync.sim.content import cuid
from wasync.sim.evolution.guard import Handlers, bad, bad_json, envelope, same
from wasync.sim.evolution.hooks import SUBSCRIBABLE
from wasync.sim.evolution.instance import EvoInstance, iso
from wasync.sim.evolution.render import instance_row


class InstanceRoutes(Handlers):
    """`/`, `/instance/...` and `/webhook/...`."""

    async def root(self, _request: Request) -> Response:
        """`GET /`: the welcome and the version, no key needed."""
        return JSONResponse(
            {
                "status": 200,
                "message": "Welcome to the Evolution API, it is working!",
                "version": self.state.version,
                "clientName": "evolution_exchange",
            }
        )

    async def fetch_instances(self, request: Request) -> Response:
        """Global key: every instance; an instance token: only that instance."""
        given = request.headers.get("apikey", "")
        if same(given, self.state.api_key):
            listed = list(self.state.instances.values())
        else:
            listed = [i for i in self.state.instances.values() if same(given, i.token)]
            if not listed:
                raise SimError(401, envelope(401, "Unauthorized", "Unauthorized"))
        wanted = request.query_params.get("instanceName")
        if wanted:
            listed = [i for i in listed if i.name == wanted]
        return JSONResponse([instance_row(i) for i in listed])

    async def connection_state(self, _request: Request, inst: EvoInstance) -> Response:
        """`{instance: {instanceName, state}}`."""
        return JSONResponse({"instance": {"instanceName": inst.name, "state": inst.state}})

    async def webhook_set(self, request: Request, inst: EvoInstance) -> Response:
        """evolution.md §3.1: nested `{"webhook": {...}}` body; `events` must be present."""
        body = await read_json(request, bad_json)
        hook = body.get("webhook") if isinstance(body, dict) else None
        if not isinstance(hook, dict):
            raise bad('instance requires property "webhook"')
        missing = [f'webhook requires property "{k}"' for k in ("enabled", "url") if k not in hook]
        if missing:
            raise bad(*missing)
        events = hook.get("events")
        if not isinstance(events, list):
            raise bad("TypeError: Cannot read properties of undefined (reading 'length')")
        wrong = [e for e in events if e not in SUBSCRIBABLE]
        if wrong:
            raise bad(f"webhook.events is not one of enum values: {','.join(map(str, wrong))}")
        if not hook["enabled"]:
            events = []
        elif not events:
            events = list(SUBSCRIBABLE)
        now = iso(self.state.clock())
        previous = inst.webhook or {}
        inst.webhook = {
            "id": previous.get("id") or cuid(self.state.rng),
            "url": hook["url"],
            "headers": hook.get("headers") or {},
            "enabled": bool(hook["enabled"]),
            "events": events,
            "webhookByEvents": bool(hook.get("byEvents", False)),
            "webhookBase64": bool(hook.get("base64", False)),
            "createdAt": previous.get("createdAt") or now,
            "updatedAt": now,
            "instanceId": inst.id,
        }
        return JSONResponse(inst.webhook, status_code=201)

    async def webhook_find(self, _request: Request, inst: EvoInstance) -> Response:
        """The webhook as last set (null before any)."""
        return JSONResponse(inst.webhook)
