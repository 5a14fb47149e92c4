"""The Evolution simulator speaks Evolution API 2.3.7 with its documented quirks
(providers/evolution.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wasync import providers
from wasync.providers import KINDS, Endpoint
from wasync.providers.base import MediaSource
from wasync.providers.http import RetryPolicy
from wasync.sim import EvolutionSim, Fault, seed_evolution, seed_evolution_bulk, serve
from wasync.sim.content import media

KEY = "global-key"
NOW = 1_763_326_182
SAMPLES = Path("/work/shared/providers/evolution")
PHONE_JID = "553188887777@s.whatsapp.net"
LID = "76201477542116@lid"
JWT_SECRET = "a-webhook-secret-of-at-least-32-bytes!"


class Receiver:
    """A webhook endpoint that records raw requests and answers queued statuses (then 200)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.app = Starlette(routes=[Route("/{path:path}", self.endpoint, methods=["POST"])])

    async def endpoint(self, request: Request) -> Response:
        self.seen.append((request.url.path, dict(request.headers), await request.body()))
        return JSONResponse({}, status_code=self.statuses.pop(0) if self.statuses else 200)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app))


def make_sim(**kwargs: Any) -> EvolutionSim:
    sim = EvolutionSim(api_key=KEY, seed=5, clock=lambda: float(NOW), **kwargs)
    sim.add_instance("main", token="MAIN-TOKEN", phone="5588921729550")
    sim.add_instance("other", token="OTHER-TOKEN", state="connecting")
    return sim


@pytest.fixture
def sim() -> EvolutionSim:
    return make_sim()


@pytest.fixture
async def client(sim: EvolutionSim) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=sim.app)
    headers = {"apikey": KEY}
    async with httpx.AsyncClient(transport=transport, base_url="http://evo", headers=headers) as c:
        yield c


def lid_contact(sim: EvolutionSim) -> None:
    """A Brazilian contact registered in the 12-digit form, now addressed by LID."""
    sim.add_contact("main", "553188887777", push_name="Gleidiane", lid=LID)


async def test_unknown_instance_is_404_before_401(client: httpx.AsyncClient) -> None:
    """An unknown instance gets 404 even with a wrong key; a known one gets the 401 envelope."""
    missing = await client.get("/instance/connectionState/ghost", headers={"apikey": "bad"})
    assert missing.status_code == 404
    assert missing.json() == json.loads(
        (SAMPLES / "error.404.instance-not-found.docs-openapi.json")
        .read_text()
        .replace("invalid-instance", "ghost")
    )
    denied = await client.get("/instance/connectionState/main", headers={"apikey": "bad"})
    assert (denied.status_code, denied.json()) == (
        401,
        {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}},
    )
    other_token = await client.get(
        "/instance/connectionState/main", headers={"apikey": "OTHER-TOKEN"}
    )
    assert other_token.status_code == 401
    own = await client.get("/instance/connectionState/main", headers={"apikey": "MAIN-TOKEN"})
    assert own.json() == {"instance": {"instanceName": "main", "state": "open"}}


async def test_fetch_instances(client: httpx.AsyncClient) -> None:
    """The global key lists every instance; an instance token only its own."""
    everything = (await client.get("/instance/fetchInstances")).json()
    assert [(i["name"], i["connectionStatus"]) for i in everything] == [
        ("main", "open"),
        ("other", "connecting"),
    ]
    assert everything[0]["ownerJid"] == "5588921729550@s.whatsapp.net"
    assert everything[1]["ownerJid"] is None
    assert set(everything[0]["_count"]) == {"Message", "Contact", "Chat"}
    own = await client.get("/instance/fetchInstances", headers={"apikey": "OTHER-TOKEN"})
    assert [i["name"] for i in own.json()] == ["other"]
    assert (
        await client.get("/instance/fetchInstances", headers={"apikey": "x"})
    ).status_code == 401


