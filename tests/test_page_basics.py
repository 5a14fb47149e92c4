"""The attendance page in Chromium: login (form, `#token=`, expiry), English when the browser
asks, how bubbles show history (days, edits, deletes, reactions, quotes, media, older pages),
and the login URLs `wasync demo` and `wasync token --url` print."""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect
from typer.testing import CliRunner

from tests.browser import SECRET, chromium, screenshot, shot_name, stack
from tests.factories import msg
from tests.test_page_live import JOAO, MARIA, bubbles, chats
from wasync.auth import verify_token
from wasync.cli import app as cli_app
from wasync.events import Edit, Media, MessageType, Reaction, Revoke
from wasync.phones import address

JID = f"{MARIA}@c.us"


async def login_form(page: Page, error: str | None = None) -> None:
    """The login form is shown (with `error`, when given)."""
    await expect(page.get_by_role("textbox", name="Token")).to_be_visible()
    await expect(page.get_by_role("button", name="Entrar")).to_be_visible()
    if error is not None:
        await expect(page.get_by_role("alert")).to_contain_text(error)


async def test_login_by_form_or_fragment_and_back_to_the_form_when_expired(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`/` leads to the page; the form logs in and the tab keeps the token; `#token=` leaves
    the address bar; an expired token, at load or while open, returns to the form."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        async with httpx.AsyncClient(base_url=s.base_url) as http:
            home = await http.get("/?chat=3")
            page_resp = await http.get("/atendimento")
            script = await http.get("/atendimento/main.js")
        assert (home.status_code, home.headers["location"]) == (302, "/atendimento?chat=3")
        assert "script-src 'self'" in page_resp.headers["content-security-policy"]
        assert script.headers["content-type"].startswith(("text/javascript", "application/js"))

        page = await browser.new_page()
        await page.goto(f"{s.base_url}/atendimento")
        await login_form(page)
        await page.get_by_role("textbox", name="Token").fill(s.token("boss"))
        await page.get_by_role("button", name="Entrar").click()
        await expect(page.get_by_role("status").filter(has_text="Conectado")).to_be_visible()
        await page.reload()
        await expect(page.get_by_role("status").filter(has_text="Conectado")).to_be_visible()

        await page.goto(s.login_url("boss"))
        await expect(page.get_by_role("navigation", name="Conversas")).to_be_visible()
        assert "#token" not in page.url
        await page.get_by_role("button", name="Sair").click()
        await login_form(page)

        stale = s.token("boss", ttl_s=-60)
        await page.goto(f"{s.base_url}/atendimento#token={stale}")
        await login_form(page, "Sua sessão expirou")
        await page.goto(f"{s.base_url}/atendimento#token=not-a-jwt")
        await login_form(page, "Token inválido")
        short = s.token("boss", ttl_s=3)
        await page.goto(f"{s.base_url}/atendimento#token={short}")
        await expect(page.get_by_role("navigation", name="Conversas")).to_be_visible()
        await login_form(page, "Sua sessão expirou")  # the token ran out while the page was open
        await screenshot(page, shot_name(request))


async def test_english_when_the_browser_asks(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A browser preferring English gets English labels on the form and the three columns."""
    async with stack(db_url) as s, chromium(tmp_path, locale="en-US") as browser:
        s.waha.add_incoming("loja", MARIA, text="Hello there", push_name="Maria")
        await s.chat_id(MARIA)
        page = await browser.new_page()
        await page.goto(f"{s.base_url}/atendimento")
        await page.get_by_role("textbox", name="Token").fill(s.token("boss"))
        await page.get_by_role("button", name="Sign in").click()
        conversations = page.get_by_role("navigation", name="Conversations")
        await conversations.get_by_role("button").filter(has_text="Maria").click()
        await expect(page.get_by_role("region", name="Conversation")).to_contain_text("Hello")
        await expect(page.get_by_role("complementary", name="Lead")).to_contain_text("Actions")
        await expect(page.get_by_role("textbox", name="Message")).to_be_enabled()
        await expect(page.get_by_role("button", name="Send")).to_be_enabled()
        assert await page.evaluate("document.documentElement.lang") == "en"
        await screenshot(page, shot_name(request))


async def test_bubbles_show_days_edits_deletes_reactions_quotes_media_and_older_pages(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """History as stored: a separator per day, edited and deleted messages marked, a reaction
    on its message, a quoted reply, media named; scrolling up loads the older pages."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        sid = s.d.registry.get("acme", "loja").id  # type: ignore[union-attr]
        older = [msg(sid, f"old-{i}", JID, body=f"antiga {i}", at=i) for i in range(70)]
        day2 = 86_400
        recent = [
            msg(sid, "q1", JID, body="Qual o prazo?", at=day2),
            msg(sid, "e1", JID, body="texto original", at=day2 + 1),
            msg(sid, "r1", JID, body="vou apagar", at=day2 + 2),
            msg(
                sid,
                "img1",
                JID,
                body="a foto",
                at=day2 + 3,
                type_=MessageType.IMAGE,
                media=Media(mimetype="image/jpeg", filename="foto.jpg"),
            ),
        ]
        answer = msg(sid, "a1", JID, from_me=True, body="Três dias úteis", at=day2 + 4)
        reply = replace(answer, reply_to="q1")
        await s.d.pipeline.ingest([*older, *recent, reply], source="test")
        chat = address(JID)
        assert chat is not None
        at = recent[0].timestamp
        await s.d.pipeline.ingest(
            [
                Edit(session_id=sid, provider_message_id="e1", body="texto corrigido"),
                Revoke(session_id=sid, provider_message_id="r1"),
                Reaction(
                    session_id=sid,
                    provider_message_id="re1",
                    target_message_id="q1",
                    emoji="👍",
                    chat=chat,
                    from_me=True,
                    timestamp=at,
                ),
            ],
            source="test",
        )
        page = await s.open_page(browser, "boss")
        await chats(page).first.click()
        area = page.get_by_role("region", name="Conversa")
        await expect(bubbles(page)).to_have_count(49)  # the newest 50 rows; one is a reaction
        edited = bubbles(page).filter(has_text="texto corrigido")
        await expect(edited.locator(".edited")).to_have_text("editada")
        await expect(bubbles(page).filter(has_text="Mensagem apagada")).to_have_count(1)
        await expect(
            page.locator(".bubble.in").filter(has_text="Qual o prazo?").locator(".reactions")
        ).to_have_text("👍")
        quoting = bubbles(page).filter(has_text="Três dias úteis")
        await expect(quoting.locator(".quote")).to_have_text("Qual o prazo?")
        media = bubbles(page).filter(has_text="a foto").locator(".media")
        named = media.locator(".media-placeholder").filter(has_text="Imagem · foto.jpg")
        await expect(media.locator("img").or_(named)).to_have_count(1)  # shown, or named
        await expect(area.get_by_role("separator")).to_have_count(2)

        await page.locator("#messages-scroll").evaluate("el => el.scrollTop = 0")
        await expect(bubbles(page)).to_have_count(75)  # 70 old + 5 (the reaction is on q1)
        await expect(bubbles(page).first).to_contain_text("antiga 0")
        await screenshot(page, shot_name(request))


async def test_times_within_one_second_keep_their_order_in_the_chat_and_the_list(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A reply stored a quarter of a second after the customer's message, in the same second,
    shows below it, and its chat above one whose last message is that whole second: the
    page orders times by instant, not by text (`10:00:05.250000+00:00` against
    `10:00:05+00:00`, which `localeCompare` put the other way round)."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        sid = s.d.registry.get("acme", "loja").id  # type: ignore[union-attr]
        asked = msg(sid, "c1", JID, body="Pode me ligar?", at=60)
        answered = replace(
            msg(sid, "a1", JID, from_me=True, body="Ligo já"),
            timestamp=asked.timestamp + timedelta(milliseconds=250),
        )
        other = msg(sid, "j1", f"{JOAO}@c.us", body="Bom dia", at=60)
        await s.d.pipeline.ingest([asked, answered], source="test")
        await s.d.pipeline.ingest([other], source="test")  # the newer chat: ahead on a tie
        page = await s.open_page(browser, "boss")
        await expect(chats(page)).to_have_count(2)
        await expect(chats(page).first).to_contain_text("Ligo já")
        await chats(page).first.click()
        await expect(bubbles(page)).to_have_count(2)
        await expect(bubbles(page).nth(0)).to_contain_text("Pode me ligar?")
        await expect(bubbles(page).nth(1)).to_contain_text("Ligo já")
        await screenshot(page, shot_name(request))


def test_token_url_prints_a_login_url(tmp_path: Path) -> None:
    """`wasync token --url` prints `<base>/atendimento#token=<JWT>` with a valid token."""
    config = tmp_path / "c.toml"
    config.write_text(f'[http]\nhost = "0.0.0.0"\nport = 8123\n[auth]\njwt_secret = "{SECRET}"\n')
    args = ["token", "--tenant", "acme", "--user", "ana", "--role", "USER", "--url"]
    done = CliRunner().invoke(cli_app, [*args, "--config", str(config)])
    assert done.exit_code == 0, done.output
    base, _, jwt = done.output.strip().partition("#token=")
    assert base == "http://127.0.0.1:8123/atendimento"
    assert verify_token(SECRET, jwt).user_id == "ana"
    other = CliRunner().invoke(
        cli_app, [*args, "--config", str(config), "--base-url", "https://crm.example"]
    )
    assert other.output.startswith("https://crm.example/atendimento#token=")


@pytest.mark.timeout(120)
async def test_the_demo_prints_login_urls_that_open_the_page(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`wasync demo` prints an ADMIN and a USER login URL; both open a live page, the USER's
    showing only the chats the demo gave her."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasync", "demo", "--duration", "60", "--state-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(40):
            while len(urls) < 2:
                line = (await proc.stdout.readline()).decode()
                assert line, "wasync demo exited early"
                if found := re.search(r"as (ADMIN|USER) \S+: (http://\S+)", line):
                    urls[found.group(1)] = found.group(2)
        drain = asyncio.create_task(proc.stdout.read())
        async with chromium(tmp_path) as browser:
            admin, user = await browser.new_page(), await browser.new_page()
            await admin.goto(urls["ADMIN"])
            await user.goto(urls["USER"])
            await expect(chats(admin)).not_to_have_count(0)
            await expect(chats(user)).to_have_count(2)
            await screenshot(admin, shot_name(request))
    finally:
        proc.terminate()
        await proc.wait()
        if drain is not None:
            await drain


RACE = """async () => {
  const c = window.wasyncPage.conversation;
  const file = new File([new Uint8Array([137, 80, 78, 71])], "foto.png", {type: "image/png"});
  const local = {id: null, fromMe: true, type: "image", body: null, localFile: file,
                 mediaFilename: "foto.png", sentAt: new Date().toISOString(), ack: "queued"};
  c.addLocal("k1", local);
  c.add({id: 999001, chatId: c.chatId, fromMe: true, type: "image", body: null, ack: 0,
         mediaFilename: "foto.png", sentAt: local.sentAt, providerMessageId: "wasync-9"});
  c.bind("k1", 999001);
  const out = [...document.querySelectorAll('.bubble[data-type="image"]')];
  return out.map((b) => [b.dataset.messageId, Boolean(b.querySelector("img"))]);
}"""


async def test_a_send_whose_frame_comes_before_its_answer_is_one_bubble_with_the_upload(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The queued message's frame may reach the page before the POST's answer: the page still
    shows one bubble, the server's, with the image the agent attached."""
    async with stack(db_url) as s, chromium(tmp_path) as browser:
        s.waha.add_incoming("loja", MARIA, text="Manda a foto?", push_name="Maria")
        await s.chat_id(MARIA)
        page = await s.open_page(browser, "boss")
        await chats(page).first.click()
        await expect(bubbles(page)).to_have_count(1)
        assert await page.evaluate(RACE) == [["999001", True]]
        await screenshot(page, shot_name(request))
