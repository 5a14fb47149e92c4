"""The attendance page survives a daemon restart: it reconnects to `/ws` with `since` and shows
what arrived meanwhile once each, without a reload (a real `python -m wasync run` subprocess,
restarted on the same port)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.browser import SECRET, chromium, screenshot, shot_name
from tests.daemon import start_daemon, stop_daemon
from tests.test_page_live import MARIA, bubbles, chats
from wasync.auth import issue_token
from wasync.sim import WahaSim, serve

WAHA_KEY = "restart-waha-key"
JOAO = "5511977776666"
LIVE_STATE = "({c: wasyncPage.live.connects, r: wasyncPage.live.resyncs})"


def free_port() -> int:
    """A loopback port nobody listens on now (the daemon is restarted on it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, db_url: str, waha_url: str, port: int) -> Path:
    """Polling only, fast; `[http] port` fixed so the page finds the daemon again."""
    path.write_text(
        f"""
[database]
url = "{db_url}"
[poll]
interval_s = 0.2
jitter_s = 0
log_idle_cycles = false
[http]
port = {port}
[auth]
jwt_secret = "{SECRET}"
[[tenants]]
id = "acme"
admins = ["boss"]
[[tenants.sessions]]
name = "loja"
provider = "waha"
base_url = "{waha_url}"
api_key = "{WAHA_KEY}"
"""
    )
    return path


class Daemon:
    """A `wasync run` subprocess, its log in a file (`tests.daemon.start_daemon`), restartable."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> str:
        """Start it; its base URL."""
        self.starts += 1
        log = self.config.with_name(f"{self.config.stem}-{self.starts}.log")
        self.proc, url = await start_daemon(self.config, log)
        return url

    async def stop(self) -> int:
        """SIGTERM; its exit code."""
        assert self.proc is not None
        return await stop_daemon(self.proc, 20)


async def test_the_page_shows_what_arrived_while_the_daemon_restarted(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Stopped with the page open, messages arrive at the provider; restarted on the same
    port, the daemon polls them in and the page, reconnected with `since`, shows each once."""
    sim = WahaSim(api_key=WAHA_KEY, seed=5)
    sim.add_session("loja", engine="WEBJS")
    async with serve(sim.app) as waha_url, chromium(tmp_path) as browser:
        config = write_config(tmp_path / "wasync.toml", db_url, waha_url, free_port())
        daemon = Daemon(config)
        base = await daemon.start()
        codes = []
        try:
            sim.add_incoming("loja", MARIA, text="Antes da queda", push_name="Maria")
            token = issue_token(SECRET, tenant_id="acme", user_id="boss", role="ADMIN", ttl_s=600)
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base}/atendimento#token={token}")
            await chats(page).filter(has_text="Maria").click()
            await expect(bubbles(page).filter(has_text="Antes da queda")).to_be_visible()
            # Opening the chat marked it read: its frame gives the page a place in the log.
            await expect(chats(page).filter(has_text="Maria").locator(".badge")).to_have_count(0)
            assert await page.evaluate("wasyncPage.live.lastId") is not None
            await page.evaluate("window.notReloaded = true")

            codes.append(await daemon.stop())
            await expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
            for text in ("Durante a queda 1", "Durante a queda 2"):
                sim.add_incoming("loja", MARIA, text=text, push_name="Maria")
            sim.add_incoming("loja", JOAO, text="Sou novo por aqui", push_name="João")
            assert await daemon.start() == base

            await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
            for text in ("Durante a queda 1", "Durante a queda 2"):
                await expect(bubbles(page).filter(has_text=text)).to_have_count(1)
            await expect(chats(page).filter(has_text="João")).to_have_count(1)
            sim.add_incoming("loja", MARIA, text="Depois da volta", push_name="Maria")
            await expect(bubbles(page).filter(has_text="Depois da volta")).to_have_count(1)
            await expect(bubbles(page)).to_have_count(4)
            assert await page.evaluate("window.notReloaded") is True
            live = await page.evaluate(
                "({c: wasyncPage.live.connects, r: wasyncPage.live.resyncs})"
            )
            assert live["c"] >= 2 and live["r"] == 0  # resumed with since, not reloaded
            await screenshot(page, shot_name(request))
        finally:
            codes.append(await daemon.stop())
    assert errors == []
    assert codes == [0, 0]