async def test_find_chats(sim: EvolutionSim, client: httpx.AsyncClient) -> None:
    """findChats lists only chats with stored messages, newest first, with take/skip."""
    lid_contact(sim)
    sim.add_contact("main", "5511999990000")  # a contact without messages: not listed
    sim.add_incoming("main", LID, text="lid", ts=NOW - 30)
    sim.add_incoming("main", "5511987650001", text="a", ts=NOW - 10)
    sim.add_outgoing("main", "5511987650002", text="b", ts=NOW - 20)
    chats = (await client.post("/chat/findChats/main", json={})).json()
    assert [c["remoteJid"] for c in chats] == [
        "5511987650001@s.whatsapp.net",
        "5511987650002@s.whatsapp.net",
        LID,
    ]
    sample = json.loads((SAMPLES / "findChats.response.reconstructed.json").read_text())[0]
    assert set(chats[0]) == set(sample)
    assert set(chats[0]["lastMessage"]) == set(sample["lastMessage"])
    assert chats[0]["updatedAt"] == "2025-11-16T20:49:32.000Z"
    assert chats[0]["unreadCount"] == 1 and chats[1]["unreadCount"] == 0
    paged = (await client.post("/chat/findChats/main", json={"take": 1, "skip": 1})).json()
    assert [c["remoteJid"] for c in paged] == ["5511987650002@s.whatsapp.net"]


async def test_find_messages_offset_is_page_size(
    sim: EvolutionSim, client: httpx.AsyncClient
) -> None:
    """`offset` is the page size, `page` is 1-based, newest first; MessageUpdate is included."""
    for i in range(7):
        sim.add_incoming("main", "5511987650001", text=f"m{i}", ts=NOW - 100 + i)
    response = await client.post("/chat/findMessages/main", json={"offset": 3, "page": 2})
    page = response.json()["messages"]
    assert (page["total"], page["pages"], page["currentPage"]) == (7, 3, 2)
    assert [r["message"]["conversation"] for r in page["records"]] == ["m3", "m2", "m1"]
    sample = json.loads((SAMPLES / "findMessages.response.reconstructed.json").read_text())
    assert set(page["records"][0]) == set(sample["messages"]["records"][0])
    default = (await client.post("/chat/findMessages/main", json={"limit": 2})).json()["messages"]
    assert (len(default["records"]), default["pages"]) == (7, 1)  # `limit` ignored, offset 50


async def test_find_messages_remote_jid_or_alt(
    sim: EvolutionSim, client: httpx.AsyncClient
) -> None:
    """LID rows keep the raw @lid remoteJid; the phone passed as remoteJidAlt finds them (OR)."""
    lid_contact(sim)
    sim.add_incoming("main", "553188887777", text="pelo telefone", ts=NOW - 20)
    sim.add_incoming("main", LID, text="pelo lid", ts=NOW - 10)
    where = {"where": {"key": {"remoteJid": PHONE_JID, "remoteJidAlt": PHONE_JID}}}
    records = (await client.post("/chat/findMessages/main", json=where)).json()["messages"][
        "records"
    ]
    assert [r["key"]["remoteJid"] for r in records] == [LID, PHONE_JID]
    assert records[0]["key"]["remoteJidAlt"] == PHONE_JID
    assert records[0]["key"]["addressingMode"] == "lid"
    assert records[1]["key"]["remoteJidAlt"] == LID
    only_jid = {"where": {"key": {"remoteJid": PHONE_JID}}}
    records = (await client.post("/chat/findMessages/main", json=only_jid)).json()["messages"][
        "records"
    ]
    assert [r["message"]["conversation"] for r in records] == ["pelo telefone"]


