"""Message families, polls, revoke shapes and API edits through the webhook endpoint: what the
reconstructed samples of `tests/samples/*/families/` leave in the database (SQLite and
Postgres)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import Recorder
from tests.test_families import FAMILY_CASES, load
from wasync.api.app import AppContext, create_app
from wasync.config import parse
from wasync.events import MessageType
from wasync.metrics import Metrics
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.store import Store


@dataclass
class Endpoint:
    """The app over ASGI on a fresh database, with what it published and counted."""

    client: httpx.AsyncClient
    store: Store
    metrics: Metrics
    recorder: Recorder

    async def post(self, provider: str, body: Any) -> httpx.Response:
        """POST one body to the provider's webhook path (no secrets configured)."""
        return await self.client.post(f"/api/webhooks/{provider}", content=json.dumps(body))

    async def row(self, pmid: str) -> Any:
        """type, body, extra, edited and revoked of one stored message."""
        sql = text(
            "SELECT type, body, extra, edited, revoked FROM messages WHERE provider_message_id = :p"
        )
        async with self.store.read() as conn:
            return (await conn.execute(sql, {"p": pmid})).one()

    async def count(self, sql: str) -> int:
        """One integer from raw SQL."""
        async with self.store.read() as conn:
            return int((await conn.execute(text(sql))).scalar_one())


