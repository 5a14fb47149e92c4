"""The attendance page in Chromium, live: a customer's message reaches every open page without
reload; the agent's text and image replies are sent once each and follow their ticks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser import Stack, chromium, screenshot, shot_name, stack, wait_for
from wasync.sim import SentRequest

MARIA, JOAO = "5531988887777", "5511977776666"
# A 1x1 PNG, the image the agent attaches.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e221bc33"
    "0000000049454e44ae426082"
)
RECORD_STATES = """() => {
  window.statesSeen = [];
  const seen = (el) => {
    const last = window.statesSeen.filter((s) => s[0] === el).at(-1);
    if (!last || last[1] !== el.dataset.status) window.statesSeen.push([el, el.dataset.status]);
  };
  new MutationObserver(() => document.querySelectorAll(".bubble.out").forEach(seen)).observe(
    document.getElementById("messages"), {subtree: true, childList: true, attributes: true});
}"""
STATES = """() => {
  const byBubble = new Map();
  for (const [el, state] of window.statesSeen) {
    const key = el.querySelector(".body")?.textContent || el.dataset.type;
    if (!byBubble.has(key)) byBubble.set(key, []);
    byBubble.get(key).push(state);
  }
  return Object.fromEntries(byBubble);
}"""


def chats(page: Page) -> Locator:
    """The items of the left column."""
    return page.get_by_role("navigation", name="Conversas").locator("li")


def bubbles(page: Page) -> Locator:
    """The bubbles of the open chat."""
    return page.get_by_role("region", name="Conversa").locator(".bubble")


async def test_a_customer_message_reaches_every_open_page_live(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A new number writes: its chat goes to the top of both pages' lists with an unread badge;
    a message in the open chat shows as a bubble there; no reload; sound and tab title."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        s.waha.add_incoming("loja", MARIA, text="Bom dia, quero um orçamento", push_name="Maria")
        await s.chat_id(MARIA)
        first = await s.open_page(browser, "boss")
        second = await s.open_page(browser, "boss")
        await chats(first).filter(has_text="Maria").click()
        await expect(bubbles(first).filter(has_text="quero um orçamento")).to_be_visible()
        await first.evaluate("window.notReloaded = true")

        started = time.monotonic()
        s.evo.add_incoming("vendas", JOAO, text="Vocês entregam no sábado?")
        for page in (first, second):
            top = chats(page).first
            await expect(top).to_contain_text("Vocês entregam no sábado?")
            await expect(top.locator(".badge")).to_have_text("1")
        new_chat_s = time.monotonic() - started

        started = time.monotonic()
        s.waha.add_incoming("loja", MARIA, text="Pode ser para amanhã?", push_name="Maria")
        await expect(bubbles(first).filter(has_text="Pode ser para amanhã?")).to_have_count(1)
        maria = chats(second).filter(has_text="Maria")
        await expect(maria).to_contain_text("Pode ser para amanhã?")
        open_chat_s = time.monotonic() - started

        assert await first.evaluate("window.notReloaded") is True
        await expect(first).to_have_title("(2) Atendimento")  # one of João, one of Maria
        assert int(await first.evaluate("document.body.dataset.chimes")) >= 2
        await screenshot(first, shot_name(request))
        print(f"new chat in both lists {new_chat_s:.2f}s, bubble in open chat {open_chat_s:.2f}s")


async def test_text_and_image_replies_are_sent_once_and_follow_their_ticks(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Enter sends the text, Enviar the attached image: each shows at once as queued, the
    simulator receives exactly one send of each, and the bubbles turn read with its acks."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        s.waha.add_incoming("loja", MARIA, text="Tem foto do produto?", push_name="Maria")
        await s.chat_id(MARIA)
        page = await s.open_page(browser, "boss")
        await chats(page).filter(has_text="Maria").click()
        await expect(bubbles(page)).to_have_count(1)
        await page.evaluate(RECORD_STATES)

        box = page.get_by_role("textbox", name="Mensagem")
        await box.fill("Temos sim,")
        await box.press("Shift+Enter")
        await box.press_sequentially("segue a foto")
        await box.press("Enter")
        out = page.locator(".bubble.out")
        await _delivered_and_read(s, out.nth(0), "sendText")
        await page.get_by_label("Anexar arquivo").set_input_files(
            {"name": "produto.png", "mimeType": "image/png", "buffer": PNG}
        )
        await page.get_by_role("button", name="Enviar").click()
        await expect(out.nth(1).locator("img")).to_be_visible()  # our own upload, shown at once
        await _delivered_and_read(s, out.nth(1), "sendImage")

        await expect(out).to_have_count(2)
        text_send = next(r for r in s.waha.sends if r.route == "sendText")
        assert text_send.body["text"] == "Temos sim,\nsegue a foto"
        states = await page.evaluate(STATES)
        assert sorted(r.route for r in s.waha.sends) == ["sendImage", "sendText"]  # once each
        await screenshot(page, shot_name(request))
    print(f"tick states seen: {states}")
    assert len(states) == 2, states
    for seen in states.values():  # queued at once, then the ticks, ending read
        assert seen[0] == "queued" and seen[-1] == "read", states


async def _delivered_and_read(s: Stack, bubble: Locator, route: str) -> None:
    """Wait for the send to reach the simulator, then ack it delivered and read there (the
    poller sees the chat's newest message change) and wait for the bubble's ticks."""

    async def sent() -> SentRequest | None:
        return next((r for r in s.waha.sends if r.route == route and r.message_id), None)

    record = await wait_for(sent)
    assert record.message_id is not None
    s.waha.set_ack("loja", record.message_id, 2)
    await expect(bubble).to_have_attribute("data-status", "delivered")
    s.waha.set_ack("loja", record.message_id, 3)
    await expect(bubble).to_have_attribute("data-status", "read")