async def test_find_messages_timestamp_quirks(sim: EvolutionSim, client: httpx.AsyncClient) -> None:
    """The window needs both bounds, each ISO or epoch ms; epoch seconds match nothing."""
    for i in range(5):
        sim.add_incoming("main", "5511987650001", text=f"m{i}", ts=NOW - 40 + 10 * i)

    async def total(window: dict[str, Any]) -> int:
        body = {"where": {"messageTimestamp": window}}
        response = await client.post("/chat/findMessages/main", json=body)
        return int(response.json()["messages"]["total"])

    ms = (NOW - 20) * 1000
    assert await total({"gte": ms, "lte": NOW * 1000}) == 3
    iso = datetime.fromtimestamp(NOW - 20, UTC).isoformat().replace("+00:00", "Z")
    assert await total({"gte": iso, "lte": "2030-01-01T00:00:00Z"}) == 3
    assert await total({"gte": NOW - 20, "lte": NOW}) == 0  # seconds read as 1970
    assert await total({"gte": ms}) == 5  # one bound only: no filter at all


async def test_find_messages_bounds_past_2038_are_a_500(
    sim: EvolutionSim, client: httpx.AsyncClient
) -> None:
    """`messageTimestamp` is a 32-bit column (`Int @db.Integer`): a bound past
    2038-01-19T03:14:07Z cannot be bound and Evolution answers 500 with Prisma's words; the
    last second that fits is a bound like any other."""
    sim.add_incoming("main", "5511987650001", text="m", ts=NOW)
    gte = datetime.fromtimestamp(NOW - 60, UTC).isoformat()
    for lte, status in (("9999-12-31T23:59:59Z", 500), ("2038-01-19T03:14:07Z", 200)):
        body = {"where": {"messageTimestamp": {"gte": gte, "lte": lte}}}
        answer = await client.post("/chat/findMessages/main", json=body)
        assert answer.status_code == status, lte
    assert "INT4" in (await client.post("/chat/findMessages/main", json={
        "where": {"messageTimestamp": {"gte": gte, "lte": "9999-12-31T23:59:59Z"}}
    })).json()["response"]["message"]  # fmt: skip


async def test_find_messages_from_me_and_unstable_order(
    sim: EvolutionSim, client: httpx.AsyncClient
) -> None:
    """fromMe:false is ignored, fromMe:true filters, and equal timestamps have no stable order."""
    for i in range(8):
        sim.add_incoming("main", "5511987650001", text=f"m{i}", ts=NOW)
    sim.add_outgoing("main", "5511987650001", text="eu", ts=NOW - 5)

    async def texts(key: dict[str, Any]) -> list[str]:
        response = await client.post("/chat/findMessages/main", json={"where": {"key": key}})
        return [r["message"]["conversation"] for r in response.json()["messages"]["records"]]

    assert len(await texts({"fromMe": False})) == 9
    assert await texts({"fromMe": True}) == ["eu"]
    orders = {tuple(await texts({})) for _ in range(5)}
    assert len(orders) > 1
    assert all(order[-1] == "eu" for order in orders)


async def test_whatsapp_numbers_brazil(sim: EvolutionSim, client: httpx.AsyncClient) -> None:
    """Both Brazilian variants resolve to the registered jid; unknown-absent numbers do not."""
    sim.add_contact("main", "553498313925")
    sim.mark_absent("5511900001111")
    body = json.loads((SAMPLES / "whatsappNumbers.request.json").read_text())
    body["numbers"].append("5511900001111")
    answer = (await client.post("/chat/whatsappNumbers/main", json=body)).json()
    sample = json.loads((SAMPLES / "whatsappNumbers.response.json").read_text())
    assert answer[:2] == sample
    assert answer[2] == {
        "exists": False,
        "jid": "5511900001111@s.whatsapp.net",
        "number": "5511900001111",
    }
    assert (
        await client.post("/chat/whatsappNumbers/main", json={"numbers": []})
    ).status_code == 400


async def test_send_text(sim: EvolutionSim, client: httpx.AsyncClient) -> None:
    """sendText answers 201 with prepareMessage's shape, stores a PENDING row, records the body."""
    sim.add_contact("main", "553188887777")
    response = await client.post(
        "/message/sendText/main", json={"number": "5531988887777", "text": "Olá!"}
    )
    assert response.status_code == 201
    sent = response.json()
    sample = json.loads((SAMPLES / "sendText.response.reconstructed.json").read_text())
    assert list(sent) == list(sample)
    assert sent["key"]["remoteJid"] == PHONE_JID  # the registered 12-digit jid
    assert (sent["status"], sent["pushName"], sent["message"]) == (
        "PENDING",
        "Você",
        {"conversation": "Olá!"},
    )
    assert sim.sends[0].body == {"number": "5531988887777", "text": "Olá!"}
    assert sim.sends[0].message_id == sent["key"]["id"]
    assert sim.get_message("main", sent["key"]["id"])["key"]["fromMe"] is True


