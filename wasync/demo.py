"""`wasync demo`: the main job on the embedded default, with nothing to install.

Starts both provider simulators on loopback with two tenants (each a WAHA session and an
Evolution instance) holding a little history, keeps Portuguese conversations going, runs the
real daemon against them on a fresh SQLite file in a state directory, and prints each synced
message as it lands, until Ctrl-C (or `--duration`). It first prints ready login URLs of the
attendance page for an ADMIN and for a USER of the first tenant (a fresh JWT secret each run);
the USER is given two chats so that its page is not empty.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from sqlalchemy import text

from wasync import daemon
from wasync.api.web import login_url
from wasync.auth import issue_token
from wasync.config import Settings, parse
from wasync.eventlog import NEW_MESSAGE, PublishedEvent
from wasync.events import ChangeChat
from wasync.principal import Principal, Role
from wasync.sim import EvolutionSim, WahaSim, seed_evolution, seed_waha, serve
from wasync.store import Store

WAHA_KEY = "demo-waha-key"
EVO_KEY = "demo-evolution-key"
TENANTS = {  # tenant -> (WAHA session, engine, Evolution instance)
    "padaria": ("padaria", "WEBJS", "padaria-vendas"),
    "oficina": ("oficina", "GOWS", "oficina-pecas"),
}
DEMO_TENANT = "padaria"
DEMO_USER = "padaria-ana"  # a USER: sees only the chats assigned to her
LOGIN_TTL_S = 12 * 3600
LINES = (
    "Oi, bom dia! Vocês abrem no domingo?",
    "Qual o preço do pão de queijo?",
    "Pode entregar no centro hoje?",
    "Obrigado pelo atendimento 😊",
    "Meu carro está fazendo um barulho estranho",
    "Tem horário para revisão amanhã?",
    "Vou passar aí às 15h",
    "Aceitam Pix?",
    "Chegou a peça que encomendei?",
    "Quanto fica o orçamento completo?",
)


@dataclass(slots=True)
class Printer:
    """A pipeline subscriber that queues new-message events for printing (never blocks)."""

    queue: asyncio.Queue[PublishedEvent]

    def publish(self, events: Sequence[PublishedEvent]) -> None:
        """Queue the new messages of a committed batch."""
        for ev in events:
            if ev.type == NEW_MESSAGE and ev.message_id is not None:
                self.queue.put_nowait(ev)


async def run_demo(
    state_dir: Path, *, duration_s: float | None = None, console: Console | None = None
) -> int:
    """Run the demo; return how many messages were synced."""
    console = console or Console(soft_wrap=True)  # piped output keeps one line per message
    state_dir = _fresh(state_dir)
    waha, evo = WahaSim(api_key=WAHA_KEY, seed=1), EvolutionSim(api_key=EVO_KEY, seed=2)
    _seed(waha, evo)
    printer = Printer(asyncio.Queue())
    stop = asyncio.Event()
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        settings = _settings(state_dir, waha_url, evo_url)
        console.print(f"[bold]wasync demo[/]: WAHA sim {waha_url}, Evolution sim {evo_url}")
        console.print(f"database {settings.database.url} - Ctrl-C to stop")
        tasks = [
            asyncio.create_task(_chatter(waha, evo)),
            asyncio.create_task(_print(printer.queue, settings, console)),
        ]

        def ready(running: daemon.Daemon) -> None:
            console.print(
                f"daemon {running.base_url} (/healthz, /metrics, REST under /api, /ws)\n",
                markup=False,
            )
            _print_logins(running, console)
            tasks.append(asyncio.create_task(_give_chats(running, DEMO_TENANT, DEMO_USER)))
            if duration_s is not None:  # counted from here: start-up time varies with load
                asyncio.get_running_loop().call_later(duration_s, stop.set)

        try:
            await daemon.run(settings, stop=stop, subscribers=[printer], on_ready=ready)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return await _count(settings)


def _fresh(state_dir: Path) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in ("demo.db", "demo.db-wal", "demo.db-shm"):
        (state_dir / name).unlink(missing_ok=True)
    return state_dir


def _seed(waha: WahaSim, evo: EvolutionSim) -> None:
    now = time.time()
    for wname, engine, ename in TENANTS.values():
        waha.add_session(wname, engine=engine)
        evo.add_instance(ename)
        seed_waha(waha, wname, chats=4, messages_per_chat=6, now=now, span_s=3600, seed=wname)
        seed_evolution(evo, ename, chats=4, messages_per_chat=6, now=now, span_s=3600, seed=ename)


def _settings(state_dir: Path, waha_url: str, evo_url: str) -> Settings:
    tenants = [
        {
            "id": tenant,
            "admins": [f"{tenant}-admin"],
            "agents": [f"{tenant}-ana", f"{tenant}-bruno"],
            "sessions": [
                {"name": wname, "provider": "waha", "base_url": waha_url, "api_key": WAHA_KEY},
                {"name": ename, "provider": "evolution", "base_url": evo_url, "api_key": EVO_KEY},
            ],
        }
        for tenant, (wname, _engine, ename) in TENANTS.items()
    ]
    return parse(
        {
            "database": {"url": f"sqlite+aiosqlite:///{state_dir / 'demo.db'}"},
            "http": {"port": 0},
            "auth": {"jwt_secret": secrets.token_urlsafe(32)},
            "poll": {"interval_s": 1, "jitter_s": 0.2, "log_idle_cycles": False},
            "log_level": "WARNING",
            "tenants": tenants,
        }
    )


def _print_logins(d: daemon.Daemon, console: Console) -> None:
    """The attendance page's login URLs: the tenant's ADMIN, and one of its USERs."""
    secret = d.settings.auth.secret()
    logins: tuple[tuple[str, Role], ...] = ((f"{DEMO_TENANT}-admin", "ADMIN"), (DEMO_USER, "USER"))
    for user, role in logins:
        token = issue_token(
            secret, tenant_id=DEMO_TENANT, user_id=user, role=role, ttl_s=LOGIN_TTL_S
        )
        url = login_url(d.base_url, token)
        console.print(f"attendance page as {role} {user}: {url}", soft_wrap=True)  # one line
    console.print()


async def _give_chats(d: daemon.Daemon, tenant: str, user: str, *, count: int = 2) -> None:
    """Assign the tenant's first chats to `user` (as its admin would), once there are some."""
    admin = Principal(tenant_id=tenant, user_id=f"{tenant}-admin", role="ADMIN")
    sql = text("SELECT id FROM chats WHERE tenant_id = :t ORDER BY id LIMIT :n")
    for _ in range(120):
        async with d.store.read() as conn:
            ids = [r[0] for r in await conn.execute(sql, {"t": tenant, "n": count})]
        if len(ids) == count:
            for chat_id in ids:
                change = ChangeChat(
                    actor=admin, chat_id=chat_id, field="assigned_user_id", value=user
                )
                await d.pipeline.execute(change, source="demo")
            return
        await asyncio.sleep(0.5)


