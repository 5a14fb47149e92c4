"""Webhook mode end to end: register with the simulators, deliveries land, polling reconciles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from wasync import daemon
from wasync.config import Settings, parse
from wasync.providers.evolution import EVOLUTION_EVENTS
from wasync.providers.waha import WAHA_EVENTS
from wasync.sim import EvolutionSim, WahaSim, serve
from wasync.store import Store
from wasync.webhooks import run_all

WAHA_KEY, EVO_KEY = "waha-sim-key", "evolution-sim-key"
HMAC = "hmac-secret-of-at-least-32-bytes-long"
JWT_KEY = "jwt-secret-of-at-least-32-bytes-long!"


def settings_for(url: str, waha_url: str, evo_url: str, **webhook: Any) -> Settings:
    """One tenant, a WAHA session and an Evolution instance, webhooks on."""
    return parse(
        {
            "database": {"url": url},
            "http": {"port": 0},
            "webhook": {"enabled": True, **webhook},
            "poll": {"reconcile_interval_s": 0.3, "jitter_s": 0, "log_idle_cycles": False},
            "tenants": [
                {
                    "id": "acme",
                    "admins": ["u1"],
                    "sessions": [
                        {
                            "name": "default",
                            "provider": "waha",
                            "base_url": waha_url,
                            "api_key": WAHA_KEY,
                            "webhook_secret": HMAC,
                        },
                        {
                            "name": "vendas",
                            "provider": "evolution",
                            "base_url": evo_url,
                            "api_key": EVO_KEY,
                            "webhook_secret": JWT_KEY,
                        },
                    ],
                }
            ],
        }
    )


@pytest.fixture
async def sims() -> AsyncIterator[tuple[WahaSim, EvolutionSim, str, str]]:
    """Both simulators on loopback, each with one empty session, able to deliver webhooks."""
    async with httpx.AsyncClient() as client:
        waha = WahaSim(api_key=WAHA_KEY, http=client)
        evo = EvolutionSim(api_key=EVO_KEY, http=client, webhook_delay_s=0)
        waha.add_session("default", engine="WEBJS")
        evo.add_instance("vendas")
        async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
            yield waha, evo, waha_url, evo_url


async def test_register_is_idempotent_and_status_shows_it(sims: Any, tmp_path: Any):
    """Register merges our webhook (WAHA: one restart), a second register changes nothing."""
    waha, _evo, waha_url, evo_url = sims
    waha.session("default").config["webhooks"] = [
        {"url": "https://other.example/hook", "events": ["message"]}
    ]
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path}/w.db", waha_url, evo_url)
    first = await run_all(settings, public_url="https://crm.example")
    second = await run_all(settings, public_url="https://crm.example")
    assert [s.changed for s in first] == [True, True]  # type: ignore[union-attr]
    assert [s.changed for s in second] == [False, False]  # type: ignore[union-attr]
    hooks = waha.session("default").config["webhooks"]
    assert [h["url"] for h in hooks] == [
        "https://other.example/hook",
        "https://crm.example/api/webhooks/waha?tenant=acme",
    ]
    assert hooks[1]["hmac"] == {"key": HMAC} and hooks[1]["events"] == WAHA_EVENTS
    assert waha.session("default").config["webjs"] == {"tagsEventsOn": True}  # WEBJS acks
    assert waha.session("default").restarts == 1
    status = await run_all(settings, public_url=None)
    assert status[1].url == "https://crm.example/api/webhooks/evolution?tenant=acme"  # type: ignore[union-attr]
    assert status[1].signed and sorted(status[1].events) == sorted(EVOLUTION_EVENTS)  # type: ignore[union-attr]


async def test_register_turns_on_webjs_ack_events(sims: Any, tmp_path: Any):
    """WEBJS sends no message.ack without `config.webjs.tagsEventsOn` (waha#1311): a webhook
    that is ours but lacks it is set again; other engines' configs get no `webjs` key."""
    waha, _evo, waha_url, evo_url = sims
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path}/w.db", waha_url, evo_url)
    await run_all(settings, public_url="https://crm.example")
    session = waha.session("default")
    session.config["webjs"] = {"tagsEventsOn": False}
    again = await run_all(settings, public_url="https://crm.example")
    assert again[0].changed and "tagsEventsOn" in again[0].note  # type: ignore[union-attr]
    assert session.config["webjs"] == {"tagsEventsOn": True} and session.restarts == 2
    session.engine = "NOWEB"
    session.config.pop("webjs")
    session.config["webhooks"] = []
    await run_all(settings, public_url="https://crm.example")
    assert "webjs" not in session.config and session.config["webhooks"]


async def test_register_on_a_waha_before_group_ack_events(sims: Any, tmp_path: Any):
    """WAHA before 2025.12.2 has no `message.ack.group` and refuses a config naming it
    (400): register subscribes without it, once (a second register changes nothing)."""
    waha, _evo, waha_url, evo_url = sims
    waha.version = "2025.11.1"
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path}/w.db", waha_url, evo_url)
    first = await run_all(settings, public_url="https://crm.example")
    second = await run_all(settings, public_url="https://crm.example")
    assert first[0].changed and "message.ack.group" in first[0].note  # type: ignore[union-attr]
    assert not second[0].changed  # type: ignore[union-attr]
    (hook,) = waha.session("default").config["webhooks"]
    assert "message.ack" in hook["events"] and "message.ack.group" not in hook["events"]
    assert waha.session("default").restarts == 1