async def test_send_to_number_not_on_whatsapp(sim: EvolutionSim, client: httpx.AsyncClient) -> None:
    """A number not on WhatsApp gets the 400 envelope with exists:false, and is still recorded."""
    sim.mark_absent("5511900001111")
    response = await client.post(
        "/message/sendWhatsAppAudio/main",
        json={"number": "5511900001111", "audio": "https://x/a.ogg"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "error": "Bad Request",
        "response": {
            "message": [
                {"jid": "5511900001111@s.whatsapp.net", "exists": False, "number": "5511900001111"}
            ]
        },
    }
    assert [(s.route, s.status) for s in sim.sends] == [("sendWhatsAppAudio", 400)]


async def test_send_media_validation(sim: EvolutionSim, client: httpx.AsyncClient) -> None:
    """sendMedia rejects data: URIs and base64 documents without fileName; URLs work."""

    async def send(**body: Any) -> httpx.Response:
        return await client.post(
            "/message/sendMedia/main", json={"number": "5511987650001", **body}
        )

    data_uri = await send(mediatype="image", media="data:image/png;base64,iVBORw0KGgo=")
    assert data_uri.status_code == 400
    assert data_uri.json()["response"]["message"] == ["Owned media must be a url or base64"]
    nameless = await send(mediatype="document", media="JVBERi0xLjQK")
    assert nameless.json()["response"]["message"] == ["For base64 the file name must be informed."]
    ok = await send(
        mediatype="document", media="JVBERi0xLjQK", fileName="boleto.pdf", caption="Segue"
    )
    assert ok.status_code == 201
    document = ok.json()["message"]["documentMessage"]
    assert (document["fileName"], document["caption"]) == ("boleto.pdf", "Segue")
    image = await send(mediatype="image", media="https://example.com/a.jpg")
    assert (image.status_code, image.json()["messageType"]) == (201, "imageMessage")


@pytest.mark.parametrize("version", ["2.3.2", "2.3.7"])
async def test_send_media_is_typed_by_its_file_name_from_2_3_3(version: str) -> None:
    """From 2.3.3 the stored mimetype is `mimeTypes.lookup(fileName)`, "false" for a name with
    no known extension, whatever `mimetype` says; a URL document without `fileName` is named
    by Evolution's regex (no extension), and a URL it cannot match answers 500."""
    sim = make_sim(version=version)
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://evo") as client:

        async def stored(**body: Any) -> tuple[str, str]:
            sent = await client.post(
                "/message/sendMedia/main",
                json={"number": "5511987650001", "mediatype": "document", **body},
                headers={"apikey": KEY},
            )
            assert sent.status_code == 201, sent.text
            doc = sent.json()["message"]["documentMessage"]
            return doc["fileName"], doc["mimetype"]

        url = "https://crm.example.com/attachments/42"
        named_42 = await stored(media=url, mimetype="application/pdf", fileName="42")
        typed = await stored(media=url, mimetype="application/octet-stream", fileName="42.pdf")
        unnamed = await stored(media="https://crm.example.com/files/contrato.pdf")
        assert unnamed[0] == "contrato"
        if version == "2.3.2":
            assert named_42 == ("42", "application/pdf")
            assert typed == ("42.pdf", "application/octet-stream")
        else:
            assert named_42 == ("42", "false")
            assert typed == ("42.pdf", "application/pdf")
            assert unnamed[1] == "false"
        failed = await client.post(
            "/message/sendMedia/main",
            json={"number": "5511987650001", "mediatype": "document", "media": "https://h/x"},
            headers={"apikey": KEY},
        )
        assert failed.status_code == 500
        assert failed.json()["response"]["message"] == [
            "TypeError: Cannot read properties of null (reading '1')"
        ]


async def test_send_whatsapp_audio(sim: EvolutionSim, client: httpx.AsyncClient) -> None:
    """sendWhatsAppAudio answers 201 with a PENDING ptt audioMessage."""
    response = await client.post(
        "/message/sendWhatsAppAudio/main", json={"number": "5511987650001", "audio": "T2dnUw=="}
    )
    assert response.status_code == 201
    audio = response.json()
    assert (audio["status"], audio["messageType"]) == ("PENDING", "audioMessage")
    assert audio["message"]["audioMessage"]["ptt"] is True
    assert audio["message"]["audioMessage"]["mimetype"] == "audio/ogg; codecs=opus"


async def test_send_on_closed_instance(sim: EvolutionSim, client: httpx.AsyncClient) -> None:
    """Sending through an instance that is not open fails with a 400 Connection Closed."""
    sim.set_state("main", "close")
    response = await client.post(
        "/message/sendText/main", json={"number": "5511987650001", "text": "x"}
    )
    assert response.status_code == 400
    assert response.json()["response"]["message"] == ["Error: Connection Closed"]


async def test_webhook_set_and_find(sim: EvolutionSim, client: httpx.AsyncClient) -> None:
    """webhook/set takes the nested body, needs `events`, and find returns the stored row."""
    assert (await client.get("/webhook/find/main")).json() is None
    flat = await client.post("/webhook/set/main", json={"url": "http://crm", "enabled": True})
    assert flat.status_code == 400
    no_events = await client.post(
        "/webhook/set/main", json={"webhook": {"url": "http://crm", "enabled": True}}
    )
    assert no_events.status_code == 400
    body = json.loads((SAMPLES / "webhook.object.v2.json").read_text())
    created = await client.post("/webhook/set/main", json=body)
    assert created.status_code == 201
    row = created.json()
    sample = json.loads((SAMPLES / "webhook.find.response.reconstructed.json").read_text())
    assert set(row) == set(sample)
    assert (row["webhookByEvents"], row["events"][0]) == (False, "MESSAGES_UPSERT")
    assert (await client.get("/webhook/find/main")).json() == row
    everything = {"webhook": {"url": "http://crm", "enabled": True, "events": []}}
    assert len((await client.post("/webhook/set/main", json=everything)).json()["events"]) > 20


async def test_deliver_envelope_jwt_and_by_events(
    sim: EvolutionSim, client: httpx.AsyncClient
) -> None:
    """deliver() posts the envelope to `<url>/<event>` with a verifiable HS256 JWT."""
    lid_contact(sim)
    hook = {
        "url": "http://crm/evo",
        "enabled": True,
        "byEvents": True,
        "headers": {"jwt_key": JWT_SECRET, "x-tenant": "acme"},
        "events": ["MESSAGES_UPSERT"],
    }
    assert (await client.post("/webhook/set/main", json={"webhook": hook})).status_code == 201
    key_id = sim.add_incoming("main", LID, text="Teste envio de mensagem", ts=NOW)
    receiver = Receiver()
    async with receiver.client() as http:
        sim.http = http
        result = await sim.deliver_message("main", key_id, delay_s=0)
        skipped = await sim.deliver("main", "connection.update", {"state": "open"})
    assert result is not None and result.ok and skipped is None
    [(path, headers, raw)] = receiver.seen
    assert path == "/evo/messages-upsert"
    assert "jwt_key" not in headers and headers["x-tenant"] == "acme"
    scheme, token = headers["authorization"].split(" ")
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert scheme == "Bearer"
    assert claims == {"iat": NOW, "exp": NOW + 600, "app": "evolution", "action": "webhook"}
    envelope = json.loads(raw)
    assert list(envelope) == [
        "event",
        "instance",
        "data",
        "destination",
        "date_time",
        "sender",
        "server_url",
        "apikey",
    ]
    assert envelope["event"] == "messages.upsert"
    assert envelope["destination"] == "http://crm/evo/messages-upsert"
    assert envelope["date_time"] == "2025-11-16T17:49:42.000Z"  # local time (-3 h) with a Z
    assert (envelope["sender"], envelope["apikey"]) == (
        "5588921729550@s.whatsapp.net",
        "MAIN-TOKEN",
    )
    key = envelope["data"]["key"]
    assert key["remoteJid"] == key["remoteJidAlt"] == PHONE_JID  # 2.3.7 rewrite
    assert sim.get_message("main", key_id)["key"]["remoteJid"] == LID  # the row keeps the LID


async def test_deliver_retries_5xx_but_not_404(sim: EvolutionSim) -> None:
    """5xx is retried until success, a 404 stops at once; a short jwt_key signs without warning."""
    sim.instance("main").webhook = {
        "url": "http://crm/e",
        "enabled": True,
        "events": ["SEND_MESSAGE"],
        "headers": {"jwt_key": "short"},
        "webhookByEvents": False,
    }
    receiver = Receiver(500, 502, 200, 404)
    async with receiver.client() as http:
        ok = await sim.deliver("main", "SEND_MESSAGE", {"x": 1}, delay_s=0, http=http)
        gone = await sim.deliver("main", "send.message", {"x": 2}, delay_s=0, http=http)
    assert ok is not None and (ok.ok, ok.attempts) == (True, 3)
    assert gone is not None and (gone.ok, gone.attempts, gone.status) == (False, 1, 404)
    assert json.loads(receiver.seen[0][2])["event"] == "send.message"


def test_seed_is_deterministic_and_realistic() -> None:
    """Seeding is deterministic and yields LID rows, 12-digit BR jids, groups and updates."""
    first, second = make_sim(), make_sim()
    for sim in (first, second):
        seed_evolution(sim, "main", chats=20, messages_per_chat=50, now=NOW, seed=9)
    rows = first.all_messages("main")
    assert rows == second.all_messages("main") and len(rows) == 1000
    jids = {r["key"]["remoteJid"] for r in rows}
    assert any(j.endswith("@lid") for j in jids) and any(j.endswith("@g.us") for j in jids)
    assert any(len(j.split("@")[0]) == 12 and j.startswith("55") for j in jids)
    lid_rows = [r for r in rows if r["key"]["remoteJid"].endswith("@lid")]
    assert any(r["key"].get("remoteJidAlt") for r in lid_rows)
    assert any("remoteJidAlt" not in r["key"] for r in lid_rows)  # LID with no known phone
    group_rows = [r for r in rows if r["key"]["remoteJid"].endswith("@g.us")]
    assert any(r["key"].get("participantAlt") for r in group_rows)
    types = {r["messageType"] for r in rows}
    assert types >= {
        "conversation",
        "imageMessage",
        "audioMessage",
        "documentMessage",
        "stickerMessage",
        "locationMessage",
        "contactMessage",
        "reactionMessage",
        "videoMessage",
    }
    assert any(r["MessageUpdate"] for r in rows) and any(r["key"]["fromMe"] for r in rows)


def test_bulk_instances() -> None:
    """Benchmarks can create many seeded instances at once."""
    sim = EvolutionSim(api_key=KEY)
    names = seed_evolution_bulk(sim, instances=50, chats=20, messages_per_chat=1, now=NOW)
    assert len(names) == 50 and len(sim.all_messages(names[-1])) == 20


async def test_faults_and_counters(sim: EvolutionSim, client: httpx.AsyncClient) -> None:
    """A queued 503 hits findMessages once; 429 carries Retry-After; counters count routes."""
    sim.faults.push(Fault("503", route="chat.findMessages"), Fault("429", retry_after_s=3))
    first = await client.post("/chat/findMessages/main", json={})
    assert first.status_code == 503
    limited = await client.get("/instance/connectionState/main")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
    assert limited.json()["status"] == 429
    assert (await client.post("/chat/findMessages/main", json={})).status_code == 200
    sim.faults.push("truncated")
    cut = await client.post("/chat/findChats/main", json={})
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    assert sim.requests["chat.findMessages"] == 2
    assert sim.requests_total == 4


async def test_over_real_loopback(sim: EvolutionSim) -> None:
    """The Evolution sim answers over real loopback HTTP through serve()."""
    sim.add_incoming("main", "5511987650001", text="via TCP", ts=NOW)
    async with (
        serve(sim.app) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"apikey": KEY}) as http,
    ):
        found = await http.post("/chat/findMessages/main", json={})
        missing = await http.post("/chat/findMessages/ghost", json={})
    records = found.json()["messages"]["records"]
    assert [r["message"]["conversation"] for r in records] == ["via TCP"]
    assert missing.status_code == 404


