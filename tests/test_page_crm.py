"""The attendance page's CRM actions in Chromium: assign, transfer, close, reopen, mark read and
a lead edit reach the database and every other open page live; a USER's page never shows a
chat that is not assigned to it, before or after a transfer away."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from tests.browser import Stack, chromium, screenshot, shot_name, stack, wait_for
from tests.test_page_live import bubbles, chats

MARIA, JOAO, RITA = "5531988887777", "5511977776666", "5521966665555"
RECORD_CHATS = """() => {
  window.chatsSeen = new Set();
  const list = document.querySelector("nav[aria-label] ul");
  const note = () =>
    list.querySelectorAll("li").forEach((li) => window.chatsSeen.add(li.dataset.chatId));
  note();
  new MutationObserver(note).observe(list, {childList: true, subtree: true});
}"""


async def chat_value(s: Stack, chat_id: int, column: str) -> object:
    """One column of a chat row, read from the database."""
    rows = await s.rows(f"SELECT {column} FROM chats WHERE id = :id", id=chat_id)
    return rows[0][0]


async def lead_of(s: Stack, chat_id: int) -> tuple[object, ...]:
    """The first name and status of a chat's lead."""
    rows = await s.rows(
        "SELECT l.first_name, l.status FROM leads l JOIN chats c ON c.lead_id = l.id"
        " WHERE c.id = :id",
        id=chat_id,
    )
    return tuple(rows[0])


async def test_crm_actions_reach_the_database_and_every_open_page(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two ADMIN pages on one chat: what one does (assign to me, transfer, close, reopen, lead
    name and status, mark read) is in the database and on the other page without reload."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        s.waha.add_incoming("loja", MARIA, text="Quero falar com um atendente", push_name="Maria")
        chat = await s.chat_id(MARIA)
        acting, watching = await s.open_page(browser, "boss"), await s.open_page(browser, "chefe")
        for page in (acting, watching):
            await chats(page).filter(has_text="Maria").click()
        lead = acting.get_by_role("complementary", name="Lead")
        other = watching.get_by_role("complementary", name="Lead")

        await lead.get_by_role("button", name="Atribuir a mim").click()
        await expect(other.locator(".chat-assignee")).to_have_text("Atribuída a boss")
        assert await chat_value(s, chat, "assigned_user_id") == "boss"

        await lead.get_by_label("Transferir para").select_option("ana")
        await lead.get_by_role("button", name="Transferir").click()
        await expect(other.locator(".chat-assignee")).to_have_text("Atribuída a ana")
        assert await chat_value(s, chat, "assigned_user_id") == "ana"

        await lead.get_by_role("button", name="Encerrar conversa").click()
        await expect(other.locator(".chat-status")).to_have_text("Encerrada")
        assert await chat_value(s, chat, "status") == "CLOSED"
        await expect(chats(watching).filter(has_text="Maria")).to_have_count(0)  # "Abertas"

        await lead.get_by_role("button", name="Reabrir conversa").click()
        await expect(other.locator(".chat-status")).to_have_text("Aberta")
        assert await chat_value(s, chat, "status") == "OPEN"
        await expect(chats(watching).filter(has_text="Maria")).to_have_count(1)

        await lead.get_by_label("Nome", exact=True).fill("Maria")
        await lead.get_by_label("Sobrenome").fill("Souza")
        await lead.get_by_label("Status do lead").select_option("QUALIFIED")
        await lead.get_by_role("button", name="Salvar lead").click()
        await expect(other.get_by_label("Status do lead")).to_have_value("QUALIFIED")
        await expect(other.get_by_label("Sobrenome")).to_have_value("Souza")
        assert await lead_of(s, chat) == ("Maria", "QUALIFIED")
        await expect(chats(watching).first).to_contain_text("Maria Souza")

        s.waha.add_incoming("loja", MARIA, text="Ainda está aí?", push_name="Maria")
        await expect(bubbles(watching).filter(has_text="Ainda está aí?")).to_be_visible()
        await expect(chats(watching).first.locator(".badge")).to_have_text("1")
        await lead.get_by_role("button", name="Marcar como lida").click()
        await expect(chats(watching).first.locator(".badge")).to_have_count(0)
        assert await chat_value(s, chat, "unread_count") == 0
        await screenshot(acting, shot_name(request))


async def test_a_user_page_never_shows_a_chat_not_assigned_to_it(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """USER ana sees her chat only, never the unassigned one or bia's, though all three get
    messages; transferred away from her, the chat leaves her list and her open conversation."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        for phone, name in ((MARIA, "Maria"), (JOAO, "João"), (RITA, "Rita")):
            s.waha.add_incoming("loja", phone, text=f"Olá, aqui é {name}", push_name=name)
        ids = {phone: await s.chat_id(phone) for phone in (MARIA, JOAO, RITA)}
        async with httpx.AsyncClient(base_url=s.base_url) as http:
            await assign(http, s, ids[MARIA], "ana")
            await assign(http, s, ids[RITA], "bia")
            ana = await s.open_page(browser, "ana", "USER")
            await ana.evaluate(RECORD_CHATS)
            await expect(chats(ana)).to_have_count(1)
            await chats(ana).first.click()
            await expect(ana.get_by_role("button", name="Atribuir a mim")).to_have_count(0)
            # Opening the chat marks it read; wait for that to land, or (on a busy machine)
            # it lands after the next message and zeroes that one's count too.
            await wait_for(lambda: _read(s, ids[MARIA]))
            for phone in (MARIA, JOAO, RITA):
                s.waha.add_incoming("loja", phone, text=f"Novidades de {phone}")
            await expect(bubbles(ana).filter(has_text=f"Novidades de {MARIA}")).to_be_visible()
            await wait_for(lambda: _unread(s, ids[RITA]))
            await screenshot(ana, shot_name(request) + "-before")

            await assign(http, s, ids[MARIA], "bia")
            await expect(chats(ana)).to_have_count(0)
            await expect(ana.get_by_text("Esta conversa não está mais com você.")).to_be_visible()
            s.waha.add_incoming("loja", MARIA, text="Depois da transferência")
            await wait_for(lambda: _unread(s, ids[MARIA], 2))
            await expect(chats(ana)).to_have_count(0)
            await screenshot(ana, shot_name(request))
        seen = await ana.evaluate("[...window.chatsSeen]")
        content = await ana.content()
    assert seen == [str(ids[MARIA])]
    for text in ("João", "Rita", "Depois da transferência", f"Novidades de {JOAO}"):
        assert text not in content


async def assign(http: httpx.AsyncClient, s: Stack, chat_id: int, user: str) -> None:
    """An ADMIN assigns a chat over REST."""
    headers = {"Authorization": f"Bearer {s.token('boss')}"}
    resp = await http.post(f"/api/chats/{chat_id}/assign", json={"userId": user}, headers=headers)
    assert resp.status_code == 200, resp.text


async def _unread(s: Stack, chat_id: int, at_least: int = 1) -> bool:
    return int(str(await chat_value(s, chat_id, "unread_count"))) >= at_least


async def _read(s: Stack, chat_id: int) -> bool:
    return int(str(await chat_value(s, chat_id, "unread_count"))) == 0
