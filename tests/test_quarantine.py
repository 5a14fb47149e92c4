"""One bad message never stops a session: poisoned messages among good ones, by polling and
by webhook, on SQLite and Postgres; events the store itself refuses; doctor and sessions."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.factories import msg
from wasync.api.app import AppContext, create_app
from wasync.config import Settings, parse
from wasync.errors import Quarantined, StoreRefused
from wasync.events import ChangeChat, CursorUpdate, Media
from wasync.metrics import Metrics
from wasync.pipeline import Pipeline
from wasync.poller import Poller
from wasync.principal import Principal
from wasync.registry import Registry, provider_for, sync
from wasync.replay import replay_files
from wasync.session_status import read_sessions, render
from wasync.sim.content import text as text_content
from wasync.sim.evolution import EvolutionSim
from wasync.sim.waha import WahaSim
from wasync.store import Store

KEY = "quarantine-test-api-key"
HMAC_KEY = "quarantine-test-hmac-key-of-32-bytes!"
GOOD = 20
LONG_ID = "3EB0" + "F" * 300  # messages.provider_message_id holds 128
# The three poisons of the issue, placed among the good messages.
POISONS = {
    5: {"text": "bom dia\x00 tudo bem?"},
    11: {"push_name": "Ana\x00Maria"},
    17: {"message_id": LONG_ID},
}


def phone(i: int) -> str:
    """A Brazilian mobile, distinct per `i`."""
    return f"55319877{i:05d}"


def settings_for(url: str, provider: str, invalid_text: str) -> Settings:
    """One tenant, one session of `provider`, webhooks on (WAHA signs with HMAC, Evolution
    sends a static bearer token)."""
    session: dict[str, Any] = {
        "name": "default",
        "provider": provider,
        "base_url": f"http://{provider}",
        "api_key": KEY,
    }
    session["webhook_secret"] = HMAC_KEY
    return parse(
        {
            "database": {"url": url, "invalid_text": invalid_text},
            "webhook": {"enabled": True},
            "poll": {"log_idle_cycles": False},
            "tenants": [{"id": "acme", "admins": ["u1"], "sessions": [session]}],
        }
    )


@dataclass
class World:
    """A simulated session with 20 good and 3 poisoned messages, and our side of it."""

    provider: str
    sim: Any
    ids: list[str]  # every message id, in the order written
    settings: Settings
    store: Store
    registry: Registry
    pipeline: Pipeline

    async def scalar(self, sql: str, **params: Any) -> Any:
        """One value from raw SQL."""
        async with self.store.read() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def quarantined(self) -> list[Any]:
        """The quarantined rows, oldest first."""
        async with self.store.read() as conn:
            sql = "SELECT * FROM dead_letters WHERE kind = 'quarantined' ORDER BY id"
            return list(await conn.execute(text(sql)))


def populate(sim: Any) -> list[str]:
    """Write the 23 messages into the simulator's `default` session; their ids."""
    ids = []
    for i in range(GOOD + len(POISONS)):
        spec = dict(POISONS.get(i, {}))
        words = spec.pop("text", f"mensagem {i}")
        ids.append(sim.add_message("default", phone(i), _text(words), ts=_now() - 600 + i, **spec))
    return ids


def _text(words: str) -> Any:
    return text_content(words)


def _now() -> int:
    return int(time.time())