async def test_media_of_a_stored_empty_template_reference_is_read_by_its_key(
    sim: EvolutionSim, client: httpx.AsyncClient
) -> None:
    """getBase64FromMediaMessage with a message part that is an empty `templateMessage` is a
    400 (Evolution reads what it is handed as a template, evolution.md 6); the adapter leaves
    such a part out (a reference an older wasync stored), so Evolution finds the file by the
    key, and a reference with the proto's download fields goes as it is."""
    key_id = sim.add_message("main", "5531988887777", media("image", caption="oferta"))
    jid = "5531988887777@s.whatsapp.net"
    key = {"remoteJid": jid, "fromMe": False, "id": key_id}
    refused = await client.post(
        "/chat/getBase64FromMediaMessage/main",
        json={"message": {"key": key, "message": {"templateMessage": {}}}},
    )
    assert refused.status_code == 400
    kind = KINDS["evolution"]
    endpoint = Endpoint(base_url="http://evo", api_key=KEY, session="main", session_id=1)
    http = providers.make_http(kind, endpoint, client, retry=RetryPolicy(attempts=1))
    adapter = kind.adapter(http, endpoint)
    for message in ({"templateMessage": {}}, {"imageMessage": {"mimetype": "image/jpeg"}}):
        source = MediaSource(
            provider_message_id=key_id,
            chat_jid=jid,
            from_me=False,
            ref={"key": key, "message": message},
        )
        async with adapter.fetch_media(source) as file:
            data = b"".join([chunk async for chunk in file.chunks])
        assert data and file.mimetype == "image/jpeg"