async def test_register_on_a_waha_before_edit_events(sims: Any, tmp_path: Any):
    """WAHA before 2025.6.3 knows neither `message.edited` nor `message.ack.group` and answers
    class-validator's 400 for each: register steps down to the events it knows, restarts the
    session once, says what it left out, and a second register changes nothing."""
    waha, _evo, waha_url, evo_url = sims
    waha.version = "2025.5.4"
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path}/w.db", waha_url, evo_url)
    first = await run_all(settings, public_url="https://crm.example")
    second = await run_all(settings, public_url="https://crm.example")
    state = first[0]
    assert state.changed and "message.ack.group, message.edited: left out" in state.note  # type: ignore[union-attr]
    assert not second[0].changed  # type: ignore[union-attr]
    assert second[0].events == state.events  # type: ignore[union-attr]
    (hook,) = waha.session("default").config["webhooks"]
    assert hook["events"] == state.events  # type: ignore[union-attr]
    assert {"message.any", "message.ack", "message.revoked"} <= set(hook["events"])
    assert not {"message.ack.group", "message.edited"} & set(hook["events"])
    assert waha.session("default").restarts == 1

    waha.version = "2026.2.1"  # upgraded: register subscribes to what it left out
    upgraded = await run_all(settings, public_url="https://crm.example")
    assert upgraded[0].changed  # type: ignore[union-attr]
    (hook,) = waha.session("default").config["webhooks"]
    assert {"message.ack.group", "message.edited"} <= set(hook["events"])
    assert waha.session("default").restarts == 2


async def test_register_does_not_work_around_another_hooks_refusal(sims: Any, tmp_path: Any):
    """A 400 about another webhook of the session (a user's, naming an event this WAHA lacks)
    is that hook's problem: register says so and steps down nothing."""
    waha, _evo, waha_url, evo_url = sims
    waha.version = "2025.11.1"
    theirs = {"url": "https://other.example/hook", "events": ["message.ack.group"]}
    waha.session("default").config["webhooks"] = [theirs]
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path}/w.db", waha_url, evo_url)
    before = waha.requests_total
    line = (await run_all(settings, public_url="https://crm.example"))[0]
    assert isinstance(line, str) and "config.webhooks.0.each value in events" in line
    assert waha.requests_total - before == 2  # its GET and one PUT: no step-down PUTs
    assert waha.session("default").config["webhooks"] == [theirs]
    assert waha.session("default").restarts == 0


async def test_register_turns_off_by_events_and_base64(sims: Any, tmp_path: Any):
    """An Evolution webhook with our URL but `byEvents` (which appends /<event> to the URL) or
    `base64` on is set again with both off."""
    _waha, evo, waha_url, evo_url = sims
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path}/w.db", waha_url, evo_url)
    await run_all(settings, public_url="https://crm.example")
    evo.instance("vendas").webhook.update(webhookByEvents=True, webhookBase64=True)
    again = await run_all(settings, public_url="https://crm.example")
    assert [s.changed for s in again] == [False, True]  # type: ignore[union-attr]
    hook = evo.instance("vendas").webhook
    assert (hook["webhookByEvents"], hook["webhookBase64"]) == (False, False)


def reconciled(d: daemon.Daemon) -> float:
    """The value of wasync_reconciled_messages_total."""
    return d.metrics.registry.get_sample_value("wasync_reconciled_messages_total") or 0.0


async def wait_for(store: Store, sql: str, expected: int, timeout_s: float = 60) -> int:
    """Poll the database until `sql` returns `expected` (or time out); return the last value."""
    deadline = time.monotonic() + timeout_s
    value = -1
    while time.monotonic() < deadline:
        async with store.read() as conn:
            value = int((await conn.execute(text(sql))).scalar_one())
        if value == expected:
            return value
        await asyncio.sleep(0.1)
    return value


async def first_cycle(d: daemon.Daemon) -> None:
    """Until the first session's first poll cycle (started at once) has run: 2 min at most."""
    for _ in range(2400):
        if d.pollers[0].last is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the first poll cycle did not run")


async def test_deliveries_land_and_polling_reconciles_what_was_lost(db_url: str, sims: Any):
    """Signed deliveries are stored once; a message whose webhook was lost is stored by the
    reconciling poll and counted in wasync_reconciled_messages_total.

    The reconciling polls are run by the test, one cycle at a time (the schedule's interval is
    an hour, and the one cycle it starts at once is waited for): whether a poll sees a message
    before its webhook lands must not depend on the machine's speed."""
    waha, evo, waha_url, evo_url = sims
    settings = settings_for(db_url, waha_url, evo_url)
    poll = settings.poll.model_copy(update={"reconcile_interval_s": 3600})
    settings = settings.model_copy(update={"poll": poll})
    ready: asyncio.Future[daemon.Daemon] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(settings, stop=stop, on_ready=ready.set_result))
    d = await asyncio.wait_for(ready, 120)
    try:
        await first_cycle(d)
        await run_all(settings, public_url=d.base_url)
        sent = waha.add_incoming("default", "5531988887777", text="pelo webhook")
        deliveries = await waha.deliver_message("default", sent, event="message.any")
        assert [x.status for x in deliveries] == [200]
        key = evo.add_incoming("vendas", "553188886666", text="pelo webhook também")
        delivery = await evo.deliver_message("vendas", key)
        assert delivery is not None and delivery.status == 200
        assert await wait_for(d.store, "SELECT count(*) FROM messages", 2) == 2
        for _ in range(2):  # several reconcile polls see both again
            for poller in d.pollers:
                await poller.cycle()
        assert reconciled(d) == 0
        evo.add_incoming("vendas", "553188886666", text="este webhook se perdeu")
        for poller in d.pollers:
            await poller.cycle()
        assert await wait_for(d.store, "SELECT count(*) FROM messages", 3) == 3
        assert reconciled(d) == 1
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{d.base_url}/metrics")).text
        assert "wasync_reconciled_messages_total 1.0" in metrics
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
