"""`GET /api/messages/{id}/media`: the message's JWT predicate, headers, ETag and Range."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import msg
from wasync.api.app import AppContext, create_app
from wasync.auth import issue_token
from wasync.config import AuthConfig, Settings
from wasync.events import ChangeChat, Media, MediaStored, MessageType
from wasync.media import LocalStore
from wasync.media.stream import RangeNotSatisfiable, file_name, parse_range
from wasync.pipeline import Pipeline
from wasync.principal import Principal
from wasync.registry import Registry
from wasync.store import Store
from wasync.store import models as m

SECRET = "media-api-secret-at-least-32-bytes!!"
BODY = bytes(range(256)) * 40  # 10,240 bytes
KEY = "ab" * 32
PHONE_JID = "5511977776666@s.whatsapp.net"


@pytest.fixture
async def world(store: Store, settings: Settings, registry: Registry, tmp_path: Path) -> Any:
    """acme: a stored voice note in a chat assigned to u2, a pending image; globex: a file."""
    admins = {t.id: t.admins for t in settings.tenants}
    media = await LocalStore(tmp_path / "media").__aenter__()
    source = tmp_path / "file"
    source.write_bytes(BODY)
    await media.put(KEY, source, content_type="audio/ogg")
    acme, globex = registry.get("acme", "default"), registry.get("globex", "default")
    assert acme is not None and globex is not None
    note = Media(mimetype="audio/ogg; codecs=opus", filename="áudio do cliente.ogg", voice=True)
    async with Pipeline(store, admins=admins, media=True) as pipeline:
        await pipeline.ingest(
            [
                msg(acme.id, "VOICE", PHONE_JID, type_=MessageType.AUDIO, media=note),
                msg(acme.id, "IMAGE", PHONE_JID, type_=MessageType.IMAGE, media=Media()),
                msg(acme.id, "TEXT", PHONE_JID),
                msg(globex.id, "OTHER", PHONE_JID, type_=MessageType.AUDIO, media=note),
            ],
            source="webhook",
        )
        ids = await _ids(store)
        admin = Principal(tenant_id="acme", user_id="u1", role="ADMIN")
        chat = await _chat_of(store, ids["VOICE"])
        await pipeline.execute(
            ChangeChat(actor=admin, chat_id=chat, field="assigned_user_id", value="u2")
        )
        for pmid in ("VOICE", "OTHER"):
            stored = MediaStored(
                message_id=ids[pmid], key=KEY, size=len(BODY), mimetype="audio/ogg"
            )
            assert await pipeline.execute(stored)
        ctx = AppContext(
            settings=settings.model_copy(update={"auth": AuthConfig(jwt_secret=SECRET)}),
            store=store,
            registry=registry,
            pipeline=pipeline,
            media_store=media,
        )
        yield create_app(ctx), ids


async def _ids(store: Store) -> dict[str, int]:
    t = m.Message.__table__  # type: ignore[attr-defined]
    async with store.read() as conn:
        rows = await conn.execute(t.select())
        return {r.provider_message_id: int(r.id) for r in rows}


async def _chat_of(store: Store, message_id: int) -> int:
    t = m.Message.__table__  # type: ignore[attr-defined]
    async with store.read() as conn:
        row = (await conn.execute(t.select().where(t.c.id == message_id))).one()
        return int(row.chat_id)


@pytest.fixture
async def client(world: Any) -> AsyncIterator[Any]:
    """A client of the app, and a function giving a token's headers."""
    app, ids = world
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wasync") as http:
        yield http, ids


def auth(
    tenant: str = "acme", user: str = "u1", role: str = "ADMIN", **extra: str
) -> dict[str, str]:
    """Authorization header (plus `extra` headers) for a token."""
    token = issue_token(SECRET, tenant_id=tenant, user_id=user, role=role, ttl_s=300)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}", **extra}


