"""The send endpoints: JWT, the scoping predicate, idempotency, refusals, media rules."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from tests.factories import msg
from tests.test_outbox import JWT_SECRET, PHONE, Env, environment
from wasync.api.app import AppContext, create_app
from wasync.auth import Role, issue_token


class Api:
    """An HTTP client on the daemon's app, with tokens for users of tenant `acme`."""

    def __init__(self, env: Env, client: httpx.AsyncClient) -> None:
        self.env = env
        self.client = client

    def headers(self, user: str = "boss", role: Role = "ADMIN", **extra: str) -> dict[str, str]:
        """Authorization (and any extra) headers."""
        token = issue_token(JWT_SECRET, tenant_id="acme", user_id=user, role=role, ttl_s=600)
        return {"Authorization": f"Bearer {token}", **extra}

    async def chat(self, phone: str = PHONE) -> int:
        """A chat created the usual way: the person wrote first."""
        sid = self.env.ref("waha").id
        await self.env.pipeline.ingest([msg(sid, f"in-{phone}", f"{phone}@c.us")], source="test")
        rows = await self.env.sql("SELECT id FROM chats WHERE phone = :p", p=phone)
        return int(rows[0][0])


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    """The app with the outbox's routes, over ASGI."""
    async with environment(db_url) as env:
        ctx = AppContext(
            settings=env.settings,
            store=env.store,
            registry=env.registry,
            pipeline=env.pipeline,
            metrics=env.metrics,
            outbox=env.outbox,
        )
        transport = httpx.ASGITransport(create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://wasync") as client:
            yield Api(env, client)


async def test_admin_sends_to_a_chat_and_a_retry_gets_the_same_row(api: Api) -> None:
    """201 with the queued row; the same Idempotency-Key answers 200 with the same row; the
    row can be followed until the provider's id is known."""
    chat = await api.chat()
    headers = api.headers(**{"Idempotency-Key": "crm-42"})
    first = await api.client.post(
        f"/api/chats/{chat}/messages", json={"text": "Oi!"}, headers=headers
    )
    again = await api.client.post(
        f"/api/chats/{chat}/messages", json={"text": "Oi!"}, headers=headers
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert (first.json()["status"], first.json()["chatId"]) == ("QUEUED", chat)
    row = first.json()["id"]
    await api.env.drain([await api.env.outbox.get("acme", row)])  # type: ignore[list-item]
    got = (await api.client.get(f"/api/outbox/{row}", headers=api.headers())).json()
    assert got["status"] == "SENT" and got["providerMessageId"]
    assert [s.body["text"] for s in api.env.waha.sends] == ["Oi!"]


async def test_a_user_writes_only_to_chats_assigned_to_it(api: Api) -> None:
    """USER: 404 on a chat not assigned to it, 201 once assigned; others cannot follow it."""
    chat = await api.chat()
    url = f"/api/chats/{chat}/messages"
    ana = api.headers("ana", "USER")
    assert (await api.client.post(url, json={"text": "x"}, headers=ana)).status_code == 404
    async with api.env.store.write() as conn:
        await conn.execute(text("UPDATE chats SET assigned_user_id = 'ana'"))
    sent = await api.client.post(url, json={"text": "x"}, headers=ana)
    assert sent.status_code == 201
    status = f"/api/outbox/{sent.json()['id']}"
    assert (await api.client.get(status, headers=ana)).status_code == 200
    assert (await api.client.get(status, headers=api.headers("bia", "USER"))).status_code == 404


async def test_tokens_are_required_and_tenants_are_apart(api: Api) -> None:
    """No or bad token: 401; a token of another tenant does not see the chat: 404."""
    chat = await api.chat()
    url = f"/api/chats/{chat}/messages"
    assert (await api.client.post(url, json={"text": "x"})).status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert (await api.client.post(url, json={"text": "x"}, headers=bad)).status_code == 401
    other = issue_token(JWT_SECRET, tenant_id="globex", user_id="u", role="ADMIN", ttl_s=60)
    got = await api.client.post(
        url, json={"text": "x"}, headers={"Authorization": f"Bearer {other}"}
    )
    assert got.status_code == 404
    assert await api.env.sql("SELECT count(*) FROM outbox") == [(0,)]


async def test_post_messages_to_a_phone(api: Api) -> None:
    """`POST /api/messages` with `to`: the first session by default, or the one named; a USER
    may not start a conversation with a phone it has no chat with."""
    url = "/api/messages"
    default = await api.client.post(
        url, json={"to": "+55 11 98765-0001", "text": "a"}, headers=api.headers()
    )
    named = await api.client.post(
        url, json={"to": "5511987650001", "session": "evo", "text": "b"}, headers=api.headers()
    )
    assert (default.status_code, named.status_code) == (201, 201)
    assert default.json()["to"] == f"{PHONE}@c.us"
    assert named.json()["to"] == f"{PHONE}@s.whatsapp.net"
    assert default.json()["chatId"] == named.json()["chatId"]
    user = await api.client.post(
        url, json={"to": "5511987650009", "text": "c"}, headers=api.headers("ana", "USER")
    )
    assert user.status_code == 404


async def test_a_number_not_on_whatsapp_is_422_and_nothing_is_queued(api: Api) -> None:
    """The provider says no: 422 with one clear message, no rows."""
    api.env.waha.mark_absent("5511900004444")
    got = await api.client.post(
        "/api/messages", json={"to": "5511900004444", "text": "x"}, headers=api.headers()
    )
    assert got.status_code == 422
    assert got.json() == {"error": "+5511900004444 is not on WhatsApp (checked on acme/default)"}
    assert await api.env.sql("SELECT count(*) FROM outbox") == [(0,)]
    assert await api.env.sql("SELECT count(*) FROM messages") == [(0,)]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"type": "image", "data": base64.b64encode(b"x" * 600).decode()}, 422, "limit is"),
        ({"type": "image", "url": "https://x.example/a.pdf"}, 422, "image must be image/"),
        ({"type": "image", "url": "/etc/passwd"}, 422, "URL or base64"),
        ({"type": "video", "url": "https://x.example/a.mp4", "data": "AA=="}, 400, "exactly one"),
        ({"type": "voice", "data": "not base64!"}, 422, "not valid base64"),
        ({"type": "gif", "url": "https://x.example/a.gif"}, 400, "`type` must be"),
        ({"text": 5}, 400, "must be a string"),
        ({}, 400, "`text` is required"),
    ],
)
async def test_bad_bodies_are_refused_before_queueing(
    db_url: str, body: dict[str, object], status: int, error: str
) -> None:
    """Size, mimetype, source and shape are checked before anything is queued."""
    async with environment(db_url, max_media_bytes=512) as env:
        ctx = AppContext(
            settings=env.settings, store=env.store, registry=env.registry,
            pipeline=env.pipeline, outbox=env.outbox,
        )  # fmt: skip
        transport = httpx.ASGITransport(create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            api = Api(env, client)
            got = await client.post(
                "/api/messages", json={"to": PHONE, **body}, headers=api.headers()
            )
        assert got.status_code == status, got.text
        assert error in got.json()["error"]
        assert await env.sql("SELECT count(*) FROM outbox") == [(0,)]


async def test_media_by_url_and_by_base64_reach_the_provider(api: Api) -> None:
    """A URL is passed through; base64 data (even as a data: URI) is sent raw with its type."""
    pdf = base64.b64encode(b"%PDF-1.4 proposta").decode()
    bodies = [
        {"type": "image", "url": "https://cdn.example.com/p.png", "caption": "Promo"},
        {"type": "document", "data": f"data:application/pdf;base64,{pdf}", "filename": "p.pdf"},
    ]
    rows = []
    for body in bodies:
        got = await api.client.post(
            "/api/messages", json={"to": PHONE, "session": "evo", **body}, headers=api.headers()
        )
        assert got.status_code == 201, got.text
        rows.append(await api.env.outbox.get("acme", got.json()["id"]))
    await api.env.drain(rows)  # type: ignore[arg-type]
    sends = api.env.evo.sends
    assert sends[0].body["media"] == "https://cdn.example.com/p.png"
    assert sends[0].body["caption"] == "Promo"
    assert sends[1].body["media"] == pdf
    assert (sends[1].body["mimetype"], sends[1].body["fileName"]) == ("application/pdf", "p.pdf")


async def _stored_document(api: Api, body: dict[str, str]) -> dict[str, tuple[str, str]]:
    """`body` sent as a document through both sessions: each simulator's stored (file name,
    mimetype) of it, by provider."""
    rows = []
    for session in ("default", "evo"):
        got = await api.client.post(
            "/api/messages",
            json={"to": PHONE, "session": session, "type": "document", **body},
            headers=api.headers(),
        )
        assert got.status_code == 201, got.text
        rows.append(await api.env.outbox.get("acme", got.json()["id"]))
    done = await api.env.drain(rows)  # type: ignore[arg-type]
    assert {r.status for r in done.values()} == {"SENT"}, [r.last_error for r in done.values()]
    [waha] = [m["_data"] for m in api.env.waha.all_messages("default") if m["fromMe"]]
    [evo] = [m for m in api.env.evo.all_messages("evo") if m["key"]["fromMe"]]
    doc = evo["message"]["documentMessage"]
    return {"waha": (waha["filename"], waha["mimetype"]), "evo": (doc["fileName"], doc["mimetype"])}


async def test_a_document_url_without_extension_keeps_the_mimetype_given(api: Api) -> None:
    """A URL whose name has no extension, with `mimetype`: both providers store that type and
    a `.pdf` name (Evolution >= 2.3.3 types media by the name: "false" without one)."""
    url = "https://crm.example.com/attachments/42"
    stored = await _stored_document(api, {"url": url, "mimetype": "application/pdf"})
    assert stored == {"waha": ("42.pdf", "application/pdf"), "evo": ("42.pdf", "application/pdf")}


async def test_a_document_url_is_typed_by_its_name_without_a_mimetype(api: Api) -> None:
    """Without `mimetype`, the URL's `contrato.pdf` gives application/pdf at both providers."""
    stored = await _stored_document(api, {"url": "https://crm.example.com/files/contrato.pdf"})
    pdf = ("contrato.pdf", "application/pdf")
    assert stored == {"waha": pdf, "evo": pdf}