@pytest.fixture
async def endpoint(db_url: str) -> AsyncIterator[Endpoint]:
    """WAHA session `default` and Evolution instance `vendas`, webhooks on, unsigned."""
    settings = parse(
        {
            "database": {"url": db_url},
            "webhook": {"enabled": True, "allow_unsigned": True},
            "tenants": [
                {
                    "id": "acme",
                    "admins": ["u1"],
                    "sessions": [
                        {"name": "default", "provider": "waha", "base_url": "http://127.0.0.1:1"},
                        {
                            "name": "vendas",
                            "provider": "evolution",
                            "base_url": "http://127.0.0.1:2",
                        },
                    ],
                }
            ],
        }
    )
    recorder = Recorder()
    async with Store(db_url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with Pipeline(store, admins={"acme": ["u1"]}, subscribers=[recorder]) as pipeline:
            metrics = Metrics()
            ctx = AppContext(
                settings=settings,
                store=store,
                registry=registry,
                pipeline=pipeline,
                metrics=metrics,
            )
            transport = httpx.ASGITransport(app=create_app(ctx))
            async with httpx.AsyncClient(transport=transport, base_url="http://wasync") as client:
                yield Endpoint(client, store, metrics, recorder)


def message_id(provider: str, body: dict[str, Any]) -> str:
    """The bare id of a sample's message."""
    if provider == "waha":
        return str(body["payload"]["id"]).split("_")[2]
    return str(body["data"]["key"]["id"])


@pytest.mark.parametrize(("provider", "name", "kind", "body", "extra"), FAMILY_CASES)
async def test_each_family_is_stored_with_its_text_and_type(
    endpoint: Endpoint,
    provider: str,
    name: str,
    kind: MessageType,
    body: str | None,
    extra: dict[str, Any],
) -> None:
    """Each family lands as one message of its type with its words; none is counted as
    unparsed."""
    sample = load(provider, name)
    resp = await endpoint.post(provider, sample)
    assert resp.status_code == 200 and resp.json()["new"] == 1, resp.text
    row = await endpoint.row(message_id(provider, sample))
    stored_extra = row.extra if isinstance(row.extra, dict) else json.loads(row.extra or "{}")
    assert (row.type, row.body) == (kind.value, body)
    assert extra.items() <= stored_extra.items()
    assert endpoint.metrics.unparsed.collect()[0].samples == []


@pytest.mark.parametrize(
    ("provider", "name"),
    [
        ("waha", "message.any.noweb.poll.reconstructed.json"),
        ("waha", "message.any.webjs.poll.reconstructed.json"),
        ("evolution", "messages.upsert.poll.reconstructed.json"),
    ],
)
async def test_a_poll_is_stored_as_a_poll(endpoint: Endpoint, provider: str, name: str) -> None:
    """A poll's creation is a `poll` message whose `extra.poll` lists its options."""
    sample = load(provider, name)
    assert (await endpoint.post(provider, sample)).status_code == 200
    row = await endpoint.row(message_id(provider, sample))
    stored = row.extra if isinstance(row.extra, dict) else json.loads(row.extra)
    assert row.type == "poll" and stored["poll"]["options"]


async def test_a_vote_updates_its_poll_once(endpoint: Endpoint) -> None:
    """An Evolution vote is applied to its poll (no message of its own) and announced once;
    the same vote again changes nothing; a changed vote replaces it."""
    poll = load("evolution", "messages.upsert.poll.reconstructed.json")
    vote = load("evolution", "messages.upsert.poll-vote.2.3.7.reconstructed.json")
    assert (await endpoint.post("evolution", poll)).status_code == 200
    for _ in range(2):
        resp = await endpoint.post("evolution", vote)
        assert resp.status_code == 200 and resp.json()["new"] == 0
    votes = [e for e in endpoint.recorder.events if e.type == "chat:poll-vote"]
    assert len(votes) == 1
    assert votes[0].data["tally"] == {"Chocolate": 0, "Morango": 1}
    vote["data"]["message"]["pollUpdateMessage"]["vote"]["selectedOptions"] = ["Chocolate"]
    assert (await endpoint.post("evolution", vote)).status_code == 200
    row = await endpoint.row("3EB0E1B2C3D4E5F6A7B8C9")
    stored = row.extra if isinstance(row.extra, dict) else json.loads(row.extra)
    assert stored["poll"]["votes"] == {"5531988887777@s.whatsapp.net": ["Chocolate"]}
    assert await endpoint.count("SELECT count(*) FROM messages") == 1
    tallies = [e.data["tally"] for e in endpoint.recorder.events if e.type == "chat:poll-vote"]
    assert tallies[-1] == {"Chocolate": 1, "Morango": 0} and len(tallies) == 2


async def test_a_waha_vote_updates_its_poll(endpoint: Endpoint) -> None:
    """A WAHA `poll.vote` webhook (the docs' shape, pointed at a stored NOWEB poll) is applied
    to the poll, no message of its own, and announced once; the same vote again changes
    nothing."""
    poll = load("waha", "message.any.noweb.poll.reconstructed.json")
    vote = json.loads((Path(__file__).parent / "samples" / "waha" / "poll.vote.json").read_text())
    vote["payload"]["poll"]["id"] = "true_5531988887777@c.us_3EB0E1B2C3D4E5F6A7B8C9"
    vote["payload"]["vote"]["from"] = "5531988887777@c.us"
    vote["payload"]["vote"]["selectedOptions"] = ["Tarde"]
    assert (await endpoint.post("waha", poll)).status_code == 200
    for _ in range(2):
        resp = await endpoint.post("waha", vote)
        assert resp.status_code == 200 and resp.json()["new"] == 0
    votes = [e for e in endpoint.recorder.events if e.type == "chat:poll-vote"]
    assert len(votes) == 1
    assert votes[0].data["tally"] == {"Manhã": 0, "Tarde": 1, "Noite": 0}
    row = await endpoint.row("3EB0E1B2C3D4E5F6A7B8C9")
    stored = row.extra if isinstance(row.extra, dict) else json.loads(row.extra)
    assert stored["poll"]["votes"] == {"5531988887777@s.whatsapp.net": ["Tarde"]}
    assert await endpoint.count("SELECT count(*) FROM messages") == 1


@pytest.mark.parametrize(
    "name",
    [
        "message.revoked.gows.before-2025.6.3.reconstructed.json",
        "message.revoked.noweb.before-2025.6.3.reconstructed.json",
        "message.revoked.webjs.before-2025.6.3.reconstructed.json",
    ],
)
async def test_an_old_revoke_shape_revokes(endpoint: Endpoint, name: str) -> None:
    """A revoke from WAHA before 2025.6.3 (no `revokedMessageId`) is 200, not a dead letter,
    and marks the message revoked."""
    target = "A06CA7BB5DD8C8F705628CDB7E3A33C9"
    original = {
        "event": "message.any",
        "session": "default",
        "payload": {
            "id": f"false_5531988887777@c.us_{target}",
            "timestamp": 1764599000,
            "from": "5531988887777@c.us",
            "fromMe": False,
            "body": "Mensagem errada",
        },
    }
    assert (await endpoint.post("waha", original)).status_code == 200
    resp = await endpoint.post("waha", load("waha", name))
    assert resp.status_code == 200, resp.text
    assert bool((await endpoint.row(target)).revoked)
    assert await endpoint.count("SELECT count(*) FROM dead_letters") == 0


async def test_an_edit_through_evolutions_api_edits(endpoint: Endpoint) -> None:
    """`send.message.update` edits the stored message (announced once)."""
    sent = load("evolution", "messages.upsert.buttons.reconstructed.json")
    sent["event"] = "send.message"
    sent["data"].update(
        key={
            "remoteJid": "5531988887777@s.whatsapp.net",
            "fromMe": True,
            "id": "3EB0AAAAAAAAAAAAAAAAAA",
        },
        messageType="conversation",
        message={"conversation": "Seu horário é às 14h"},
    )
    assert (await endpoint.post("evolution", sent)).status_code == 200
    update = load("evolution", "send.message.update.reconstructed.json")
    for _ in range(2):
        assert (await endpoint.post("evolution", update)).status_code == 200
    row = await endpoint.row("3EB0AAAAAAAAAAAAAAAAAA")
    assert (row.body, bool(row.edited)) == ("Seu horário é às 15h (corrigido)", True)
    edits = [e for e in endpoint.recorder.events if e.type == "chat:message-edited"]
    assert len(edits) == 1


async def test_an_unparsed_message_is_counted(endpoint: Endpoint) -> None:
    """A message whose content wasync does not know is stored as `other` and counted in
    wasync_messages_unparsed_total by provider and the provider's name for it."""
    body = load("evolution", "messages.upsert.buttons.reconstructed.json")
    body["data"]["messageType"] = "somethingBrandNew"
    body["data"]["message"] = {"somethingBrandNew": {"x": 1}}
    assert (await endpoint.post("evolution", body)).status_code == 200
    value = endpoint.metrics.registry.get_sample_value(
        "wasync_messages_unparsed_total", {"provider": "evolution", "type": "somethingBrandNew"}
    )
    assert value == 1.0
    assert (await endpoint.row("3EB0B1B2C3D4E5F6A7B8C9")).type == "other"