async def test_the_file_comes_whole_with_its_type_name_and_etag(client: Any):
    """200: the bytes, Content-Type, Content-Disposition with the original (UTF-8) name, a
    strong ETag, Accept-Ranges, and headers that keep a browser from running it."""
    http, ids = client
    got = await http.get(f"/api/messages/{ids['VOICE']}/media", headers=auth())
    assert got.status_code == 200 and got.content == BODY
    h = got.headers
    assert h["content-type"] == "audio/ogg" and h["content-length"] == str(len(BODY))
    assert h["etag"] == f'"{KEY}"' and h["accept-ranges"] == "bytes"
    assert h["content-disposition"].startswith('inline; filename="')
    assert "filename*=UTF-8''%C3%A1udio%20do%20cliente.ogg" in h["content-disposition"]
    assert h["x-content-type-options"] == "nosniff" and "sandbox" in h["content-security-policy"]
    again = await http.get(
        f"/api/messages/{ids['VOICE']}/media", headers=auth(**{"If-None-Match": h["etag"]})
    )
    assert again.status_code == 304 and not again.content


@pytest.mark.parametrize(
    ("header", "span"),
    [("bytes=10-19", (10, 19)), ("bytes=10000-", (10000, 10239)), ("bytes=-5", (10235, 10239))],
)
async def test_a_range_returns_exactly_those_bytes(client: Any, header: str, span: tuple[int, int]):
    """206 with Content-Range and the bytes asked for (seeking in audio and video)."""
    http, ids = client
    got = await http.get(f"/api/messages/{ids['VOICE']}/media", headers=auth(Range=header))
    start, end = span
    assert got.status_code == 206 and got.content == BODY[start : end + 1]
    assert got.headers["content-range"] == f"bytes {start}-{end}/{len(BODY)}"
    assert got.headers["content-length"] == str(end - start + 1)


async def test_a_range_past_the_end_is_416_and_a_stale_if_range_gets_everything(client: Any):
    """416 with `bytes */size`; an If-Range naming another file gets the whole new one."""
    http, ids = client
    url = f"/api/messages/{ids['VOICE']}/media"
    past = await http.get(url, headers=auth(Range="bytes=20000-"))
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(BODY)}"
    stale = await http.get(url, headers=auth(Range="bytes=0-9", **{"If-Range": '"other"'}))
    assert stale.status_code == 200 and stale.content == BODY


@pytest.mark.parametrize(
    ("who", "status"),
    [
        (("acme", "u2", "USER"), 200),  # the chat is assigned to u2
        (("acme", "u3", "USER"), 404),  # not to u3
        (("globex", "u3", "ADMIN"), 404),  # another tenant, whatever its role
    ],
)
async def test_only_who_may_see_the_message_gets_its_media(
    client: Any, who: tuple[str, str, str], status: int
):
    """The message's own predicate: an agent without the chat, or another tenant, gets 404."""
    http, ids = client
    tenant, user, role = who
    got = await http.get(f"/api/messages/{ids['VOICE']}/media", headers=auth(tenant, user, role))
    assert got.status_code == status
    if status == 404:
        assert got.json() == {"error": "message not found"}


async def test_no_token_pending_and_text_messages(client: Any):
    """401 without a token (no `?token=`), 409 while PENDING, 404 for a text message."""
    http, ids = client
    bare = await http.get(f"/api/messages/{ids['VOICE']}/media")
    token = auth()["Authorization"].split()[1]
    query = await http.get(f"/api/messages/{ids['VOICE']}/media", params={"token": token})
    assert bare.status_code == 401 and query.status_code == 401
    pending = await http.get(f"/api/messages/{ids['IMAGE']}/media", headers=auth())
    assert pending.status_code == 409 and pending.json()["mediaStatus"] == "PENDING"
    text = await http.get(f"/api/messages/{ids['TEXT']}/media", headers=auth())
    assert text.status_code == 404


def test_ranges_and_names_are_parsed_strictly():
    """Ranges: one span clamped to the file, several or odd ones ignored (whole file), past
    the end refused; a file name never carries a line break into a header."""
    assert parse_range("bytes=0-", 10) == (0, 9) and parse_range("bytes=5-99", 10) == (5, 9)
    assert parse_range("bytes=0-1,4-5", 10) is None and parse_range("items=0-1", 10) is None
    for bad in ("bytes=10-", "bytes=-0", "bytes=7-3"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(bad, 10)
    name = file_name("a\r\nSet-Cookie: x.pdf", mimetype="application/pdf", fallback="f")
    assert "\r" not in name and "\n" not in name
    assert file_name(None, mimetype="image/jpeg", fallback="image-3") == "image-3.jpg"
