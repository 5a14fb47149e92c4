"""The attendance page in Chromium: a send the provider refuses shows its error and a retry that
sends once; the bell lists a new lead's notification and its link opens the chat; the page is
usable from the keyboard alone and every control has a name; a send stays one bubble whatever
order its POST's answer, its /ws frame and a resync reach the page in."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from playwright.async_api import APIResponse, BrowserContext, Page, Route, expect

from tests.browser import Stack, chromium, screenshot, shot_name, stack, wait_for
from tests.test_page_live import bubbles, chats
from wasync.sim.content import text as text_content

MARIA, JOAO = "5531988887777", "5511977776666"

# Every control the page shows, without an accessible name (a crude but strict reading of the
# accessible-name rules: aria-label, aria-labelledby, a <label>, the text, a title).
UNNAMED = """() => [...document.querySelectorAll(
    'button, input, textarea, select, a[href], [role=button], [tabindex]:not([tabindex="-1"])')]
  .filter((el) => el.offsetParent !== null || el.getClientRects().length)
  .filter((el) => !(el.getAttribute('aria-label') || '').trim()
    && !document.getElementById(el.getAttribute('aria-labelledby') || '-')
    && !(el.labels && [...el.labels].some((l) => l.textContent.trim()))
    && !(el.textContent || '').trim() && !(el.getAttribute('title') || '').trim()
    && !(el.type === 'file' && el.classList.contains('visually-hidden')))
  .map((el) => el.outerHTML.slice(0, 120))"""


async def test_a_refused_send_shows_the_error_and_its_retry_sends_once(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """While Evolution's number check answers 503 the send is refused before it is queued: the
    bubble shows the error and `Tentar novamente`; once Evolution answers again, the retry is
    one send (the same bubble, not a second one), bound to its queued row."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        s.evo.add_incoming("vendas", JOAO, text="Ainda tem o modelo azul?")
        await s.chat_id(JOAO)
        page = await s.open_page(browser, "boss")
        await chats(page).filter(has_text="Ainda tem o modelo azul?").click()
        await expect(bubbles(page)).to_have_count(1)

        refuse_number_checks(s)
        box = page.get_by_role("textbox", name="Mensagem")
        await box.fill("Tem sim!")
        await box.press("Enter")
        failed = page.locator(".bubble.out")
        await expect(failed).to_have_count(1)
        await expect(failed).to_contain_text("Falha no envio", timeout=30_000)
        retry = failed.get_by_role("button", name="Tentar novamente")
        await expect(retry).to_be_visible()
        assert not [r for r in s.evo.sends if r.status == 201]  # nothing went out

        s.evo.faults.rate = 0.0
        await retry.click()  # refused before it was queued: the same bubble, the same key
        await expect(failed).to_have_count(1)
        await expect(failed).to_contain_text("Tem sim!")
        await expect(failed).to_have_attribute("data-message-id", re.compile(r"^\d+$"))
        await expect(failed).to_have_attribute("data-status", "pending")  # Evolution's 201
        await expect(failed).not_to_contain_text("Falha no envio")

        async def delivered() -> list[str] | None:
            sent = [r.body["text"] for r in s.evo.sends if r.status == 201]
            return sent or None

        assert await wait_for(delivered) == ["Tem sim!"]  # sent once: never twice

        async def outbox() -> list[str] | None:
            # The simulator records the send as it answers; the row turns SENT when the
            # sender has read that answer and committed, a moment later.
            statuses = [r.status for r in await s.rows("SELECT status FROM outbox ORDER BY id")]
            return statuses if statuses and "SENDING" not in statuses else None

        assert await wait_for(outbox) == ["SENT"]
        assert [r.body["text"] for r in s.evo.sends if r.status == 201] == ["Tem sim!"]
        await screenshot(page, shot_name(request))