async def _chatter(waha: WahaSim, evo: EvolutionSim, *, seed: int = 3) -> None:
    """New customer messages every second or so; sometimes from a brand-new number."""
    rng = random.Random(seed)
    while True:
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        tenant = rng.choice(list(TENANTS))
        wname, _engine, ename = TENANTS[tenant]
        phone = (
            f"55319{rng.randint(80000000, 99999999)}"
            if rng.random() < 0.3
            else rng.choice(["5531988887777", "5511977776666", "553188885555"])
        )
        line = rng.choice(LINES)
        if rng.random() < 0.5:
            waha.add_incoming(wname, phone, text=line, push_name="Cliente")
        else:
            evo.add_incoming(ename, phone, text=line)


async def _print(
    queue: asyncio.Queue[PublishedEvent], settings: Settings, console: Console
) -> None:
    async with Store.from_config(settings.database) as store:
        while True:
            first = await queue.get()
            batch = [first]
            while not queue.empty():
                batch.append(queue.get_nowait())
            for row in await _messages(store, [e.message_id for e in batch if e.message_id]):
                console.print(_line(row))


async def _messages(store: Store, ids: list[int]) -> list[Any]:
    if not ids:
        return []
    sql = text(
        "SELECT m.id, c.tenant_id, s.name AS session, s.provider, c.phone, c.jid, c.kind,"
        " m.from_me, m.type, m.body, l.id AS lead_id FROM messages m"
        " JOIN chats c ON c.id = m.chat_id JOIN sessions s ON s.id = m.session_id"
        " LEFT JOIN leads l ON l.id = c.lead_id WHERE m.id IN ("
        + ",".join(str(int(i)) for i in ids)
        + ") ORDER BY m.sent_at"
    )
    async with store.read() as conn:
        return list(await conn.execute(sql))


def _line(row: Any) -> str:
    who = f"+{row.phone}" if row.phone else row.jid
    arrow = "→" if row.from_me else "←"
    body = escape(row.body if row.body else f"[{row.type}]")
    lead = f" [dim](lead #{row.lead_id})[/]" if row.lead_id else ""
    return (
        f"[cyan]{row.tenant_id}[/] [magenta]{row.provider}:{row.session}[/] "
        f"{arrow} {escape(who)}{lead}: {body}"
    )


async def _count(settings: Settings) -> int:
    async with Store.from_config(settings.database) as store, store.read() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one())


def default_state_dir() -> Path:
    """`./state/demo` next to where the command runs."""
    return Path.cwd() / "state" / "demo"


__all__ = ["default_state_dir", "run_demo"]
