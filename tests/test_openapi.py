"""`/openapi.json` is generated from the route definitions: it validates (openapi-spec-validator),
lists every route of the daemon's app (so a new route without an `Op` fails here), and real
answers match the schemas it gives them; `/docs` is one self-contained page of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.conftest import settings_for
from tests.factories import msg
from wasync.api.app import AppContext, create_app
from wasync.api.openapi import every_route
from wasync.auth import issue_token
from wasync.hub import Hub
from wasync.media import open_store
from wasync.outbox import Outbox
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.store import Store

SECRET = "openapi-test-jwt-secret-0123456789abcdef"
PHONE = "5531988887777"


async def _undocumented(_request: Any) -> PlainTextResponse:
    return PlainTextResponse("new")


@pytest.fixture
async def full_app(db_url: str, tmp_path: Path) -> AsyncIterator[Starlette]:
    """The daemon's app with everything served: webhooks, `/ws`, sends, media."""
    settings = settings_for(
        db_url,
        webhook={"enabled": True},
        auth={"jwt_secret": SECRET},
        media={"dir": str(tmp_path / "media")},
    )
    async with Store(db_url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with (
            Pipeline(store, admins={"acme": ["u1"]}) as pipeline,
            Hub(store) as hub,
            httpx.AsyncClient() as http,
            open_store(settings.media, db_url) as media,
        ):
            session = next(r for r in registry if r.label == "acme/default")
            await pipeline.ingest([msg(session.id, "M1", f"{PHONE}@c.us")], source="poll")
            outbox = Outbox(settings, store, registry, pipeline, http)
            ctx = AppContext(
                settings=settings, store=store, registry=registry, pipeline=pipeline, hub=hub,
                outbox=outbox, media_store=media,
            )  # fmt: skip
            yield create_app(ctx)


def _listed(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in spec["paths"].items() for method in item}


async def _get(app: Starlette, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wasync") as client:
        return await client.get(path, headers=headers)


async def test_the_document_validates_and_lists_every_route(full_app: Starlette) -> None:
    """OpenAPI 3.1, valid; its (path, method) pairs are exactly the app's routes', the lead
    route's `{lead_id:int}` an integer path parameter."""
    resp = await _get(full_app, "/openapi.json")
    assert resp.status_code == 200
    spec = resp.json()
    validate(spec)
    routes = set(every_route(full_app.routes))
    assert ("/api/webhooks/whatsapp", "POST") in routes and ("/ws", "GET") in routes
    assert ("/api/messages/{message_id}/media", "GET") in routes
    assert _listed(spec) == routes
    lead = spec["paths"]["/api/leads/{lead_id}"]["patch"]
    assert lead["parameters"][0]["schema"] == {"type": "integer"}
    assert lead["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/LeadPatch"
    )


async def test_a_route_without_an_op_is_missing_from_it(full_app: Starlette) -> None:
    """A route added without declaring what it is shows up as the difference: the check above
    fails for it."""
    full_app.router.routes.append(Route("/api/new", _undocumented, methods=["GET"]))
    spec = (await _get(full_app, "/openapi.json")).json()
    assert set(every_route(full_app.routes)) - _listed(spec) == {("/api/new", "GET")}


async def test_answers_match_their_schemas(full_app: Starlette) -> None:
    """Real answers (a chat with a lead and a message, its notification, errors) validate
    against the schemas the document gives them."""
    spec = (await _get(full_app, "/openapi.json")).json()
    token = issue_token(SECRET, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=600)
    auth = {"authorization": f"Bearer {token}"}
    chats = (await _get(full_app, "/api/chats", **auth)).json()["chats"]
    assert len(chats) == 1 and chats[0]["lead"] and chats[0]["lastMessage"]
    chat, lead = chats[0]["id"], chats[0]["lead"]["id"]
    for path, template, headers, status in [
        ("/healthz", None, {}, "200"),
        ("/api/me", None, auth, "200"),
        ("/api/chats", None, auth, "200"),
        (f"/api/chats/{chat}", "/api/chats/{chat_id}", auth, "200"),
        (f"/api/chats/{chat}/messages", "/api/chats/{chat_id}/messages", auth, "200"),
        ("/api/notifications", None, auth, "200"),
        (f"/api/leads/{lead}", "/api/leads/{lead_id}", auth, "200"),
        ("/api/chats", None, {}, "401"),
        ("/api/chats/999", "/api/chats/{chat_id}", auth, "404"),
    ]:
        resp = await _get(full_app, path, **headers)
        assert str(resp.status_code) == status, (path, resp.text)
        answer = spec["paths"][template or path]["get"]["responses"][status]
        schema = answer["content"]["application/json"]["schema"]
        OAS31Validator({**schema, "components": spec["components"]}).validate(resp.json())


async def test_the_docs_page_is_self_contained(full_app: Starlette) -> None:
    """`/docs` is HTML naming every path, with no script and nothing fetched elsewhere."""
    resp = await _get(full_app, "/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "<script" not in page and "https://" not in page and "http://" not in page
    spec = (await _get(full_app, "/openapi.json")).json()
    assert all(path in page for path in spec["paths"])