@asynccontextmanager
async def world(db_url: str, provider: str, invalid_text: str = "clean") -> AsyncIterator[World]:
    """The simulator with the messages written, a fresh store and a running pipeline."""
    if provider == "waha":
        sim: Any = WahaSim(api_key=KEY)
        sim.add_session("default", engine="WEBJS")
    else:
        sim = EvolutionSim(api_key=KEY)
        sim.add_instance("default")
    ids = populate(sim)
    settings = settings_for(db_url, provider, invalid_text)
    async with Store(db_url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with Pipeline.from_settings(store, settings) as pipeline:
            yield World(provider, sim, ids, settings, store, registry, pipeline)


def bare(provider: str, message_id: str) -> str:
    """The stored key of a simulator id (WAHA ids are `false_<chat>_<id>`)."""
    return message_id.rsplit("_", 1)[-1] if provider == "waha" else message_id


async def check_outcome(w: World, invalid_text: str) -> None:
    """20 good stored; in "clean" mode the NUL ones stored without the NUL and the long id
    quarantined; in "quarantine" mode all three quarantined, each with its reason."""
    reasons = [r.error for r in await w.quarantined()]
    stored = await w.scalar("SELECT count(*) FROM messages")
    good = [bare(w.provider, i) for n, i in enumerate(w.ids) if n not in POISONS]
    for pmid in good:
        assert await w.scalar("SELECT count(*) FROM messages WHERE provider_message_id=:p", p=pmid)
    if invalid_text == "clean":
        assert stored == GOOD + 2
        body = await w.scalar("SELECT body FROM messages WHERE body LIKE 'bom dia%'")
        assert body == "bom dia tudo bem?"
        assert await w.scalar("SELECT count(*) FROM messages WHERE push_name = 'AnaMaria'") == 1
        assert len(reasons) == 1 and "provider_message_id is 304 characters" in reasons[0]
    else:
        assert stored == GOOD
        assert len(reasons) == 3
        assert any("body contains NUL" in r for r in reasons)
        assert any("push_name contains NUL" in r for r in reasons)
        assert any("provider_message_id is 304 characters" in r for r in reasons)
    for row in await w.quarantined():
        assert row.session_name == "default" and row.tenant_id == "acme"
        assert row.provider == w.provider and row.session_id == next(iter(w.registry)).id
        assert row.provider_message_id in {bare(w.provider, i) for i in w.ids}
        assert json.loads(bytes(row.body))["event"] == "Message"


@pytest.mark.parametrize("invalid_text", ["clean", "quarantine"])
@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_polling_stores_the_good_keeps_the_poisoned_and_goes_on(
    db_url: str, provider: str, invalid_text: str
) -> None:
    """A poll cycle over 20 good and 3 poisoned messages stores the good ones, quarantines
    what cannot be stored with its reason, moves the cursor past it, and later cycles read
    new messages (on Postgres the poisons used to block the session for good)."""
    async with world(db_url, provider, invalid_text) as w, _poller(w) as poller:
        first = await poller.cycle()
        assert first.error is None, first.error
        await check_outcome(w, invalid_text)
        assert first.quarantined == (1 if invalid_text == "clean" else 3)
        assert await w.scalar("SELECT count(*) FROM cursors") >= 1
        w.sim.add_incoming("default", phone(99), text="depois do veneno")
        second = await poller.cycle()
        assert second.error is None and second.new == 1
        assert len(await w.quarantined()) == (1 if invalid_text == "clean" else 3)  # kept once


@pytest.mark.parametrize("invalid_text", ["clean", "quarantine"])
@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_webhooks_for_poisoned_messages_are_answered_2xx(
    db_url: str, provider: str, invalid_text: str
) -> None:
    """Each of the 23 messages delivered as a webhook is answered 200; a poisoned one says
    it was quarantined (the provider stops retrying it); a retry changes nothing."""
    async with world(db_url, provider, invalid_text) as w:
        app = create_app(
            AppContext(
                settings=w.settings,
                store=w.store,
                registry=w.registry,
                pipeline=w.pipeline,
                metrics=(metrics := Metrics()),
            )
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://wasync") as client:
            answers = [await _deliver(client, w, i) for i in w.ids]
            again = await _deliver(client, w, w.ids[17])
        assert [a.status_code for a in answers] == [200] * len(w.ids)
        held = sum(a.json().get("quarantined", 0) for a in answers)
        assert held == (1 if invalid_text == "clean" else 3)
        assert answers[17].json()["quarantined"] == 1 and again.status_code == 200
        await check_outcome(w, invalid_text)
        counted = metrics.registry.get_sample_value(
            "wasync_messages_quarantined_total", {"source": "webhook"}
        )
        assert counted == held + 1  # the retry was counted, not kept again


async def test_events_the_store_refuses_are_found_and_kept(db_url: str) -> None:
    """A batch with an event no normalization catches but the store refuses (a size past 64
    bits) stores the other nine, quarantines that one with the database's reason, and still
    moves the cursor; the caller learns it through Quarantined."""
    async with world(db_url, "waha") as w:
        sid = next(iter(w.registry)).id
        events = [msg(sid, f"OK{i}", f"{phone(i)}@s.whatsapp.net", at=i) for i in range(10)]
        events[6] = msg(sid, "HUGE", f"{phone(6)}@s.whatsapp.net", media=Media(size=2**70))
        with pytest.raises(Quarantined) as info:
            await w.pipeline.ingest(
                events, source="poll", cursor=CursorUpdate(session_id=sid, ts=1234.0)
            )
        assert (info.value.result.new, info.value.result.quarantined) == (9, 1)
        assert "refused by the store" in info.value.reasons[0]
        (row,) = await w.quarantined()
        assert row.provider_message_id == "HUGE" and "refused by the store" in row.error
        assert await w.scalar("SELECT count(*) FROM messages") == 9
        assert await w.scalar("SELECT ts FROM cursors WHERE session_id=:s", s=sid) == 1234.0
        with pytest.raises(Quarantined):
            await w.pipeline.ingest([events[6]], source="poll")
        assert len(await w.quarantined()) == 1


async def test_sessions_and_doctor_show_what_was_kept(db_url: str) -> None:
    """`wasync sessions` lists each session's messages and quarantined count with the newest
    reason; the doctor warns while quarantined rows wait."""
    from wasync.doctor import _dead_letters

    async with world(db_url, "waha") as w, _poller(w) as poller:
        await poller.cycle()
        lines = render(await read_sessions(w.settings))
        check = await _dead_letters(w.settings)
    header = lines[0].split()
    assert header[:7] == [
        "SESSION",
        "PROVIDER",
        "STATUS",
        "SINCE",
        "MESSAGES",
        "QUARANTINED",
        "UNPARSED",
    ]
    assert "NODE" in header[7:]  # new columns come after the existing ones
    cells = lines[1].split()  # SINCE is a date and a time
    assert cells[0] == "acme/default" and cells[5:8] == [str(GOOD + 2), "1", "0"]
    assert "provider_message_id is 304 characters" in lines[-1]
    assert check.level == "warn" and "1 quarantined" in check.detail
    assert "acme/default 1" in check.detail


@asynccontextmanager
async def _poller(w: World) -> AsyncIterator[Poller]:
    (ref,) = list(w.registry)
    sim_transport = httpx.ASGITransport(app=w.sim.app)
    async with httpx.AsyncClient(transport=sim_transport, base_url=ref.config.base_url) as client:
        provider = provider_for(ref, client, w.settings.poll)
        yield Poller(provider, w.pipeline, w.store, w.settings.poll, metrics=Metrics())


async def _deliver(client: httpx.AsyncClient, w: World, message_id: str) -> httpx.Response:
    """POST the provider's webhook for one stored message, signed as the provider signs it."""
    if w.provider == "waha":
        body = {
            "event": "message",
            "session": "default",
            "payload": w.sim.webhook_payload("default", message_id),
        }
        raw = json.dumps(body).encode()
        sig = hmac.new(HMAC_KEY.encode(), raw, hashlib.sha512).hexdigest()
        headers = {"x-webhook-hmac": sig, "x-webhook-hmac-algorithm": "sha512"}
        return await client.post("/api/webhooks/waha", content=raw, headers=headers)
    data = w.sim.upsert_payload("default", message_id)
    body = {"event": "messages.upsert", "instance": "default", "data": data}
    bearer = {"authorization": f"Bearer {HMAC_KEY}"}
    raw = json.dumps(body).encode()
    return await client.post("/api/webhooks/evolution", content=raw, headers=bearer)


async def test_replay_reports_a_deep_file_and_replays_the_rest(db_url: str, tmp_path: Path) -> None:
    """`wasync replay` over a file nested 100,000 deep (RecursionError aborted the run with a
    traceback and no report), a file whose message is poisoned, and a good one: a report,
    the deep file rejected, the poisoned message quarantined and counted, the good stored."""
    async with world(db_url, "waha") as w:
        deep = tmp_path / "deep.json"
        deep.write_bytes(b"[" * 100_000 + b"]" * 100_000)
        files = []
        for n in (0, 17):  # a good message and the over-long id
            body = {
                "event": "message",
                "session": "default",
                "payload": w.sim.webhook_payload("default", w.ids[n]),
            }
            (path := tmp_path / f"m{n}.json").write_text(json.dumps(body))
            files.append(path)
        report = await replay_files(w.pipeline, w.registry, [deep, *files])
        assert (report.new, report.rejected) == (1, 2)
        assert str(deep) in report.errors[0] and "nested" in report.errors[0]
        assert any("304 characters" in e for e in report.errors)
        assert len(await w.quarantined()) == 1


async def test_a_command_the_store_refuses_is_a_refusal(db_url: str) -> None:
    """A change whose value no column takes (a lone surrogate: no encoder does) fails alone
    with StoreRefused (REST: 422), writes nothing, and the next change commits."""
    async with world(db_url, "waha") as w:
        sid = next(iter(w.registry)).id
        await w.pipeline.ingest([msg(sid, "C1", f"{phone(1)}@s.whatsapp.net")], source="poll")
        chat = int(await w.scalar("SELECT id FROM chats"))
        boss = Principal(tenant_id="acme", user_id="u1", role="ADMIN")
        bad = ChangeChat(actor=boss, chat_id=chat, field="assigned_user_id", value="\ud800")
        with pytest.raises(StoreRefused) as info:
            await w.pipeline.execute(bad, source="rest")
        assert info.value.status == 422 and "\ud800" not in str(info.value)
        good = ChangeChat(actor=boss, chat_id=chat, field="assigned_user_id", value="u2")
        assert (await w.pipeline.execute(good, source="rest")) is not None
        assert await w.scalar("SELECT assigned_user_id FROM chats") == "u2"
