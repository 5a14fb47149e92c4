"""`wasync sim`'s world: both simulators on fixed loopback ports, one tenant with a WAHA session
and an Evolution instance holding a little history, live traffic, and the config that points
`wasync run` at them (secrets included).

`Playground` is the async context manager that serves the simulators and runs the traffic;
`config_text` is the TOML a newcomer runs the real daemon with. The ports are fixed (WAHA's
3000, the 8081 of `config.example.toml`, the daemon's 8080) so that the written config stays
right across restarts of `wasync sim`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from wasync.sim.base import serve
from wasync.sim.evolution import EvolutionSim
from wasync.sim.live import Stage, Traffic, run_traffic
from wasync.sim.seed import seed_evolution, seed_waha
from wasync.sim.waha import WahaSim

TENANT = "loja"
ADMIN = "admin"
WAHA_SESSION = "loja-waha"
EVO_INSTANCE = "loja-evolution"
MARKER = "# Written by `wasync sim`"


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """Where the simulators listen, what they hold, and the secrets the config carries."""

    host: str = "127.0.0.1"
    waha_port: int = 3000
    evolution_port: int = 8081
    engine: str = "WEBJS"
    chats: int = 6
    messages_per_chat: int = 8
    seed: int = 1
    keys: dict[str, str] = field(default_factory=lambda: new_secrets())


def new_secrets() -> dict[str, str]:
    """Fresh API keys, webhook secrets and the JWT secret (each run of `wasync sim`)."""
    names = ("waha_key", "evolution_key", "waha_hmac", "evolution_jwt", "jwt_secret")
    return {name: secrets.token_urlsafe(24) for name in names}


class Playground:
    """Both simulators served on `world`'s ports, seeded, with `traffic` running."""

    def __init__(self, world: World, traffic: Traffic, note: Callable[[str], None]) -> None:
        self.world, self.traffic, self.note = world, traffic, note
        keys = world.keys
        self.waha = WahaSim(api_key=keys["waha_key"], seed=world.seed)
        self.evo = EvolutionSim(api_key=keys["evolution_key"], seed=world.seed + 1)
        self.waha_url = self.evolution_url = ""
        self._stack = AsyncExitStack()
        self.customers = self._seed()

    def _seed(self) -> list[str]:
        """A few hours of history in both; the phones of its direct chats (who writes again)."""
        now, world = time.time(), self.world
        size = {"chats": world.chats, "messages_per_chat": world.messages_per_chat}
        self.waha.add_session(WAHA_SESSION, engine=world.engine)
        self.evo.add_instance(EVO_INSTANCE)
        plans = seed_waha(
            self.waha, WAHA_SESSION, now=now, span_s=6 * 3600, seed=world.seed, **size
        ) + seed_evolution(
            self.evo, EVO_INSTANCE, now=now, span_s=6 * 3600, seed=world.seed, **size
        )
        return [c.person.phone for c in plans if c.kind == "direct" and c.person is not None]

    async def __aenter__(self) -> Self:
        stack, world = self._stack, self.world
        await stack.__aenter__()
        try:
            self.waha_url = await stack.enter_async_context(
                serve(self.waha.app, host=world.host, port=world.waha_port)
            )
            self.evolution_url = await stack.enter_async_context(
                serve(self.evo.app, host=world.host, port=world.evolution_port)
            )
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            stage = Stage(
                waha=self.waha,
                evo=self.evo,
                session=WAHA_SESSION,
                instance=EVO_INSTANCE,
                customers=list(self.customers),
                rng=random.Random(world.seed),
            )
            task = asyncio.create_task(run_traffic(stage, self.traffic, self.note, http))
            stack.push_async_callback(_cancel, task)
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(et, e, tb)

    def summary(self) -> str:
        """One line: what is served where."""
        return (
            f"WAHA {self.waha_url} (session {WAHA_SESSION}, {self.world.engine}), "
            f"Evolution {self.evolution_url} (instance {EVO_INSTANCE})"
        )

    def config_text(self, *, db_path: Path, public_url: str, port: int, webhooks: bool) -> str:
        """The TOML for `wasync run`: these simulators, one tenant, secrets included."""
        keys, q = self.world.keys, json.dumps
        return "\n".join(
            [
                f"{MARKER} on {time.strftime('%Y-%m-%d %H:%M:%S')}: `wasync run --config` it.",
                "# It holds secrets (mode 0600); `wasync sim --write-config` rewrites it.",
                "",
                "[database]",
                f"url = {q(f'sqlite+aiosqlite:///{db_path}')}",
                "",
                "[poll]",
                "interval_s = 2  # polling mode: how soon a message shows up",
                "reconcile_interval_s = 15  # webhook mode: polling repairs lost webhooks",
                "jitter_s = 0.2",
                "",
                "[http]",
                f"host = {q(self.world.host)}",
                f"port = {port}",
                "",
                "[webhook]",
                f"enabled = {'true' if webhooks else 'false'}",
                f"public_url = {q(public_url)}",
                "",
                "[auth]",
                f"jwt_secret = {q(keys['jwt_secret'])}",
                "",
                "[[tenants]]",
                f"id = {q(TENANT)}",
                'name = "Loja (simulated)"',
                f"admins = [{q(ADMIN)}]",
                "",
                "[[tenants.sessions]]",
                f"name = {q(WAHA_SESSION)}",
                'provider = "waha"',
                f"base_url = {q(self.waha_url)}",
                f"api_key = {q(keys['waha_key'])}",
                f"webhook_secret = {q(keys['waha_hmac'])}",
                "",
                "[[tenants.sessions]]",
                f"name = {q(EVO_INSTANCE)}",
                'provider = "evolution"',
                f"base_url = {q(self.evolution_url)}",
                f"api_key = {q(keys['evolution_key'])}",
                f"webhook_secret = {q(keys['evolution_jwt'])}",
                "",
            ]
        )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


__all__ = ["ADMIN", "EVO_INSTANCE", "MARKER", "TENANT", "WAHA_SESSION", "Playground", "World"]
