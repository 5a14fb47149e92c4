"""The WAHA simulator speaks WAHA's API with its documented quirks (providers/waha.md)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wasync.providers import KINDS
from wasync.sim import (
    Fault,
    SimulatedReset,
    WahaSim,
    seed_waha,
    seed_waha_bulk,
    serve,
    sign_body,
    webhook_config,
)

KEY = "test-key"
NOW = 1_763_326_182
SAMPLES = Path("/work/shared/providers/waha")
NOT_WORKING = "Session status is not as expected. Try again later or restart the session"


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


def make_sim(**kwargs: Any) -> WahaSim:
    sim = WahaSim(api_key=KEY, seed=7, clock=lambda: float(NOW), **kwargs)
    sim.add_session("webjs", engine="WEBJS", phone="5511911110000")
    sim.add_session("noweb", engine="NOWEB", phone="5511922220000")
    sim.add_session("gows", engine="GOWS", phone="5511933330000")
    return sim


@pytest.fixture
def sim() -> WahaSim:
    return make_sim()


@pytest.fixture
async def client(sim: WahaSim) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=sim.app)
    headers = {"X-Api-Key": KEY}
    async with httpx.AsyncClient(transport=transport, base_url="http://waha", headers=headers) as c:
        yield c


async def test_wrong_api_key_gets_nestjs_401(client: httpx.AsyncClient) -> None:
    """A wrong X-Api-Key is answered 401 with WAHA's exact body."""
    response = await client.get("/api/sessions", headers={"X-Api-Key": "nope"})
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized", "statusCode": 401}
    assert (await client.get("/api/sessions", params={"x-api-key": KEY})).status_code == 200


async def test_sessions_list_hides_stopped_without_all(
    sim: WahaSim, client: httpx.AsyncClient
) -> None:
    """STOPPED sessions are only listed with all=true."""
    sim.set_status("noweb", "STOPPED")
    names = [s["name"] for s in (await client.get("/api/sessions")).json()]
    assert names == ["webjs", "gows"]
    everything = (await client.get("/api/sessions", params={"all": "true"})).json()
    assert [(s["name"], s["status"]) for s in everything] == [
        ("webjs", "WORKING"),
        ("noweb", "STOPPED"),
        ("gows", "WORKING"),
    ]
    assert everything[1]["me"] is None
    assert everything[2]["me"]["id"] == "5511933330000@c.us"
    assert everything[2]["engine"] == {"engine": "GOWS"}


