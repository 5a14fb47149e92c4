"""The browser tests' harness: Debian's Chromium driven by Playwright, and the real daemon stack
(`wasync.daemon.run`) polling both simulators over loopback.

Nothing is downloaded at test time: Chromium is `/usr/bin/chromium` (or `WASYNC_CHROMIUM`),
launched by executable path with a fresh user-data dir; when it is missing the test fails
with the command that installs it (`.ci/run` does so on a clean machine). Each test saves a
screenshot under `tests/screenshots/` (git-ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect
from sqlalchemy import text

from wasync import daemon
from wasync.auth import Role, issue_token
from wasync.config import Settings, parse
from wasync.sim import EvolutionSim, WahaSim, serve

SECRET = "page-tests-jwt-secret-0123456789abcdef"
WAHA_KEY = "page-waha-key"
EVO_KEY = "page-evo-key"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
TIMEOUT_MS = 30_000  # generous: a shared 2-core machine; the figures are in bench_page.py


def chromium_path() -> str:
    """Debian's Chromium, or fail the test with how to install it (never skip silently)."""
    found = os.environ.get("WASYNC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail(
            f"Chromium not found at {found}: install Debian's package (`apt-get install -y "
            "chromium`; .ci/run does it) or set WASYNC_CHROMIUM to its path",
            pytrace=False,
        )
    return found


@contextlib.asynccontextmanager
async def chromium(tmp_path: Path, *, locale: str = "pt-BR") -> AsyncIterator[BrowserContext]:
    """One Chromium with a fresh profile; pages are tabs, each with its own sessionStorage."""
    executable = chromium_path()
    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / f"chromium-{locale}"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            locale=locale,
            viewport={"width": 1440, "height": 900},
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            await context.close()


@dataclass
class Stack:
    """The daemon (real composition, polling), both simulators, and ways to log in."""

    settings: Settings
    waha: WahaSim
    evo: EvolutionSim
    base_url: str = ""
    running: daemon.Daemon | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def d(self) -> daemon.Daemon:
        """The running daemon."""
        assert self.running is not None
        return self.running

    def token(self, user: str, role: Role = "ADMIN", ttl_s: float = 3600) -> str:
        """A JWT for a user of tenant `acme`."""
        return issue_token(SECRET, tenant_id="acme", user_id=user, role=role, ttl_s=ttl_s)

    def login_url(self, user: str, role: Role = "ADMIN", query: str = "") -> str:
        """`/atendimento[?query]#token=...`."""
        return f"{self.base_url}/atendimento{query}#token={self.token(user, role)}"

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        """Rows of raw SQL on the daemon's database."""
        async with self.d.store.read() as conn:
            return list(await conn.execute(text(sql), params))

    async def chat_id(self, phone: str) -> int:
        """The id of a phone's chat, once ingested."""
        rows = await wait_for(lambda: self.rows("SELECT id FROM chats WHERE phone = :p", p=phone))
        return int(rows[0][0])

    async def open_page(self, context: BrowserContext, user: str, role: Role = "ADMIN") -> Page:
        """A new tab logged in as `user`, its uncaught errors collected in `errors`."""
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{user}: {exc}"))
        await page.goto(self.login_url(user, role))
        await expect(page.get_by_role("status").filter(has_text="Conectado")).to_be_visible()
        return page


def stack_settings(db_url: str, waha_url: str, evo_url: str, **extra: Any) -> Settings:
    """Tenant `acme`: admin `boss`, agents `ana` and `bia`; a WAHA and an Evolution session."""
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "http": {"port": 0},
        "poll": {"interval_s": 0.2, "jitter_s": 0, "log_idle_cycles": False, "overlap_s": 30},
        "auth": {"jwt_secret": SECRET},
        "send": {"rate_per_minute": 6000, "burst": 20, "poll_interval_s": 0.2},
        "tenants": [
            {
                "id": "acme",
                "admins": ["boss"],
                "agents": ["ana", "bia"],
                "sessions": [
                    {"name": "loja", "provider": "waha", "base_url": waha_url, "api_key": WAHA_KEY},
                    {
                        "name": "vendas",
                        "provider": "evolution",
                        "base_url": evo_url,
                        "api_key": EVO_KEY,
                    },
                ],
            }
        ],
    }
    data.update(extra)
    return parse(data)


@contextlib.asynccontextmanager
async def stack(db_url: str) -> AsyncIterator[Stack]:
    """Both simulators on loopback and `wasync.daemon.run` on them, until the block ends."""
    waha, evo = WahaSim(api_key=WAHA_KEY, seed=11), EvolutionSim(api_key=EVO_KEY, seed=12)
    waha.add_session("loja", engine="WEBJS")
    evo.add_instance("vendas")
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        s = Stack(stack_settings(db_url, waha_url, evo_url), waha, evo)
        ready, stop = asyncio.Event(), asyncio.Event()

        def on_ready(d: daemon.Daemon) -> None:
            s.running, s.base_url = d, d.base_url
            ready.set()

        task = asyncio.create_task(daemon.run(s.settings, stop=stop, on_ready=on_ready))
        try:
            async with asyncio.timeout(30):
                done, _ = await asyncio.wait(
                    {task, asyncio.create_task(ready.wait())}, return_when="FIRST_COMPLETED"
                )
            if task in done:
                task.result()  # raises what stopped it
            yield s
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    assert not s.errors, f"uncaught errors in the page: {s.errors}"


async def wait_for(
    probe: Callable[[], Any], *, timeout_s: float = 45, every_s: float = 0.05
) -> Any:
    """Poll an async `probe` until it returns something truthy; that value."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = await probe()
            if value:
                return value
            await asyncio.sleep(every_s)


async def screenshot(page: Page, name: str) -> Path:
    """Save the page under tests/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


def shot_name(request: pytest.FixtureRequest) -> str:
    """A file-safe name for the running test (its parameters included)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in request.node.name)
