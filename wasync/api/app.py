"""The daemon's one HTTP app (Starlette): webhooks, health, metrics, REST under `/api/`, `/ws`,
and the attendance page at `/atendimento`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from wasync import providers
from wasync.api.crm import crm_routes
from wasync.api.doc import Op, documented
from wasync.api.errors import ErrorGuard, http_error
from wasync.api.guard import jwt_secret
from wasync.api.health import health_routes
from wasync.api.media import media_routes
from wasync.api.openapi import openapi_routes
from wasync.api.rest import rest_routes
from wasync.api.send import send_routes
from wasync.api.web import web_routes
from wasync.api.webhook import WebhookReceiver
from wasync.api.webhook_keep import Keeper
from wasync.api.ws import ws_routes
from wasync.config import Settings
from wasync.hub import Hub
from wasync.media import MediaStore, MediaWorker
from wasync.metrics import Metrics
from wasync.outbox import Outbox
from wasync.pipeline import Pipeline
from wasync.providers import ProviderKind
from wasync.readiness import Readiness
from wasync.registry import Registry
from wasync.store import Store

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(slots=True, kw_only=True)
class AppContext:
    """What the HTTP handlers share; built by the daemon (or a test)."""

    settings: Settings
    store: Store
    registry: Registry
    pipeline: Pipeline
    metrics: Metrics = field(default_factory=Metrics)
    hub: Hub | None = None  # serves `/ws` when given
    outbox: Outbox | None = None  # serves the send routes when given
    media_store: MediaStore | None = None  # serves `GET /api/messages/{id}/media` when given
    media_worker: MediaWorker | None = None  # takes the files webhooks carry inline
    extra_routes: list[BaseRoute] = field(default_factory=list)
    readiness: Readiness | None = None  # `/readyz`'s checks (default: database and schema)


class App(Starlette):
    """The Starlette app, with a lean way in for the webhook paths: a POST to one of `fast`
    goes straight to its handler under `ErrorGuard` alone, past the router and Starlette's
    exception middleware (measured: about a fifth of the main thread's time per webhook under
    load, scripts/bench_webhook.py). Answers are the same: the handler never raises
    `HTTPException`, and a bug is still one JSON 500 from `ErrorGuard`."""

    def __init__(self, *, fast: dict[str, Endpoint], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast = {path: ErrorGuard(_asgi(endpoint)) for path, endpoint in fast.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            lean = self.fast.get(scope["path"])
            if lean is not None:
                await lean(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _asgi(endpoint: Endpoint) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)

    return app


def create_app(ctx: AppContext) -> App:
    """Build the app; the webhook routes exist only when `[webhook] enabled`."""
    routes = health_routes(ctx.store, ctx.metrics, ctx.readiness)
    fast: dict[str, Endpoint] = {}
    if ctx.settings.webhook.enabled:
        hooks = webhook_routes(ctx)
        routes += hooks
        fast = {r.path: r.endpoint for r in hooks if isinstance(r, Route) and "{" not in r.path}
    secret = jwt_secret(ctx.settings)
    routes += rest_routes(ctx.store, ctx.pipeline, secret)
    routes += crm_routes(ctx.store, ctx.pipeline, ctx.settings, secret)
    if ctx.hub is not None:
        routes += ws_routes(ctx.hub, secret, ctx.metrics)
    if ctx.outbox is not None:
        routes += send_routes(ctx.outbox, ctx.registry, ctx.store, secret)
    if ctx.media_store is not None:
        routes += media_routes(ctx.store, ctx.media_store, secret)
    routes += ctx.extra_routes
    routes += web_routes()
    routes += openapi_routes()
    app = App(
        fast=fast,
        routes=routes,
        middleware=[Middleware(ErrorGuard)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.ctx = ctx
    return app


def webhook_routes(ctx: AppContext) -> list[BaseRoute]:
    """`/api/webhooks/whatsapp` (auto-detect), `/api/webhooks/{kind}` per provider kind, and
    `/{event}` under both for the kind that appends the event to the URL (Evolution
    `byEvents: true` appends `/<event-with-hyphens>`, evolution.md 3.1)."""
    hook = ctx.settings.webhook
    keeper = Keeper(
        ctx.store,
        sample_rows=hook.unauthenticated_sample_rows,
        sample_bytes=hook.unauthenticated_sample_bytes,
        sample_per_min=hook.unauthenticated_sample_per_min,
    )
    receiver = WebhookReceiver(
        registry=ctx.registry,
        pipeline=ctx.pipeline,
        store=ctx.store,
        metrics=ctx.metrics,
        max_body_bytes=hook.max_body_bytes,
        rate_per_s=hook.rate_per_s,
        burst=hook.burst,
        media=ctx.media_worker,
        source_rate_per_s=hook.source_rate_per_s,
        source_burst=hook.source_burst,
        keeper=keeper,
        allow_unsigned=hook.allow_unsigned,
    )

    def route(path: str, kind: ProviderKind | None) -> Route:
        async def handle(request: Request) -> Response:
            return await receiver.handle(request, kind)

        what = f"{kind.name} webhook" if kind else "Webhook of either provider (detected)"
        op = Op(summary=f"{what} at {path}", tag="webhooks", auth="webhook",
                response="WebhookAnswer", errors=(400, 404, 413, 429, 503))  # fmt: skip
        return documented(Route(path, handle, methods=["POST"]), op)

    kinds = list(providers.KINDS.values())
    suffixed = [k for k in kinds if k.event_suffix]
    routes: list[BaseRoute] = [route("/api/webhooks/whatsapp", None)]
    routes += [route(f"/api/webhooks/{k.name}", k) for k in kinds]
    routes += [route(f"/api/webhooks/{k.name}/{{event}}", k) for k in suffixed]
    if suffixed:  # the auto-detect path with a suffix is the suffixing kind's (detected if many)
        only = suffixed[0] if len(suffixed) == 1 else None
        routes.append(route("/api/webhooks/whatsapp/{event}", only))
    return routes