async def test_session_get_put_and_version(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """GET is 404 for an unknown session; PUT replaces the whole config and restarts it."""
    missing = await client.get("/api/sessions/ghost")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Session not found"
    hook = webhook_config("http://crm/hook", events=["message.any"], hmac_key="k")
    response = await client.put("/api/sessions/gows", json={"config": {"webhooks": [hook]}})
    assert response.status_code == 200
    assert response.json()["config"] == {"webhooks": [hook]}
    assert sim.session("gows").config == {"webhooks": [hook]}
    assert sim.session("gows").restarts == 1
    bad = await client.put("/api/sessions/gows", json={"config": {"webhooks": [{"url": "x"}]}})
    assert bad.status_code == 400
    version = (await client.get("/api/server/version")).json()
    assert version == {
        "version": "2026.7.1",
        "engine": "WEBJS",
        "tier": "CORE",
        "browser": "/usr/bin/google-chrome-stable",
    }


async def test_an_event_older_waha_does_not_know_is_refused_as_class_validator_does(
    sim: WahaSim, client: httpx.AsyncClient
) -> None:
    """WAHA validates `events` with `@IsIn(AllEvents, {each: true})` (waha.md 4): an event its
    version lacks is a 400 in class-validator's words, listing the values it allows."""
    sim.version = "2025.5.4"  # before message.edited (2025.6.3) and message.ack.group (2025.12.2)
    for event in ("message.edited", "message.ack.group"):
        hook = webhook_config("http://crm/hook", events=["message.any", event])
        bad = await client.put("/api/sessions/gows", json={"config": {"webhooks": [hook]}})
        assert bad.status_code == 400
        (text,) = bad.json()["message"]
        head = "config.webhooks.0.each value in events must be one of the following values: "
        assert text.startswith(head)
        allowed = text.removeprefix(head).split(", ")
        assert "message.ack" in allowed and "*" in allowed and event not in allowed
    hook = webhook_config("http://crm/hook", events=["message.any", "message.ack"])
    ok = await client.put("/api/sessions/gows", json={"config": {"webhooks": [hook]}})
    assert ok.status_code == 200


async def test_session_controls_and_single_message(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """me, stop/start/restart and the single-message endpoint behave like WAHA's."""
    me = (await client.get("/api/sessions/noweb/me")).json()
    assert me["id"] == "5511922220000@c.us" and me["lid"].endswith("@lid")
    await client.post("/api/sessions/noweb/stop")
    assert sim.session("noweb").status == "STOPPED"
    assert (await client.get("/api/sessions/noweb/me")).json() is None
    await client.post("/api/sessions/noweb/restart")
    assert (sim.session("noweb").status, sim.session("noweb").restarts) == ("WORKING", 1)
    msg_id = sim.add_incoming("noweb", "5511987650001", text="uma", ts=NOW)
    raw = msg_id.split("_")[2]
    for wanted in (msg_id, raw):
        found = await client.get(f"/api/noweb/chats/5511987650001@c.us/messages/{wanted}")
        assert found.json()["id"] == msg_id
    missing = await client.get("/api/noweb/chats/5511987650001@c.us/messages/NOPE")
    assert missing.status_code == 404


async def test_put_dropping_noweb_store_breaks_polling(client: httpx.AsyncClient) -> None:
    """A PUT without `noweb.store` (the full-config trap) makes NOWEB's chat APIs fail."""
    assert (await client.get("/api/noweb/chats/all/messages")).status_code == 200
    await client.put("/api/sessions/noweb", json={"config": {"webhooks": []}})
    response = await client.get("/api/noweb/chats/all/messages")
    assert response.status_code == 400
    assert "config.noweb.store.enabled" in response.json()["message"]


async def test_overview_sorted_by_last_message(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """Chat overview lists ChatSummary items, newest last message first, paginated."""
    sim.add_incoming("gows", "5511987650001", text="primeira", ts=NOW - 300)
    sim.add_incoming("gows", "5511987650002", text="segunda", ts=NOW - 100)
    sim.add_incoming("gows", "5511987650003", text="terceira", ts=NOW - 200)
    items = (await client.get("/api/gows/chats/overview", params={"limit": 2})).json()
    assert [i["id"] for i in items] == ["5511987650002@c.us", "5511987650003@c.us"]
    assert set(items[0]) == {"id", "name", "picture", "lastMessage", "_chat"}
    assert items[0]["lastMessage"]["body"] == "segunda"
    posted = await client.post(
        "/api/gows/chats/overview", json={"pagination": {"limit": 5, "offset": 2}}
    )
    assert [i["id"] for i in posted.json()] == ["5511987650001@c.us"]
    assert (await client.post("/api/gows/chats/overview", json={})).status_code == 400


async def test_messages_limit_filters_and_encoded_ids(
    sim: WahaSim, client: httpx.AsyncClient
) -> None:
    """Default limit 10, inclusive second bounds, fromMe filter, `%40` in the chat id."""
    chat = "5511987650001@c.us"
    for i in range(12):
        sim.add_incoming("gows", chat, text=f"m{i}", ts=NOW - 100 + i)
    sim.add_outgoing("gows", chat, text="resposta", ts=NOW - 50)
    url = "/api/gows/chats/5511987650001%40c.us/messages"
    assert len((await client.get(url)).json()) == 10
    window = {"filter.timestamp.gte": NOW - 98, "filter.timestamp.lte": NOW - 95, "limit": 50}
    bodies = [m["body"] for m in (await client.get(url, params=window)).json()]
    assert bodies == ["m5", "m4", "m3", "m2"]
    mine = (await client.get(url, params={"filter.fromMe": "true"})).json()
    assert [(m["body"], m["fromMe"]) for m in mine] == [("resposta", True)]
    offset = (await client.get(url, params={"limit": 2, "offset": 1})).json()
    assert [m["body"] for m in offset] == ["m11", "m10"]


async def test_webjs_is_always_newest_first(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """WEBJS ignores sortOrder=asc; GOWS honours it."""
    for session in ("webjs", "gows"):
        for i in range(3):
            sim.add_incoming(session, "5511987650001", text=f"m{i}", ts=NOW - 10 + i)
    params = {"sortOrder": "asc"}
    webjs = (await client.get("/api/webjs/chats/5511987650001@c.us/messages", params=params)).json()
    gows = (await client.get("/api/gows/chats/5511987650001@c.us/messages", params=params)).json()
    assert [m["body"] for m in webjs] == ["m2", "m1", "m0"]
    assert [m["body"] for m in gows] == ["m0", "m1", "m2"]


async def test_chat_all_only_on_gows_and_noweb(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """chatId=all returns every chat's messages on GOWS/NOWEB and fails on WEBJS."""
    for session in ("webjs", "noweb", "gows"):
        sim.add_incoming(session, "5511987650001", text="a", ts=NOW - 2)
        sim.add_incoming(session, "5511987650002", text="b", ts=NOW - 1)
    for session in ("noweb", "gows"):
        found = (await client.get(f"/api/{session}/chats/all/messages")).json()
        assert [m["from"] for m in found] == ["5511987650002@c.us", "5511987650001@c.us"]
    webjs = await client.get("/api/webjs/chats/all/messages")
    assert webjs.status_code == 501
    assert webjs.json()["message"].startswith("Can not get messages from 'all' in WEBJS")


async def test_not_working_session_gets_exact_422(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """Reads and sends on a session that is not WORKING get WAHA's exact 422 body."""
    sim.set_status("gows", "SCAN_QR_CODE")
    expected = {
        "error": NOT_WORKING,
        "session": "gows",
        "status": "SCAN_QR_CODE",
        "expected": ["WORKING"],
    }
    read = await client.get("/api/gows/chats/all/messages")
    assert (read.status_code, read.json()) == (422, expected)
    send = await client.post(
        "/api/sendText", json={"session": "gows", "chatId": "1@c.us", "text": "x"}
    )
    assert (send.status_code, send.json()) == (422, expected)
    assert sim.sends[-1].status == 422
    unknown = await client.get("/api/ghost/chats/all/messages")
    assert unknown.status_code == 404


async def test_engine_specific_message_shapes(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """`from`/`to`/`_data` follow each engine's toWAMessage, including @lid chats and groups."""
    lid = "176369157804064@lid"
    for session in ("webjs", "noweb", "gows"):
        sim.add_contact(session, "553188887777", push_name="Gleidiane", lid=lid)
        sim.add_incoming(session, lid, text="Iya sist", ts=NOW - 5)
        sim.add_outgoing(session, lid, text="Oi!", ts=NOW - 4)
    url = "/api/{}/chats/176369157804064%40lid/messages"
    noweb = (await client.get(url.format("noweb"))).json()
    incoming = noweb[1]
    assert incoming["from"] == lid and "to" not in incoming and "participant" not in incoming
    assert incoming["_data"]["key"]["remoteJid"] == lid
    assert incoming["_data"]["key"]["remoteJidAlt"] == "553188887777@s.whatsapp.net"
    assert incoming["id"] == f"false_{lid}_{incoming['_data']['key']['id']}"
    gows = (await client.get(url.format("gows"))).json()[1]
    assert (gows["from"], gows["to"], gows["participant"]) == (lid, None, None)
    assert gows["_data"]["Info"]["Chat"] == lid
    assert gows["_data"]["Info"]["SenderAlt"] == "553188887777@s.whatsapp.net"
    webjs = (await client.get(url.format("webjs"))).json()
    assert (webjs[0]["from"], webjs[0]["to"]) == ("5511911110000@c.us", lid)
    assert webjs[0]["_data"]["id"]["_serialized"] == webjs[0]["id"]
    assert (webjs[1]["from"], webjs[1]["to"]) == (lid, "5511911110000@c.us")


async def test_group_message_has_participant_suffix(
    sim: WahaSim, client: httpx.AsyncClient
) -> None:
    """Group message ids end with `_<participant>` and NOWEB `_data.key` has participantAlt."""
    group = "120363000000000001@g.us"
    sim.add_contact("noweb", "5511999990000", lid="99999999999999@lid")
    sim.add_group("noweb", group, subject="Equipe Vendas", participants=["99999999999999@lid"])
    msg_id = sim.add_incoming("noweb", group, text="bom dia", sender="99999999999999@lid")
    assert msg_id.endswith("_99999999999999@lid")
    found = (await client.get("/api/noweb/chats/120363000000000001%40g.us/messages")).json()
    assert (found[0]["from"], found[0]["to"], found[0]["participant"]) == (
        group,
        group,
        "99999999999999@lid",
    )
    assert found[0]["_data"]["key"]["participantAlt"] == "5511999990000@s.whatsapp.net"


async def test_noweb_of_waha_2025_8_names_both_forms_as_baileys_6_7_did() -> None:
    """WAHA 2025.7.4-2025.9.4 (its Baileys fork of 2025-07-04): `key.senderPn`/`senderLid` of
    a direct chat's sender and `participantPn`/`participantLid` of a group author, no `*Alt`;
    wasync's parser finds the phone in either."""
    sim = make_sim(version="2025.8.2")
    lid, group = "176369157804064@lid", "120363000000000001@g.us"
    sim.add_contact("noweb", "553188887777", lid=lid)
    sim.add_group("noweb", group, subject="Equipe", participants=[lid])
    direct = sim.add_incoming("noweb", lid, text="oi", ts=NOW - 5)
    grouped = sim.add_incoming("noweb", group, text="bom dia", sender=lid, ts=NOW - 4)
    ours = sim.add_outgoing("noweb", lid, text="Oi!", ts=NOW - 3)
    rows = {m["id"]: m for m in sim.all_messages("noweb")}
    pn = "553188887777@s.whatsapp.net"
    assert {k: v for k, v in rows[direct]["_data"]["key"].items() if "Pn" in k or "Lid" in k} == {
        "senderPn": pn,
        "senderLid": lid,
    }
    assert rows[grouped]["_data"]["key"]["participantPn"] == pn
    assert not any("Alt" in k for row in rows.values() for k in row["_data"]["key"])
    assert "senderPn" not in rows[ours]["_data"]["key"]  # the sender of ours is us
    parse = KINDS["waha"].parse_message
    assert parse(rows[direct], session_id=1).chat.phone == "5531988887777"
    assert parse(rows[grouped], session_id=1).sender.phone == "5531988887777"


async def test_lids_endpoints(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """The lids API maps known LIDs to phones and answers null for unknown ones."""
    sim.add_contact("gows", "5511988887777", lid="123123123@lid")
    sim.add_contact("gows", "5511977776666", lid="456456456@lid", lid_known=False)
    assert (await client.get("/api/gows/lids")).json() == [
        {"lid": "123123123@lid", "pn": "5511988887777@c.us"}
    ]
    assert (await client.get("/api/gows/lids/count")).json() == {"count": 1}
    assert (await client.get("/api/gows/lids/123123123")).json() == {
        "lid": "123123123@lid",
        "pn": "5511988887777@c.us",
    }
    assert (await client.get("/api/gows/lids/456456456%40lid")).json()["pn"] is None
    assert (await client.get("/api/gows/lids/1@c.us")).status_code == 422
    assert (await client.get("/api/gows/lids/pn/5511988887777")).json() == {
        "lid": "123123123@lid",
        "pn": "5511988887777@c.us",
    }
    assert (await client.get("/api/gows/lids/pn/5511900000000")).json()["lid"] is None


async def test_check_exists(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """Absent numbers: WEBJS/NOWEB omit chatId, GOWS sends null; BR ninth digit resolves."""
    sim.add_contact("gows", "553188887777")
    sim.mark_absent("5511900001111")
    found = await client.get(
        "/api/contacts/check-exists", params={"phone": "+5531988887777", "session": "gows"}
    )
    assert found.json() == {"numberExists": True, "chatId": "553188887777@c.us"}
    for session, expected in (
        ("webjs", {"numberExists": False}),
        ("gows", {"numberExists": False, "chatId": None}),
    ):
        params = {"phone": "5511900001111", "session": session}
        assert (await client.get("/api/contacts/check-exists", params=params)).json() == expected


async def test_send_text_response_per_engine(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """sendText answers 201 with the engine's own shape and stores a fromMe `api` message."""
    bodies = {}
    for session in ("webjs", "noweb", "gows"):
        body = {"session": session, "chatId": "5511987650001@c.us", "text": "Olá!"}
        response = await client.post("/api/sendText", json=body)
        assert response.status_code == 201
        bodies[session] = response.json()
    assert bodies["noweb"]["status"] == "PENDING"
    assert bodies["noweb"]["key"]["remoteJid"] == "5511987650001@s.whatsapp.net"
    assert bodies["noweb"]["message"] == {"extendedTextMessage": {"text": "Olá!"}}
    assert bodies["gows"]["id"].startswith("true_5511987650001@c.us_3EB0")
    assert bodies["webjs"]["id"]["_serialized"].startswith("true_5511987650001@c.us_")
    assert [s.route for s in sim.sends] == ["sendText"] * 3
    assert sim.sends[0].body == {"session": "webjs", "chatId": "5511987650001@c.us", "text": "Olá!"}
    stored = sim.get_message("gows", bodies["gows"]["id"])
    assert (stored["fromMe"], stored["source"], stored["body"]) == (True, "api", "Olá!")
    missing = await client.post("/api/sendText", json={"session": "gows", "text": "x"})
    assert missing.status_code == 400
    assert missing.json()["message"] == ["chatId should not be empty"]


async def test_webjs_group_send_lacks_participant_suffix(
    sim: WahaSim, client: httpx.AsyncClient
) -> None:
    """WEBJS group send responses lack the `_participant` suffix that the stored id has."""
    group = "120363000000000001@g.us"
    sim.add_group("webjs", group, subject="Família", participants=[])
    body = {"session": "webjs", "chatId": group, "text": "oi"}
    sent = (await client.post("/api/sendText", json=body)).json()
    stored = sim.all_messages("webjs")[-1]
    assert stored["id"] == sent["id"]["_serialized"] + "_5511911110000@c.us"


async def test_media_sends(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """sendImage/File/Voice/Video store media messages whose files can be downloaded."""
    url_file = json.loads((SAMPLES / "sendFile.url.request.json").read_text())
    requests = {
        "sendImage": json.loads((SAMPLES / "sendImage.url.request.json").read_text()),
        "sendFile": url_file,
        "sendVoice": json.loads((SAMPLES / "sendVoice.url.request.json").read_text()),
        "sendVideo": {
            **url_file,
            "convert": False,
            "file": {"mimetype": "video/mp4", "url": "https://x/v.mp4"},
        },
    }
    for endpoint, body in requests.items():
        response = await client.post(f"/api/{endpoint}", json={**body, "session": "gows"})
        assert response.status_code == 201, endpoint
    assert [s.route for s in sim.sends] == list(requests)
    found = (await client.get("/api/gows/chats/11111111111%40c.us/messages")).json()
    assert [m["hasMedia"] for m in found] == [True] * 4
    document = next(m for m in found if m["_data"]["Message"].get("documentMessage"))
    assert document["media"]["filename"] == "filename.jpeg"
    download = await client.get(document["media"]["url"])
    assert download.status_code == 200 and download.content
    lazy = (
        await client.get(
            "/api/gows/chats/11111111111%40c.us/messages", params={"downloadMedia": "false"}
        )
    ).json()
    assert [m["media"] for m in lazy] == [None] * 4
    no_convert = {**requests["sendVoice"], "session": "gows"}
    del no_convert["convert"]
    assert (await client.post("/api/sendVoice", json=no_convert)).status_code == 400


async def test_media_sends_are_plus_only_on_old_core() -> None:
    """Before 2026.6.1 the Core tier answers media sends with 422."""
    sim = make_sim(version="2026.2.1")
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://w", headers={"X-Api-Key": KEY}
    ) as c:
        body = {"session": "gows", "chatId": "1@c.us", "file": {"url": "https://x/a.jpg"}}
        response = await c.post("/api/sendImage", json=body)
    assert response.status_code == 422
    assert "available only in Plus version" in response.json()["message"]


async def test_send_seen_is_recorded(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """sendSeen answers 201 and is recorded."""
    body = json.loads((SAMPLES / "sendSeen.request.json").read_text())
    response = await client.post("/api/sendSeen", json={**body, "session": "noweb"})
    assert response.status_code == 201
    assert sim.seen == [{**body, "session": "noweb"}]


def test_hmac_matches_the_docs_test_vector() -> None:
    """sign_body reproduces the documented X-Webhook-Hmac test vector."""
    vector = json.loads((SAMPLES / "webhook.hmac.test-vector.reconstructed.json").read_text())
    digest = sign_body(vector["key"], vector["rawBody"].encode())
    assert digest == vector["headers"]["X-Webhook-Hmac"]


async def test_deliver_signs_envelope_and_retries(sim: WahaSim) -> None:
    """deliver() posts the WAHA envelope with HMAC headers and retries a 500 with the same body."""
    receiver = Receiver(500)
    hook = webhook_config("http://crm/hook", events=["message"], hmac_key="my-secret-key")
    sim.session("gows").config["webhooks"] = [hook]
    sim.session("gows").config["metadata"] = {"tenant": "acme"}
    msg_id = sim.add_incoming("gows", "5511987650001", text="Oi", ts=NOW)
    async with receiver.client() as http:
        sim.http = http
        [result] = await sim.deliver_message("gows", msg_id, delay_s=0)
    assert (result.ok, result.attempts, result.status) == (True, 2, 200)
    (path, headers, raw), (_, again, raw_again) = receiver.seen
    assert path == "/hook" and raw == raw_again
    assert headers["x-webhook-hmac"] == sign_body("my-secret-key", raw)
    assert headers["x-webhook-hmac-algorithm"] == "sha512"
    assert headers["x-webhook-request-id"] == again["x-webhook-request-id"]
    envelope = json.loads(raw)
    assert headers["x-webhook-timestamp"] == str(envelope["timestamp"]) == str(NOW * 1000)
    assert envelope["id"].startswith("evt_") and len(envelope["id"]) == 30
    assert list(envelope) == [
        "id",
        "timestamp",
        "event",
        "session",
        "metadata",
        "me",
        "payload",
        "environment",
        "engine",
    ]
    assert (envelope["event"], envelope["engine"], envelope["payload"]["id"]) == (
        "message",
        "GOWS",
        msg_id,
    )
    assert envelope["metadata"] == {"tenant": "acme"}


async def test_deliver_stops_after_bounded_attempts(sim: WahaSim) -> None:
    """A receiver that keeps failing gets 1 + retries.attempts tries, then WAHA gives up."""
    receiver = Receiver(*[503] * 10)
    hook = webhook_config("http://crm/h", events=["*"], retries={"attempts": 3, "delaySeconds": 9})
    sim.session("noweb").config["webhooks"] = [hook]
    async with receiver.client() as http:
        results = await sim.deliver(
            "noweb", "session.status", {"status": "WORKING"}, delay_s=0, http=http
        )
        skipped = await sim.deliver("noweb", "engine.event", {}, delay_s=0, http=http)
    assert [(r.ok, r.attempts, r.status) for r in results] == [(False, 4, 503)]
    assert skipped == []  # "*" excludes engine.event
    assert len(receiver.seen) == 4 and len(sim.deliveries) == 4


def test_seed_is_deterministic_and_varied() -> None:
    """The same seed gives the same world, with every message kind, LIDs, groups and BR jids."""
    first, second = make_sim(), make_sim()
    for sim in (first, second):
        seed_waha(sim, "noweb", chats=20, messages_per_chat=50, now=NOW, seed=42)
    messages = first.all_messages("noweb")
    assert messages == second.all_messages("noweb")
    assert len(messages) == 1000
    protos = {next(iter(m["_data"]["message"])) for m in messages}
    assert protos >= {
        "conversation",
        "imageMessage",
        "videoMessage",
        "audioMessage",
        "documentMessage",
        "stickerMessage",
        "locationMessage",
        "contactMessage",
        "reactionMessage",
    }
    assert any(m["_data"]["message"].get("audioMessage", {}).get("ptt") for m in messages)
    chats = {m["id"].split("_")[1] for m in messages}
    assert any(c.endswith("@lid") for c in chats) and any(c.endswith("@g.us") for c in chats)
    assert any(len(c.split("@")[0]) == 12 and c.startswith("55") for c in chats)
    lids = first.session("noweb").lids
    assert None in lids.values() and any(lids.values())
    assert any(m["fromMe"] for m in messages) and any(
        m["participant"] for m in messages if "participant" in m
    )
    stamps = [m["timestamp"] for m in messages]
    assert len(set(stamps)) < len(stamps)  # some share the same second
    assert min(stamps) >= NOW - 14 * 86_400 and max(stamps) <= NOW
    docs = [m for m in messages if m["_data"]["message"].get("documentMessage")]
    assert all(m["_data"]["message"]["documentMessage"]["fileName"] for m in docs)


def test_webjs_seed_has_no_reactions() -> None:
    """WEBJS sessions are seeded without reaction messages (whatsapp-web.js does not list them)."""
    sim = make_sim()
    seed_waha(sim, "webjs", chats=5, messages_per_chat=40, now=NOW)
    assert {m["_data"]["type"] for m in sim.all_messages("webjs")}.isdisjoint({"reaction"})


def test_bulk_sessions_are_cheap() -> None:
    """A bench can create 500 sessions x 20 chats quickly."""
    sim = WahaSim(api_key=KEY)
    started = time.perf_counter()
    names = seed_waha_bulk(sim, sessions=500, chats=20, messages_per_chat=1, now=NOW)
    assert time.perf_counter() - started < 5
    assert len(names) == 500 and names[0] == "bench-0000"
    assert len(sim.session("bench-0499").chats) == 20


async def test_add_incoming_media_is_visible(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """add_incoming_media stores a media message that the API returns with a download URL."""
    msg_id = sim.add_incoming_media(
        "webjs", "5511987650001", kind="document", filename="boleto.pdf"
    )
    [found] = (await client.get("/api/webjs/chats/5511987650001@c.us/messages")).json()
    assert found["id"] == msg_id
    assert found["media"]["filename"] == "boleto.pdf"
    assert found["media"]["url"] == f"http://waha/api/files/webjs/{msg_id}.pdf"
    assert sim.webhook_payload("webjs", msg_id)["media"]["url"].startswith("http://localhost:3000/")


async def test_fault_kinds(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """Queued faults: 429 has Retry-After, truncated bodies are invalid JSON, 502 is HTML."""
    sim.faults.push(Fault("429", retry_after_s=7), "truncated", "502", "500")
    limited = await client.get("/api/sessions")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
    cut = await client.get("/api/sessions")
    assert cut.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    gateway = await client.get("/api/sessions")
    assert gateway.status_code == 502 and "text/html" in gateway.headers["content-type"]
    assert (await client.get("/api/sessions")).json()["statusCode"] == 500
    assert (await client.get("/api/sessions")).status_code == 200
    assert sim.faults.injected == {"429": 1, "truncated": 1, "502": 1, "500": 1}


async def test_reset_fault_and_route_targeting(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """A reset raises a transport error; a route-targeted fault waits for its route."""
    sim.faults.push(Fault("reset", route="chats.messages"))
    assert (await client.get("/api/sessions")).status_code == 200
    with pytest.raises(httpx.TransportError):
        await client.get("/api/gows/chats/all/messages")
    assert isinstance(SimulatedReset("x"), httpx.RemoteProtocolError)
    assert sim.requests["chats.messages"] == 1 and sim.requests["sessions.list"] == 1


async def test_failure_rate_and_request_counters(sim: WahaSim, client: httpx.AsyncClient) -> None:
    """rate=0.3 with a fixed seed fails roughly 30 % of 200 requests; counters see them all."""
    sim.faults.rate = 0.3
    statuses = [(await client.get("/api/gows/lids/count")).status_code for _ in range(200)]
    failures = sum(1 for s in statuses if s != 200)
    assert 45 <= failures <= 75
    assert sim.requests["lids.count"] == 200 and sim.requests_total == 200
    sim.faults.clear()
    assert (await client.get("/api/gows/lids/count")).status_code == 200


async def test_over_real_loopback(sim: WahaSim) -> None:
    """serve() exposes the sim on a loopback port; slow faults time clients out, resets drop."""
    sim.add_incoming("gows", "5511987650001", text="via TCP", ts=NOW)
    async with (
        serve(sim.app) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"X-Api-Key": KEY}, timeout=2) as http,
    ):
        assert base_url.startswith("http://127.0.0.1:")
        found = (await http.get("/api/gows/chats/5511987650001%40c.us/messages")).json()
        assert [m["body"] for m in found] == ["via TCP"]
        sim.faults.push(Fault("slow", delay_s=1.0))
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/api/sessions", timeout=0.2)
        sim.faults.push("reset")
        with pytest.raises(httpx.TransportError):
            await http.get("/api/sessions")
        assert (await http.get("/api/sessions")).status_code == 200
