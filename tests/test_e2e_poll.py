"""Polling end to end over loopback: `wasync run`'s daemon against both simulators.

2 tenants x (1 WAHA + 1 Evolution session) x 20 chats x 50 messages, with a mix of types,
groups, `@lid` chats and 12-digit Brazilian jids; WEBJS (chat list) and GOWS (`chatId=all`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from wasync import daemon
from wasync.config import Settings, parse
from wasync.phones import canonical_phone
from wasync.sim import EvolutionSim, WahaSim, seed_evolution, seed_waha, serve
from wasync.store import Store

WAHA_KEY = "waha-sim-key"
EVO_KEY = "evolution-sim-key"
SESSIONS = {  # tenant -> (WAHA session + engine, Evolution instance)
    "acme": ("acme-waha", "WEBJS", "acme-evo"),
    "globex": ("globex-waha", "GOWS", "globex-evo"),
}


@dataclass
class World:
    """Both simulators, served on loopback, with what they hold."""

    waha: WahaSim
    evo: EvolutionSim
    waha_url: str
    evo_url: str
    plans: dict[str, Any]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """Seeded simulators on real loopback ports."""
    now = time.time()
    waha, evo = WahaSim(api_key=WAHA_KEY, seed=1), EvolutionSim(api_key=EVO_KEY, seed=2)
    plans: dict[str, Any] = {}
    for wname, engine, ename in SESSIONS.values():
        waha.add_session(wname, engine=engine)
        evo.add_instance(ename)
        plans[wname] = seed_waha(waha, wname, now=now, span_s=20 * 3600, seed=wname)
        plans[ename] = seed_evolution(evo, ename, now=now, span_s=20 * 3600, seed=ename)
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        yield World(waha, evo, waha_url, evo_url, plans)


def settings_for(url: str, w: World, **poll: Any) -> Settings:
    """Two tenants, each with its WAHA session and Evolution instance."""
    tenants = [
        {
            "id": tenant,
            "admins": [f"{tenant}-admin"],
            "sessions": [
                {"name": wname, "provider": "waha", "base_url": w.waha_url, "api_key": WAHA_KEY},
                {"name": ename, "provider": "evolution", "base_url": w.evo_url, "api_key": EVO_KEY},
            ],
        }
        for tenant, (wname, _engine, ename) in SESSIONS.items()
    ]
    return parse(
        {
            "database": {"url": url},
            "http": {"port": 0},
            "poll": {
                "interval_s": 0.2,
                "jitter_s": 0,
                "backoff_s": 0.01,
                "log_idle_cycles": False,
                **poll,
            },
            "tenants": tenants,
        }
    )


async def run_until_synced(settings: Settings, *, timeout_s: float = 600) -> list[Any]:
    """Run the daemon until every poller had two clean idle cycles in a row; return stats."""
    ready: asyncio.Future[daemon.Daemon] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(settings, stop=stop, on_ready=ready.set_result))
    d = await asyncio.wait_for(ready, 120)
    idle: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    seen: dict[int, Any] = {}
    while time.monotonic() < deadline and not all(
        idle.get(i, 0) >= 2 for i in range(len(d.pollers))
    ):
        await asyncio.sleep(0.1)
        for i, p in enumerate(d.pollers):
            if p.last is not None and p.last is not seen.get(i):
                seen[i] = p.last
                clean = p.last.error is None and p.last.new == 0 and p.last.chats == 0
                idle[i] = idle.get(i, 0) + 1 if clean else 0
    stop.set()
    await asyncio.wait_for(task, 30)
    assert all(idle.get(i, 0) >= 2 for i in range(len(d.pollers))), "did not converge"
    return [p.last for p in d.pollers]


def truth(w: World) -> dict[str, set[str]]:
    """Bare provider ids of every message the simulators hold, per session name."""
    out: dict[str, set[str]] = {}
    for wname, _engine, ename in SESSIONS.values():
        out[wname] = {m["id"].split("_")[2] for m in w.waha.all_messages(wname)}
        out[ename] = {m["key"]["id"] for m in w.evo.all_messages(ename)}
    return out


async def stored(store: Store) -> dict[str, list[str]]:
    """Provider ids in `messages`, per session name (a list, to see duplicates)."""
    sql = (
        "SELECT s.name, m.provider_message_id"
        " FROM messages m JOIN sessions s ON s.id = m.session_id"
    )
    out: dict[str, list[str]] = {}
    async with store.read() as conn:
        for name, pmid in await conn.execute(text(sql)):
            out.setdefault(name, []).append(pmid)
    return out


async def assert_synced(url: str, w: World) -> None:
    """Every simulator message is in `messages` exactly once; one lead per phone."""
    async with Store(url) as store:
        rows = await stored(store)
        for name, ids in truth(w).items():
            assert len(rows.get(name, [])) == len(set(rows.get(name, []))), name
            assert set(rows.get(name, [])) == ids, name
        async with store.read() as conn:
            leads = (await conn.execute(text("SELECT tenant_id, phone FROM leads"))).all()
            direct = (
                "SELECT tenant_id, phone FROM chats WHERE kind = 'direct' AND phone IS NOT NULL"
            )
            chats = (await conn.execute(text(direct))).all()
    assert len(leads) == len(set(leads))
    assert set(leads) == set(chats)
    for tenant, (wname, _e, ename) in SESSIONS.items():
        phones = {
            canonical_phone(c.person.phone)
            for name in (wname, ename)
            for c in w.plans[name]
            if c.kind == "direct" and c.person is not None and "@" not in c.address
        }
        assert phones <= {p for t, p in leads if t == tenant}


async def test_poll_syncs_everything_once_and_restarts_cleanly(db_url: str, world: World):
    """After polling, every message is stored once, one lead per phone; a restart adds nothing."""
    settings = settings_for(db_url, world)
    await run_until_synced(settings)
    await assert_synced(db_url, world)
    async with Store(db_url) as store, store.read() as conn:
        before = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar()
    assert before == sum(len(v) for v in truth(world).values()) == 4 * 20 * 50
    await run_until_synced(settings)  # restart: same end state, nothing duplicated
    await assert_synced(db_url, world)


async def test_new_messages_arrive_on_the_next_cycle(db_url: str, world: World):
    """A message added while the daemon runs is stored by the following polls."""
    settings = settings_for(db_url, world)
    await run_until_synced(settings)
    world.waha.add_incoming("acme-waha", "5531988887777", text="Oi, tudo bem?")
    world.evo.add_incoming("globex-evo", "553188886666", text="Bom dia!")
    await run_until_synced(settings)
    await assert_synced(db_url, world)


async def test_thirty_percent_failures_reach_the_same_state(db_url: str, world: World):
    """With 30 % of provider requests failing (5xx, 429, timeouts, cut bodies) it converges."""
    for sim in (world.waha, world.evo):
        sim.faults.kinds = ("500", "502", "503", "429", "slow", "truncated")
        sim.faults.retry_after_s, sim.faults.slow_s = 1, 1.5
        sim.faults.rate = 0.3
    settings = settings_for(db_url, world, timeout_s=0.5, max_attempts=3)
    task = asyncio.create_task(run_until_synced(settings, timeout_s=600))
    await asyncio.sleep(20)  # under fire for a while, then let it settle
    for sim in (world.waha, world.evo):
        sim.faults.rate = 0.0
    await task
    assert sum(world.waha.faults.injected.values()) > 20
    await assert_synced(db_url, world)