@pytest.mark.parametrize("version", ["2.2.3", "2.3.0", "2.3.6", "2.3.7"])
def test_a_delete_on_the_phone_is_stored_and_announced_as_that_version_does(version: str) -> None:
    """`revoke_message`: the update row Evolution's `messages.update` fallback gives
    (`DELETED`, `SERVER_ACK` from 2.3.7), and from 2.3.1 the `EDITED` one of its REVOKE's
    edit path; the row's text and key kept; its webhooks, each a revoke of that message for
    wasync's parser (`messages.edited` only from 2.3.1)."""
    sim = EvolutionSim(api_key="k", version=version)
    sim.add_instance("vendas")
    kid = sim.add_outgoing("vendas", "5511987654321@s.whatsapp.net", text="Errado")
    hooks = sim.revoke_message("vendas", kid)
    row = sim.get_message("vendas", kid)
    fallback = "SERVER_ACK" if version == "2.3.7" else "DELETED"
    edit_path = [] if version in ("2.2.3", "2.3.0") else ["EDITED"]
    assert [u["status"] for u in row["MessageUpdate"][-1 - len(edit_path) :]] == [
        fallback,
        *edit_path,
    ]
    assert row["message"] == {"conversation": "Errado"} and "deleted" not in row["key"]
    names = [name for name, _ in hooks]
    edited = [] if version in ("2.2.3", "2.3.0") else ["messages.edited"]
    assert names == [*edited, "messages.delete"]
    for name, data in hooks:
        body = {"event": name, "instance": "vendas", "data": data}
        (event,) = KINDS["evolution"].parse_webhook(body, session_id=1)
        assert (type(event).__name__, event.provider_message_id) == ("Revoke", kid)