async def test_the_bell_lists_a_new_lead_and_its_link_opens_the_chat(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A new number writes while the admin's page is open: the bell's badge counts it live; the
    notification's link opens that chat in place and marks the notification read."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        page = await s.open_page(browser, "boss")
        bell = page.locator("#bell")
        s.waha.add_incoming("loja", MARIA, text="Quero falar com vendas", push_name="Maria")
        await expect(bell.locator(".badge")).to_have_text("1", timeout=30_000)
        await expect(bell).to_have_attribute("aria-label", "Notificações (1)")
        await bell.click()
        link = page.locator("#bell-panel a").first
        await expect(link).to_be_visible()
        await link.click()
        await expect(bubbles(page).filter(has_text="Quero falar com vendas")).to_be_visible()
        assert "chat=" not in page.url or page.url.startswith(s.base_url)  # opened in place
        await expect(bell.locator(".badge")).to_be_hidden()

        async def read() -> bool:
            rows = await s.rows("SELECT read_at FROM notifications WHERE user_id = 'boss'")
            return bool(rows) and all(r.read_at is not None for r in rows)

        assert await wait_for(read)
        await screenshot(page, shot_name(request))


async def test_the_keyboard_alone_opens_a_chat_and_sends(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Tab reaches the chat list item, Enter opens it, Tab reaches the composer, Enter sends;
    no visible control lacks an accessible name."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        s.waha.add_incoming("loja", MARIA, text="Vocês abrem domingo?", push_name="Maria")
        await s.chat_id(MARIA)
        page = await s.open_page(browser, "boss")
        item = chats(page).filter(has_text="Maria").get_by_role("button")
        await expect(item).to_be_visible()
        assert await page.evaluate(UNNAMED) == []

        await _tab_to(page, "Maria")
        await page.keyboard.press("Enter")
        await expect(bubbles(page).filter(has_text="Vocês abrem domingo?")).to_be_visible()
        await _tab_to(page, "Mensagem", attribute="aria-label")
        await page.keyboard.type("Abrimos sim, das 9h às 13h")
        await page.keyboard.press("Enter")
        await expect(page.locator(".bubble.out")).to_contain_text("Abrimos sim")

        async def sent() -> bool:
            return any(r.route == "sendText" and r.status == 201 for r in s.waha.sends)

        assert await wait_for(sent, timeout_s=30)
        assert await page.evaluate(UNNAMED) == []
        await screenshot(page, shot_name(request))


class HeldSend:
    """Holds the answer of the page's POST /api/chats/{id}/messages (the daemon has already
    handled the request) until `release()`, to put the /ws frame or a resync before it."""

    def __init__(self) -> None:
        self.answered: asyncio.Queue[APIResponse] = asyncio.Queue()
        self.released = asyncio.Event()

    async def install(self, page: Page) -> None:
        """Route the page's sends through `handle`."""
        await page.route(re.compile(r"/api/chats/\d+/messages$"), self.handle)

    async def handle(self, route: Route) -> None:
        """A GET (the history) goes through; a POST waits for `release()` once answered."""
        if route.request.method != "POST":
            await route.fallback()
            return
        response = await route.fetch()
        await self.answered.put(response)
        await self.released.wait()
        await route.fulfill(response=response)

    async def answer(self) -> APIResponse:
        """The daemon's answer to the held POST (the page has not seen it yet)."""
        async with asyncio.timeout(30):
            return await self.answered.get()

    def release(self) -> None:
        """Let the page read the answer."""
        self.released.set()


async def test_a_send_whose_frame_comes_before_its_answer_is_one_bubble_throughout(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The queued row's /ws frame is applied while the POST's answer is held back: the page
    shows the one queued bubble all along (never a second one for the row), and the answer
    binds it to the row."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        s.waha.add_incoming("loja", MARIA, text="Vocês abrem domingo?", push_name="Maria")
        await s.chat_id(MARIA)
        page = await s.open_page(browser, "boss")
        held = HeldSend()
        await held.install(page)
        await chats(page).filter(has_text="Maria").click()
        await expect(bubbles(page)).to_have_count(1)
        box = page.get_by_role("textbox", name="Mensagem")
        await box.fill("Abrimos sim, das 9h às 13h")
        await box.press("Enter")

        row_id = (await (await held.answer()).json())["messageId"]
        await page.wait_for_function(
            "(id) => wasyncPage.conversation.messages.has(id)", arg=row_id
        )  # the row's frame is applied (it renders in the same task)
        out = page.locator(".bubble.out")
        shown = await out.evaluate_all("(els) => els.map((e) => e.dataset.messageId)")
        assert shown == [""]  # one bubble, still ours (queued): the frame added no second one

        held.release()
        await expect(out).to_have_attribute("data-message-id", str(row_id))
        await expect(out).to_contain_text("Abrimos sim")
        assert await out.count() == 1
        await screenshot(page, shot_name(request))


async def test_an_older_message_with_the_same_text_still_shows_while_a_send_waits(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Only a row newer than the page's rows may be the waiting send's: an older message of
    ours with the same text ("Abrimos sim") stays on screen across a resync while the POST's
    answer is held back, and the answer then binds the new row to the queued bubble."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        an_hour_ago = int(time.time()) - 3600
        s.waha.add_incoming(
            "loja", MARIA, text="Vocês abrem domingo?", push_name="Maria", ts=an_hour_ago - 60
        )
        s.waha.add_message("loja", MARIA, text_content("Abrimos sim"), from_me=True, ts=an_hour_ago)
        await s.chat_id(MARIA)
        page = await s.open_page(browser, "boss")
        held = HeldSend()
        await held.install(page)
        await chats(page).filter(has_text="Abrimos sim").click()
        out = page.locator(".bubble.out")
        await expect(out).to_have_count(1)
        older = await out.get_attribute("data-message-id")
        assert older
        box = page.get_by_role("textbox", name="Mensagem")
        await box.fill("Abrimos sim")
        await box.press("Enter")

        row_id = (await (await held.answer()).json())["messageId"]
        await page.evaluate("wasyncPage.resync()")  # the history again, the new row in it
        await page.wait_for_function("(id) => wasyncPage.conversation.messages.has(id)", arg=row_id)
        shown = await out.evaluate_all("(els) => els.map((e) => e.dataset.messageId)")
        assert shown == [older, ""]  # the older one, and ours still queued: not the new row

        held.release()
        await expect(out.nth(1)).to_have_attribute("data-message-id", str(row_id))
        assert await out.evaluate_all("(els) => els.map((e) => e.dataset.messageId)") == [
            older,
            str(row_id),
        ]
        await screenshot(page, shot_name(request))


async def test_a_send_refused_across_a_resync_still_shows_its_error(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A resync reloads the conversation while the POST's answer is held back, and the answer
    is a refusal: the agent's message is still there, with the error and its retry, not gone."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        s.evo.add_incoming("vendas", JOAO, text="Ainda tem o modelo azul?")
        await s.chat_id(JOAO)
        page, held = await refused_and_held(s, browser, "Tem sim!")
        await page.evaluate("wasyncPage.resync()")  # what a `resync` frame runs; awaited
        held.release()
        failed = page.locator(".bubble.out")
        await expect(failed).to_contain_text("Falha no envio")
        await expect(failed).to_contain_text("Tem sim!")
        await expect(failed.get_by_role("button", name="Tentar novamente")).to_be_visible()
        assert await failed.count() == 1
        await screenshot(page, shot_name(request))


async def test_a_send_refused_while_another_chat_is_open_shows_when_its_chat_is_back(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The agent sends to João, opens Maria's chat before the answer comes, and the answer is
    a refusal: back in João's chat, the message is there with the error and its retry (it
    used to be gone, the refusal shown nowhere); the retry sends it once."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        s.evo.add_incoming("vendas", JOAO, text="Ainda tem o modelo azul?")
        s.waha.add_incoming("loja", MARIA, text="Vocês abrem domingo?", push_name="Maria")
        await s.chat_id(JOAO)
        await s.chat_id(MARIA)
        page, held = await refused_and_held(s, browser, "Tem sim!")

        await chats(page).filter(has_text="Vocês abrem domingo?").click()
        await expect(bubbles(page).filter(has_text="Vocês abrem domingo?")).to_be_visible()
        await expect(page.locator(".bubble.out")).to_have_count(0)  # not in Maria's chat
        async with page.expect_response(lambda r: r.request.method == "POST"):
            held.release()  # the refusal reaches the page while Maria's chat is open
        await expect(page.locator(".bubble.out")).to_have_count(0)

        await chats(page).filter(has_text="Ainda tem o modelo azul?").click()
        failed = page.locator(".bubble.out")
        await expect(failed).to_contain_text("Falha no envio")
        await expect(failed).to_contain_text("Tem sim!")
        assert await failed.count() == 1
        s.evo.faults.rate = 0.0
        await failed.get_by_role("button", name="Tentar novamente").click()

        async def sent() -> bool:
            return any(r.status == 201 for r in s.evo.sends)

        assert await wait_for(sent, timeout_s=30)
        await expect(failed).not_to_contain_text("Falha no envio")
        assert await failed.count() == 1
        assert len([r for r in s.evo.sends if r.status == 201]) == 1
        await screenshot(page, shot_name(request))


async def refused_and_held(s: Stack, browser: BrowserContext, text: str) -> tuple[Page, HeldSend]:
    """The page open on João's chat sends `text` while Evolution refuses number checks; the
    refusal (503) is answered and held back from the page."""
    page = await s.open_page(browser, "boss")
    held = HeldSend()
    await held.install(page)
    await chats(page).filter(has_text="Ainda tem o modelo azul?").click()
    await expect(bubbles(page)).to_have_count(1)
    refuse_number_checks(s)
    box = page.get_by_role("textbox", name="Mensagem")
    await box.fill(text)
    await box.press("Enter")
    assert (await held.answer()).status == 503
    return page, held


def refuse_number_checks(s: Stack) -> None:
    """Evolution's number check answers 503 from now on: a send to it is refused."""
    s.evo.faults.routes = frozenset({"chat.whatsappNumbers"})
    s.evo.faults.kinds = ("503",)
    s.evo.faults.rate = 1.0


async def _tab_to(page: Page, text: str, *, attribute: str | None = None) -> None:
    """Press Tab until the focused element shows `text` (or has it as `attribute`)."""
    probe = (
        f"() => (document.activeElement?.getAttribute({attribute!r}) || '')"
        if attribute
        else "() => document.activeElement?.textContent || ''"
    )
    for _ in range(60):
        await page.keyboard.press("Tab")
        if text in await page.evaluate(probe):
            return
    raise AssertionError(f"Tab never reached {text!r}")
