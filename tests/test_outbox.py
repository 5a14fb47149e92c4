"""The durable outbox against both simulators: bodies, echoes and acks, no double sends.

The simulators are the fakes: sends go to `WahaSim` / `EvolutionSim` (in process through
`httpx.ASGITransport`, or over loopback where a client timeout must really fire), webhooks
come back through the daemon's own HTTP app. `Stall` wraps a simulator app to accept a send
and then hold its answer — the "request reached the provider, the answer was lost" case.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.conftest import Recorder
from tests.factories import T0, msg
from wasync.api.app import AppContext, create_app
from wasync.config import Settings, parse
from wasync.events import AckLevel, MessageType
from wasync.events import Message as WaMessage
from wasync.metrics import Metrics
from wasync.outbox import (
    NotOnWhatsApp,
    NumberBook,
    Outbox,
    Queued,
    SendRejected,
    SendRequest,
    data_request,
    media_request,
    parse_to,
    text_request,
)
from wasync.pipeline import Pipeline
from wasync.providers import evolution, waha
from wasync.providers.sending import Outgoing
from wasync.ratelimit import TokenBucket
from wasync.registry import Registry, sync
from wasync.sender import Sender, match_sent, wait_final
from wasync.sim import EvolutionSim, Fault, WahaSim, serve, webhook_config
from wasync.store import Store

WAHA_KEY = "waha-sim-key"
EVO_KEY = "evolution-sim-key"
JWT_SECRET = "outbox-test-secret-with-at-least-32-bytes"
PHONE = "5511987650001"
REPO = Path(__file__).resolve().parent.parent
FAST = {
    "rate_per_minute": 60_000,
    "burst": 1000,
    "timeout_s": 2,
    "lease_s": 3,
    "backoff_s": 0,
    "reconcile_delay_s": 0,
    "reconcile_grace_s": 0,  # resend once a reconcile finds nothing; the grace's tests set it
    "poll_interval_s": 0.05,
    "metrics_interval_s": 0.05,
}


HOOK_KEY = "outbox-tests-webhook-key-of-32-bytes!"  # signs both simulators' webhooks


def make_settings(url: str, waha_url: str, evo_url: str, **send: Any) -> Settings:
    """One tenant with a WAHA session `default` and an Evolution instance `evo`."""
    sessions = [
        {"name": "default", "provider": "waha", "base_url": waha_url, "api_key": WAHA_KEY,
         "webhook_secret": HOOK_KEY},
        {"name": "evo", "provider": "evolution", "base_url": evo_url, "api_key": EVO_KEY,
         "webhook_secret": HOOK_KEY},
    ]  # fmt: skip
    return parse(
        {
            "database": {"url": url},
            "http": {"port": 0},
            "webhook": {"enabled": True},
            "auth": {"jwt_secret": JWT_SECRET},
            "poll": {"backoff_s": 0, "max_attempts": 2},
            "send": {**FAST, **send},
            "tenants": [{"id": "acme", "admins": ["boss"], "sessions": sessions}],
        }
    )


class Hosts(httpx.AsyncBaseTransport):
    """Routes requests by host name to in-process ASGI apps (the simulators, our app)."""

    def __init__(self, apps: dict[str, ASGIApp]) -> None:
        self.apps = {host: httpx.ASGITransport(app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Hand the request to the app serving its host."""
        return await self.apps[request.url.host].handle_async_request(request)


class Stall:
    """Lets the wrapped simulator handle the next request whose path contains `armed`, then
    holds the answer until `release` is set: the provider accepted, the client never hears."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.armed: str | None = None
        self.accepted = asyncio.Event()
        self.release = asyncio.Event()
        self.times: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        path = scope.get("path", "")
        if scope["type"] == "http" and "send" in path.lower():
            self.times.append(time.monotonic())
        if scope["type"] != "http" or self.armed is None or self.armed not in path:
            await self.app(scope, receive, send)
            return
        self.armed = None
        held: list[Message] = []

        async def capture(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, capture)
        self.accepted.set()
        await self.release.wait()
        with contextlib.suppress(Exception):  # the client is long gone
            for message in held:
                await send(message)


@dataclass
class Env:
    """A store, pipeline, outbox and both simulators, wired in process."""

    settings: Settings
    store: Store
    registry: Registry
    pipeline: Pipeline
    outbox: Outbox
    client: httpx.AsyncClient
    waha: WahaSim
    evo: EvolutionSim
    recorder: Recorder
    metrics: Metrics
    stalls: dict[str, Stall] = field(default_factory=dict)

    def ref(self, provider: str) -> Any:
        """The session of `waha` or `evolution`."""
        return self.outbox.session("acme", "default" if provider == "waha" else "evo")

    async def queue(
        self, provider: str, request: SendRequest, to: str = PHONE, key: str | None = None
    ) -> Queued:
        """Check the number and queue `request` on the provider's session."""
        target = await self.outbox.target_phone(self.ref(provider), parse_to(to))
        return await self.outbox.enqueue(target, request, key)

    async def drain(self, rows: list[Queued], timeout_s: float = 20) -> dict[int, Queued]:
        """Run a sender until these rows are SENT or FAILED."""
        refs = [self.ref("waha"), self.ref("evolution")]
        async with Sender(self.outbox, refs):
            return await wait_final(self.outbox, [r.id for r in rows], timeout_s=timeout_s)

    async def sql(self, query: str, **params: Any) -> list[Any]:
        """Rows of a read query."""
        async with self.store.read() as conn:
            return list(await conn.execute(text(query), params))


def make_sims() -> tuple[WahaSim, EvolutionSim]:
    """Both simulators with one working session each and webhooks to `http://wasync`."""
    waha = WahaSim(api_key=WAHA_KEY, seed=3)
    hook = webhook_config(
        "http://wasync/api/webhooks/waha", events=["message.any", "message.ack"], hmac_key=HOOK_KEY
    )
    waha.add_session("default", engine="WEBJS", webhooks=[hook])
    evo = EvolutionSim(api_key=EVO_KEY, seed=4)
    evo.add_instance("evo")
    evo.instance("evo").webhook = {
        "url": "http://wasync/api/webhooks/evolution",
        "enabled": True,
        "events": ["SEND_MESSAGE", "MESSAGES_UPSERT", "MESSAGES_UPDATE"],
        "webhookByEvents": False,
        "headers": {"jwt_key": HOOK_KEY},  # what `wasync webhooks register` sets
    }
    return waha, evo


@contextlib.asynccontextmanager
async def environment(
    db_url: str, *, loopback: bool = False, evo_url: str | None = None, **send: Any
) -> AsyncIterator[Env]:
    """The wired environment; `loopback` serves the (stallable) sims on real ports;
    `evo_url` points the Evolution session elsewhere (a dead port)."""
    waha, evo = make_sims()
    stalls = {"waha": Stall(waha.app), "evolution": Stall(evo.app)}
    async with contextlib.AsyncExitStack() as stack:
        if loopback:
            waha_url = await stack.enter_async_context(serve(stalls["waha"]))
            evolution_url = await stack.enter_async_context(serve(stalls["evolution"]))
        else:
            waha_url, evolution_url = "http://waha", "http://evo"
        settings = make_settings(db_url, waha_url, evo_url or evolution_url, **send)
        store = await stack.enter_async_context(Store(db_url))
        await store.upgrade()
        registry = await sync(store, settings)
        recorder = Recorder()
        pipeline = await stack.enter_async_context(Pipeline(store, subscribers=[recorder]))
        metrics = Metrics()
        ctx = AppContext(
            settings=settings, store=store, registry=registry, pipeline=pipeline, metrics=metrics
        )
        apps: dict[str, ASGIApp] = {
            "waha": stalls["waha"],
            "evo": stalls["evolution"],
            "wasync": create_app(ctx),
        }
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=None if loopback else Hosts(apps))
        )
        hooks = await stack.enter_async_context(httpx.AsyncClient(transport=Hosts(apps)))
        waha.http = evo.http = hooks
        outbox = await stack.enter_async_context(
            Outbox(settings, store, registry, pipeline, client, metrics=metrics)
        )
        ctx.outbox = outbox
        env = Env(settings, store, registry, pipeline, outbox, client, waha, evo, recorder, metrics)
        env.stalls = stalls
        try:
            yield env
        finally:
            for stall in stalls.values():
                stall.release.set()


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[Env]:
    """The environment with in-process simulators."""
    async with environment(db_url) as e:
        yield e


PDF = b"%PDF-1.4\n" + b"x" * 100


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Small local media files."""
    out = {}
    for name, data in {
        "photo.jpg": b"\xff\xd8\xff" + b"j" * 64,
        "clip.mp4": b"\x00\x00\x00\x18ftypmp4" + b"v" * 64,
        "song.mp3": b"ID3" + b"a" * 64,
        "note.ogg": b"OggS" + b"o" * 64,
        "offer.pdf": PDF,
    }.items():
        path = tmp_path / name
        path.write_bytes(data)
        out[name] = path
    return out


def _media(kind: str, source: str | Path, caption: str | None = None) -> SendRequest:
    return media_request(kind, str(source), caption=caption, max_bytes=1_000_000, allow_files=True)


# --- bodies -------------------------------------------------------------------------------------


async def test_waha_text_and_every_media_type_reach_the_right_endpoint(
    env: Env, files: dict[str, Path]
) -> None:
    """Text, image, video, audio, voice and document go to WAHA's send routes with its bodies."""
    url = "https://cdn.example.com/promo.jpg"
    requests = [
        text_request("Olá! Tudo bem?"),
        _media("image", url, "Promoção"),
        _media("image", files["photo.jpg"], "Foto"),
        _media("video", files["clip.mp4"], "Vídeo"),
        _media("audio", files["song.mp3"]),
        _media("voice", files["note.ogg"]),
        _media("document", files["offer.pdf"], "Proposta"),
    ]
    rows = [await env.queue("waha", r) for r in requests]
    done = await env.drain(rows)
    assert {r.status for r in done.values()} == {"SENT"}
    sends = env.waha.sends
    assert [s.route for s in sends] == [
        "sendText", "sendImage", "sendImage", "sendVideo", "sendFile", "sendVoice", "sendFile",
    ]  # fmt: skip
    chat = f"{PHONE}@c.us"
    assert sends[0].body == {"session": "default", "chatId": chat, "text": "Olá! Tudo bem?"}
    assert sends[1].body["file"] == {"mimetype": "image/jpeg", "url": url, "filename": "promo.jpg"}
    assert sends[1].body["caption"] == "Promoção"
    local = sends[2].body["file"]
    assert base64.b64decode(local["data"]) == files["photo.jpg"].read_bytes()
    assert (local["mimetype"], local["filename"]) == ("image/jpeg", "photo.jpg")
    assert sends[3].body["convert"] is False and sends[3].body["file"]["mimetype"] == "video/mp4"
    assert sends[5].body["convert"] is True and "caption" not in sends[5].body
    assert sends[6].body["file"]["filename"] == "offer.pdf"
    assert sends[6].body["file"]["mimetype"] == "application/pdf"
    ids = {r.provider_message_id for r in done.values()}
    assert ids == {s.message_id.split("_")[2] for s in sends if s.message_id}


async def test_evolution_text_and_every_media_type_reach_the_right_endpoint(
    env: Env, files: dict[str, Path]
) -> None:
    """Evolution gets raw base64 (no `data:` prefix), `fileName`, and voice as WhatsApp audio."""
    requests = [
        text_request("Bom dia"),
        _media("image", "https://cdn.example.com/a.png", "Legenda"),
        _media("video", files["clip.mp4"]),
        _media("audio", files["song.mp3"]),
        _media("voice", files["note.ogg"]),
        _media("document", files["offer.pdf"], "Proposta"),
    ]
    rows = [await env.queue("evolution", r) for r in requests]
    done = await env.drain(rows)
    assert {r.status for r in done.values()} == {"SENT"}, [r.last_error for r in done.values()]
    sends = env.evo.sends
    assert [s.route for s in sends] == [
        "sendText", "sendMedia", "sendMedia", "sendMedia", "sendWhatsAppAudio", "sendMedia",
    ]  # fmt: skip
    jid = f"{PHONE}@s.whatsapp.net"
    assert sends[0].body == {"number": jid, "text": "Bom dia"}
    assert sends[1].body == {
        "number": jid,
        "mediatype": "image",
        "media": "https://cdn.example.com/a.png",
        "mimetype": "image/png",
        "caption": "Legenda",
        "fileName": "a.png",
    }
    assert sends[3].body["mediatype"] == "audio"
    assert sends[4].body == {
        "number": jid,
        "audio": base64.b64encode(files["note.ogg"].read_bytes()).decode(),
    }
    doc = sends[5].body
    assert not doc["media"].startswith("data:")
    assert base64.b64decode(doc["media"]) == PDF
    assert (doc["mediatype"], doc["fileName"], doc["caption"]) == (
        "document",
        "offer.pdf",
        "Proposta",
    )


@pytest.mark.parametrize("engine", ["WEBJS", "NOWEB", "GOWS"])
async def test_waha_message_id_is_read_from_every_engine_answer(db_url: str, engine: str) -> None:
    """Each WAHA engine answers a send in its own shape; the bare id is stored for all."""
    async with environment(db_url) as env:
        env.waha.session("default").engine = engine
        row = await env.queue("waha", text_request("oi"))
        done = await env.drain([row])
        assert done[row.id].provider_message_id == env.waha.sends[0].message_id.split("_")[2]


# --- echo and acks ------------------------------------------------------------------------------


async def test_waha_echo_and_acks_end_in_one_row_at_read(env: Env) -> None:
    """The `message.any` echo dedupes against the sent row; acks move it to READ."""
    row = await env.queue("waha", text_request("Seu pedido saiu"))
    await env.drain([row])
    waha_id = env.waha.sends[0].message_id
    assert waha_id is not None
    [echo] = await env.waha.deliver_message("default", waha_id, event="message.any", delay_s=0)
    assert echo.status == 200
    for level in (2, 3):
        payload = env.waha.set_ack("default", waha_id, level)
        [hook] = await env.waha.deliver("default", "message.ack", payload, delay_s=0)
        assert hook.status == 200
    rows = await env.sql("SELECT provider_message_id, ack, from_me, source FROM messages")
    assert rows == [(waha_id.split("_")[2], int(AckLevel.READ), True, "outbox")]
    types = [e.type for e in env.recorder.events]
    assert types.count("chat:new-message") == 1
    assert types.count("chat:message-ack") >= 2


async def test_evolution_echo_and_acks_end_in_one_row_at_read(env: Env) -> None:
    """`send.message` and `messages.upsert` echoes dedupe; `messages.update` READ applies."""
    row = await env.queue("evolution", text_request("Obrigado!"))
    await env.drain([row])
    key = env.evo.sends[0].message_id
    assert key is not None
    for event in ("send.message", "messages.upsert"):
        got = await env.evo.deliver_message("evo", key, event=event, delay_s=0)
        assert got is not None and got.status == 200
    for status in ("DELIVERY_ACK", "READ"):
        data = env.evo.set_status("evo", key, status)
        got = await env.evo.deliver("evo", "messages.update", data, delay_s=0)
        assert got is not None and got.status == 200
    rows = await env.sql("SELECT provider_message_id, ack FROM messages")
    assert rows == [(key, int(AckLevel.READ))]


async def test_an_echo_that_wins_the_race_is_merged_into_the_sent_row(db_url: str) -> None:
    """Echo and ack ingested while the send answer is in flight: one row, the ack kept."""
    async with environment(db_url, loopback=True) as env:
        stall = env.stalls["waha"]
        stall.armed = "/api/sendText"
        row = await env.queue("waha", text_request("corrida"))
        async with Sender(env.outbox, [env.ref("waha")]):
            await asyncio.wait_for(stall.accepted.wait(), 30)
            waha_id = env.waha.sends[0].message_id
            assert waha_id is not None
            await env.waha.deliver_message("default", waha_id, event="message.any", delay_s=0)
            ack = env.waha.set_ack("default", waha_id, 3)
            await env.waha.deliver("default", "message.ack", ack, delay_s=0)
            assert len(await env.sql("SELECT id FROM messages")) == 2
            stall.release.set()
            done = await wait_final(env.outbox, [row.id], timeout_s=10)
    assert done[row.id].status == "SENT"
    rows = await env.sql("SELECT id, provider_message_id, ack FROM messages")
    assert rows == [(row.message_id, waha_id.split("_")[2], int(AckLevel.READ))]
    assert len(env.waha.sends) == 1


# --- numbers, idempotency, validation -----------------------------------------------------------


@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_a_number_not_on_whatsapp_queues_nothing(env: Env, provider: str) -> None:
    """The provider's number check refuses the phone; no outbox row, no message row."""
    (env.waha if provider == "waha" else env.evo).mark_absent("5511900001111")
    with pytest.raises(NotOnWhatsApp, match="not on WhatsApp"):
        await env.queue(provider, text_request("oi"), to="+55 11 90000-1111")
    assert await env.sql("SELECT count(*) FROM outbox") == [(0,)]
    assert await env.sql("SELECT count(*) FROM messages") == [(0,)]


@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_brazilian_eight_digit_accounts_get_the_jid_the_provider_returns(
    env: Env, provider: str
) -> None:
    """A 9-digit number whose account is the old 8-digit form is sent to the provider's jid,
    and stored in the chat of the canonical 9-digit phone."""
    sim = env.waha if provider == "waha" else env.evo
    sim.directory.register("553188887777")
    row = await env.queue(provider, text_request("oi"), to="(31) 98888-7777")
    await env.drain([row])
    body = sim.sends[0].body
    sent_to = body["chatId"] if provider == "waha" else body["number"]
    assert sent_to.split("@")[0] == "553188887777"
    chats = await env.sql("SELECT phone, jid FROM chats")
    assert chats == [("5531988887777", "5531988887777@s.whatsapp.net")]


async def test_number_checks_are_cached(env: Env) -> None:
    """A second send to the same number does not ask the provider again."""
    for _ in range(3):
        await env.queue("evolution", text_request("oi"))
    assert env.evo.requests["chat.whatsappNumbers"] == 1


async def test_the_same_idempotency_key_returns_the_same_row(env: Env) -> None:
    """A retried request with its key gets the first row back; one message goes out."""
    first = await env.queue("waha", text_request("uma vez"), key="req-1")
    again = await env.queue("waha", text_request("uma vez"), key="req-1")
    assert (first.created, again.created, again.id) == (True, False, first.id)
    await env.drain([first])
    assert len(env.waha.sends) == 1
    assert await env.sql("SELECT count(*) FROM messages") == [(1,)]


def test_media_is_checked_before_queueing(files: dict[str, Path]) -> None:
    """Too large, wrong mimetype and missing files are refused with a clear message."""
    with pytest.raises(SendRejected, match=r"limit is .* max_media_bytes"):
        media_request("image", str(files["photo.jpg"]), max_bytes=10, allow_files=True)
    with pytest.raises(SendRejected, match="image must be image/"):
        media_request("image", str(files["offer.pdf"]), max_bytes=10**6, allow_files=True)
    with pytest.raises(SendRejected, match="no such file"):
        media_request("video", "/nope/x.mp4", max_bytes=10**6, allow_files=True)
    with pytest.raises(SendRejected, match="URL or base64"):
        media_request("image", str(files["photo.jpg"]), max_bytes=10**6, allow_files=False)


def test_a_local_file_is_checked_by_its_bytes(files: dict[str, Path], tmp_path: Path) -> None:
    """A file's type comes from its bytes, not its name: a text file or a PNG named `.mp4` is
    refused naming what it holds; a real image keeps its type."""
    note = tmp_path / "hostname"
    note.write_text("box\n")
    with pytest.raises(SendRejected, match=r"image must be image/\* but .*hostname is text"):
        media_request("image", str(note), max_bytes=10**6, allow_files=True)
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(SendRejected, match=r"video must be video/\* but .* is image/png"):
        media_request("video", str(fake), max_bytes=10**6, allow_files=True)
    unnamed = tmp_path / "photo"
    unnamed.write_bytes(files["photo.jpg"].read_bytes())
    got = media_request("image", str(unnamed), max_bytes=10**6, allow_files=True)
    assert got.mimetype == "image/jpeg"
    doc = media_request("document", str(note), max_bytes=10**6, allow_files=True)
    assert doc.kind == "document" and doc.filename == "hostname"


def test_a_file_name_carries_its_mimetypes_extension(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """Evolution >= 2.3.3 types media by the file name: a name whose extension does not give
    the known type gets the type's; one that does, or of an unknown type, is kept."""
    pdf = base64.b64encode(PDF).decode()

    def url(path: str, mimetype: str | None = None) -> str | None:
        got = media_request(
            "document", f"https://crm.example.com{path}", mimetype=mimetype, max_bytes=10**6,
            allow_files=False,
        )  # fmt: skip
        return got.filename

    assert url("/attachments/42", "application/pdf") == "42.pdf"
    assert url("/files/Contrato.PDF", "application/pdf") == "Contrato.PDF"
    assert url("/attachments/42") == "42"  # nothing says what it is: as before
    assert url("/", "application/pdf") == "document.pdf"  # Evolution would make one up
    assert url("/a/42", "application/x-wasync-unknown") == "42"
    named = data_request(
        "document", pdf, mimetype="application/pdf", filename="proposta", max_bytes=10**6
    )
    assert named.filename == "proposta.pdf"
    photo = tmp_path / "foto"
    photo.write_bytes(files["photo.jpg"].read_bytes())
    image = media_request("image", str(photo), max_bytes=10**6, allow_files=True)
    assert image.filename == "foto.jpg"


def test_to_names_a_phone_a_jid_or_a_chat() -> None:
    """`--to`: phones and phone jids are phones; chat ids, group jids and LIDs name chats."""
    from wasync.recipients import chat_reference

    assert chat_reference("+55 11 98765-4321") is None
    assert chat_reference("5511987654321@s.whatsapp.net") is None
    assert chat_reference("42") == ("id", 42)
    assert chat_reference("chat:1234567890") == ("id", 1234567890)
    assert chat_reference("120363012345678901@g.us") == ("jid", "120363012345678901@g.us")
    assert chat_reference("76201477542116@lid") == ("jid", "76201477542116@lid")
    with pytest.raises(SendRejected, match="not a chat id"):
        chat_reference("chat:abc")


async def test_queueing_writes_row_message_and_event_at_once(env: Env) -> None:
    """The outbox row, a PENDING from-me message and `chat:new-message` exist before sending."""
    row = await env.queue("waha", text_request("já"))
    assert row.status == "QUEUED"
    [msg] = await env.sql("SELECT id, provider_message_id, ack, from_me, body FROM messages")
    assert msg == (row.message_id, f"wasync-{row.id}", int(AckLevel.PENDING), True, "já")
    assert [e.type for e in env.recorder.events][-1] == "chat:new-message"
    leads = await env.sql("SELECT phone FROM leads")
    assert leads == [(PHONE,)]


# --- no double sends ------------------------------------------------------------------------------

SEND_ROUTE = {
    "waha": ("send.text", "/api/sendText"),
    "evolution": ("message.sendText", "/sendText/"),
}


def _sim(env: Env, provider: str) -> WahaSim | EvolutionSim:
    return env.waha if provider == "waha" else env.evo


def _from_me(env: Env, provider: str) -> list[Any]:
    """Our own messages the simulator holds (its ground truth)."""
    if provider == "waha":
        return [m for m in env.waha.all_messages("default") if m["fromMe"]]
    return [m for m in env.evo.all_messages("evo") if m["key"]["fromMe"]]


READ_ROUTE = {"waha": "chats.messages", "evolution": "chat.findMessages"}


@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_a_send_the_provider_finishes_after_the_client_gave_up_goes_out_once(
    db_url: str, provider: str
) -> None:
    """The provider takes 1.5 s over a send the client gives up on at 0.4 s, and finishes it
    all the same (`slow`, as WAHA and Evolution do): the row is looked for again until the
    message is there and adopts it. One request, one message, the row SENT with its id; the
    reconciles that found nothing yet gave their attempts back."""
    async with environment(db_url, loopback=True, timeout_s=0.4, reconcile_grace_s=60) as env:
        sim = _sim(env, provider)
        sim.faults.push(Fault("slow", delay_s=1.5, route=SEND_ROUTE[provider][0]))
        row = await env.queue(provider, text_request("devagar"))
        done = (await env.drain([row], timeout_s=60))[row.id]
        assert sim.faults.injected["slow"] == 1
    [mine] = _from_me(env, provider)
    stored = mine["id"].split("_")[2] if provider == "waha" else mine["key"]["id"]
    assert len(sim.sends) == 1
    assert (done.status, done.provider_message_id, done.attempts) == ("SENT", stored, 2)
    assert await env.sql("SELECT provider_message_id FROM messages") == [(stored,)]


@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_a_send_that_never_reached_the_provider_goes_out_after_the_grace(
    db_url: str, provider: str
) -> None:
    """The connection drops before the provider saw the send (`reset`): the outcome is
    unknown, so the row stays UNKNOWN, looked for again and again, until `reconcile_grace_s`
    after the request; then it is sent again, once."""
    grace_s = 2.0
    async with environment(db_url, reconcile_grace_s=grace_s) as env:
        sim, route = _sim(env, provider), SEND_ROUTE[provider][0]
        sim.faults.push(Fault("reset", route=route))
        row = await env.queue(provider, text_request("caiu no caminho"))
        async with Sender(env.outbox, [env.ref(provider)]):
            await until(lambda: _status_is(env, row.id, "UNKNOWN"), 30, "the row UNKNOWN")
            done = (await wait_final(env.outbox, [row.id], timeout_s=60))[row.id]
    sends = [r.at for r in sim.request_log if r.route == route]
    reads = [r.at for r in sim.request_log if r.route == READ_ROUTE[provider]]
    assert len(sends) == 2 and sends[1] - sends[0] >= grace_s - 0.5  # not at once
    assert len([t for t in reads if sends[0] < t < sends[1]]) >= 2
    assert (done.status, done.attempts) == ("SENT", 2)
    assert len(_from_me(env, provider)) == 1


async def _status_is(env: Env, outbox_id: int, status: str) -> bool:
    """True while the row has this status."""
    rows = await env.sql("SELECT status FROM outbox WHERE id = :i", i=outbox_id)
    return bool(rows[0][0] == status)


@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_a_send_accepted_but_unanswered_is_reconciled_not_resent(
    db_url: str, provider: str
) -> None:
    """The simulator stores the message and the answer never comes: the chat is read back and
    the message adopted — one send request, one message, the provider's id stored."""
    async with environment(db_url, loopback=True, timeout_s=0.4) as env:
        env.stalls[provider].armed = SEND_ROUTE[provider][1]
        row = await env.queue(provider, text_request("aceita e cala"))
        done = (await env.drain([row]))[row.id]
    sim = _sim(env, provider)
    assert len(sim.sends) == 1 and len(_from_me(env, provider)) == 1
    assert sim.sends[0].message_id is not None
    assert done.provider_message_id == sim.sends[0].message_id.split("_")[-1]
    assert (done.status, done.attempts) == ("SENT", 2)


async def test_refusals_before_acceptance_are_retried(env: Env) -> None:
    """429 (after Retry-After), 503 and a 500 (reconciled first) end in one send."""
    faults = [Fault(kind, retry_after_s=0, route="send.text") for kind in ("429", "503", "500")]
    env.waha.faults.push(*faults)
    row = await env.queue("waha", text_request("insistente"))
    done = (await env.drain([row]))[row.id]
    assert (done.status, done.attempts) == ("SENT", 4)
    assert len(env.waha.sends) == 1 and len(_from_me(env, "waha")) == 1


async def test_an_evolution_500_is_retried_without_a_reconcile(env: Env) -> None:
    """Evolution answers its own 500 only for what fails before the send (the number check,
    media preparation, audio conversion): sent again after the backoff, the chat not read."""
    env.evo.faults.push(Fault("500", route="message.sendText"))
    row = await env.queue("evolution", text_request("de novo"))
    done = (await env.drain([row]))[row.id]
    assert (done.status, done.attempts) == ("SENT", 2)
    assert env.evo.requests["chat.findMessages"] == 0
    assert len(_from_me(env, "evolution")) == 1


def _set_down(env: Env, provider: str, down: bool) -> None:
    """Take the session down (WAHA: STARTING, answering 422; Evolution: closed, answering
    "Connection Closed") or bring it back."""
    if provider == "waha":
        env.waha.set_status("default", "STARTING" if down else "WORKING")
    else:
        env.evo.set_state("evo", "close" if down else "open")


@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_a_session_that_is_down_holds_the_row_until_it_serves_again(
    db_url: str, provider: str
) -> None:
    """WAHA's 422 "Session status is not as expected" and Evolution's "Connection Closed" come
    before sending and ask to be tried later: with the default `max_attempts` (5), ten
    refusals in a row (the fifth failed the row before) only hold it; once the session serves
    again the row goes out, one message, and the refusals spent no attempt."""
    async with environment(db_url, backoff_s=0.01, session_retry_s=0.1) as env:
        assert env.settings.send.max_attempts == 5
        row = await env.queue(provider, text_request("volta logo"))
        _set_down(env, provider, True)
        async with Sender(env.outbox, [env.ref(provider)]):
            await until(lambda: _sends_asked(env, provider, 10), 30, "ten refused sends")
            assert (await env.outbox.statuses([row.id]))[row.id].status != "FAILED"
            _set_down(env, provider, False)
            done = (await wait_final(env.outbox, [row.id], timeout_s=30))[row.id]
    assert (done.status, done.attempts) == ("SENT", 1), done.last_error
    assert len(_from_me(env, provider)) == 1


async def test_a_session_down_past_the_wait_fails_the_row_saying_why(db_url: str) -> None:
    """A session still down `max_session_wait_s` after its first refusal fails the row, with
    the reason and the provider's answer, after waiting (not at the first refusal)."""
    send = {"backoff_s": 0.01, "session_retry_s": 0.1, "max_session_wait_s": 1}
    async with environment(db_url, **send) as env:
        row = await env.queue("evolution", text_request("ninguém atende"))
        _set_down(env, "evolution", True)
        done = (await env.drain([row], timeout_s=30))[row.id]
    assert done.status == "FAILED"
    assert "send.max_session_wait_s" in (done.last_error or "")
    assert "Connection Closed" in (done.last_error or "")
    assert env.evo.requests[SEND_ROUTE["evolution"][0]] >= 3
    assert not _from_me(env, "evolution")


async def _sends_asked(env: Env, provider: str, n: int) -> bool:
    """True once the simulator was asked to send `n` times."""
    return _sim(env, provider).requests[SEND_ROUTE[provider][0]] >= n


@pytest.mark.parametrize(
    "thrown", ["Error: Timed Out", "PrismaClientKnownRequestError: Unique constraint failed"]
)
async def test_an_error_thrown_after_the_send_is_reconciled_not_failed(
    env: Env, thrown: str
) -> None:
    """Evolution answers 400 for anything thrown inside a send, also after WhatsApp took the
    message: the outcome is unknown, so the row is reconciled (adopting the message), never
    FAILED and never sent twice."""
    env.evo.throw_after_send.append(thrown)
    row = await env.queue("evolution", text_request("foi sim"))
    done = (await env.drain([row]))[row.id]
    assert done.status == "SENT", done.last_error
    assert [s.status for s in env.evo.sends] == [400]
    assert done.provider_message_id == env.evo.sends[0].message_id
    assert len(_from_me(env, "evolution")) == 1


async def test_a_base64_document_without_a_filename_gets_one(env: Env) -> None:
    """Evolution refuses a base64 document without `fileName`; wasync names it by its type."""
    request = data_request(
        "document", base64.b64encode(PDF).decode(), mimetype="application/pdf", max_bytes=10**6
    )
    row = await env.queue("evolution", request)
    done = (await env.drain([row]))[row.id]
    assert done.status == "SENT", done.last_error
    assert env.evo.sends[0].body["fileName"] == "document.pdf"


async def test_connect_errors_are_retried_then_fail(db_url: str) -> None:
    """A provider that cannot be reached was surely not sent to: retried, then FAILED."""
    async with environment(db_url) as env:
        row = await env.queue("evolution", text_request("ninguém"))
    dead = "http://127.0.0.1:9"  # discard port: connection refused
    async with environment(db_url, loopback=True, evo_url=dead, max_attempts=2) as env:
        done = (await env.drain([row]))[row.id]
    assert (done.status, done.attempts) == ("FAILED", 2)
    assert "ConnectError (not sent)" in (done.last_error or "")


async def test_a_refused_send_fails_with_an_error_ack(env: Env) -> None:
    """Evolution's 400 for a number that left WhatsApp is final: FAILED at the first attempt,
    the message's ack ERROR, a `chat:message-ack` event."""
    row = await env.queue("evolution", text_request("sumiu"))
    env.evo.mark_absent(PHONE)
    done = (await env.drain([row]))[row.id]
    assert (done.status, done.attempts) == ("FAILED", 1)
    assert '"exists":false' in (done.last_error or "")
    assert await env.sql("SELECT ack FROM messages") == [(int(AckLevel.ERROR),)]
    last = env.recorder.events[-1]
    assert (last.type, last.data["ackName"], last.data["outboxId"]) == (
        "chat:message-ack",
        "ERROR",
        row.id,
    )


async def test_queued_rows_go_out_after_a_restart(db_url: str) -> None:
    """Rows queued by a process that stopped before sending are sent by the next one."""
    async with environment(db_url) as env:
        rows = [await env.queue("waha", text_request(f"depois {i}")) for i in range(3)]
    async with environment(db_url) as env:
        done = await env.drain(rows)
    assert {r.status for r in done.values()} == {"SENT"}
    assert sorted(s.body["text"] for s in env.waha.sends) == ["depois 0", "depois 1", "depois 2"]


async def test_a_row_queued_elsewhere_is_sent_soon_after_the_look_for_due_rows_failed(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An idle lane looks at the outbox itself only every `IDLE_LANE_POLLS` intervals (here
    90-150 s); rows queued by another process are found by the sender's one look per interval.
    That look fails with an error that is not an outage (the table is gone a moment, after
    the lane's first look at start-up): it is logged once, and it goes on, so a row queued
    afterwards leaves within seconds. The lane never saw the error, so only that look can have
    woken it."""

    async def logged() -> bool:
        return "sender's look for due rows" in caplog.text

    async with environment(db_url, poll_interval_s=0.2) as env:
        other = Outbox(env.settings, env.store, env.registry, env.pipeline, env.client)
        async with other, Sender(env.outbox, [env.ref("waha")]):
            # The lane has looked, sent, and looked again (one read right after the send): it
            # then sleeps for 90-150 s.
            first = await env.queue("waha", text_request("primeira"))
            sent = await wait_final(env.outbox, [first.id], timeout_s=45)
            assert sent[first.id].status == "SENT"
            await asyncio.sleep(1)  # that one read
            async with env.store.write() as conn:
                await conn.execute(text("ALTER TABLE outbox RENAME TO outbox_away"))
            await until(logged, 30, "the failed look logged")
            async with env.store.write() as conn:
                await conn.execute(text("ALTER TABLE outbox_away RENAME TO outbox"))
            target = await other.target_phone(env.ref("waha"), parse_to(PHONE))
            row = await other.enqueue(target, text_request("de outro processo"), None)
            assert not other.wakers  # nothing in this process was told of the row
            done = await wait_final(env.outbox, [row.id], timeout_s=45)
        assert done[row.id].status == "SENT"
        assert [s.body["text"] for s in env.waha.sends] == ["primeira", "de outro processo"]
        assert caplog.text.count("sender's look for due rows") == 1
        assert "sender acme/default" not in caplog.text


# --- rate limits and metrics --------------------------------------------------------------------


async def test_two_hundred_sends_leave_at_the_configured_rate(db_url: str) -> None:
    """200 rows queued at once to one session go out at 6000/min: none lost, none doubled."""
    rate_per_s = 100.0
    async with environment(db_url, rate_per_minute=rate_per_s * 60, burst=1) as env:
        texts = [f"campanha {i:03d}" for i in range(200)]
        rows = [await env.queue("waha", text_request(t)) for t in texts]
        done = await env.drain(rows, timeout_s=60)
    times = env.stalls["waha"].times
    assert {r.status for r in done.values()} == {"SENT"}
    assert sorted(s.body["text"] for s in env.waha.sends) == texts
    assert len({r.provider_message_id for r in done.values()}) == 200
    assert len(times) == 200
    assert times[-1] - times[0] >= 199 / rate_per_s * 0.98
    window = 20  # any 20 consecutive sends span at least 19 intervals (minus timer jitter)
    spans = [times[i + window - 1] - times[i] for i in range(len(times) - window + 1)]
    assert min(spans) >= (window - 1) / rate_per_s - 0.01


async def test_queue_depth_is_on_metrics(env: Env) -> None:
    """`wasync_outbox_queued{session}` counts the rows the rate limit holds back."""
    async with contextlib.AsyncExitStack() as stack:
        rows = [await env.queue("waha", text_request(f"m{i}")) for i in range(3)]
        slow = env.settings.send.model_copy(update={"rate_per_minute": 0.001, "burst": 1})
        env.outbox.cfg = slow
        await stack.enter_async_context(Sender(env.outbox, [env.ref("waha")]))
        line = 'wasync_outbox_queued{session="acme/default"} 2.0'

        async def depth_shown() -> bool:
            return line in env.metrics.render().decode()

        await until(depth_shown, 30, "the queue depth")
        app = httpx.AsyncClient(transport=Hosts({"w": create_app(AppContext(
            settings=env.settings, store=env.store, registry=env.registry,
            pipeline=env.pipeline, metrics=env.metrics,
        ))}))  # fmt: skip
        got = (await app.get("http://w/metrics")).text
        await app.aclose()
    assert line in got
    assert len(env.waha.sends) == 1 and len(rows) == 3


# --- real processes: `wasync run` killed mid-send, `wasync send` ---------------------------------


def write_config(path: Path, db_url: str, waha_url: str, evo_url: str, **send: Any) -> Path:
    """A TOML config for subprocesses: the tenant of `make_settings`, polling fast."""
    values = {**FAST, "timeout_s": 1, "lease_s": 2, **send}
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text(
        "\n".join(
            [
                "[database]",
                f"url = {json.dumps(db_url)}",
                "[http]",
                "port = 0",
                "[poll]",
                "interval_s = 0.3",
                "jitter_s = 0",
                "backoff_s = 0",
                "[send]",
                *lines,
                "[[tenants]]",
                'id = "acme"',
                "[[tenants.sessions]]",
                'name = "default"',
                'provider = "waha"',
                f"base_url = {json.dumps(waha_url)}",
                f"api_key = {json.dumps(WAHA_KEY)}",
                "[[tenants.sessions]]",
                'name = "evo"',
                'provider = "evolution"',
                f"base_url = {json.dumps(evo_url)}",
                f"api_key = {json.dumps(EVO_KEY)}",
                "",
            ]
        )
    )
    return path


async def wasync(*args: str, timeout_s: float = 240) -> tuple[int, str, str]:
    """Run `python -m wasync ARGS` to completion: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasync", *args, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def sims_on_loopback() -> AsyncIterator[tuple[WahaSim, EvolutionSim, Stall, Stall, str, str]]:
    """Both simulators, stallable, on loopback ports."""
    waha, evo = make_sims()
    ws, es = Stall(waha.app), Stall(evo.app)
    try:
        async with serve(ws) as waha_url, serve(es) as evo_url:
            yield waha, evo, ws, es, waha_url, evo_url
    finally:
        ws.release.set()
        es.release.set()


async def outbox_row(db_url: str, outbox_id: int) -> Any:
    """The outbox row, read with a store of our own."""
    async with Store(db_url) as store, store.read() as conn:
        q = "SELECT status, attempts, provider_message_id FROM outbox WHERE id = :i"
        return (await conn.execute(text(q), {"i": outbox_id})).one()


@contextlib.contextmanager
def daemon_process(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`wasync run` in the background; SIGTERM (or SIGKILL if already dead) on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wasync", "run", "--config", str(config)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def until(check: Any, timeout_s: float, what: str) -> None:
    """Await `check()` until it is truthy."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_kill_9_between_accept_and_commit_sends_once(
    db_url: str, provider: str, tmp_path: Path
) -> None:
    """`wasync run` is SIGKILLed after the provider accepted a send and before the answer was
    committed; the restarted daemon reconciles the row and nothing is sent twice."""
    async with sims_on_loopback() as (waha, evo, ws, es, waha_url, evo_url):
        env_sim, stall = (waha, ws) if provider == "waha" else (evo, es)
        config = write_config(tmp_path / "wasync.toml", db_url, waha_url, evo_url)
        session = "default" if provider == "waha" else "evo"
        code, out, err = await wasync(
            "send", "--config", str(config), "--tenant", "acme", "--session", session,
            "--to", PHONE, "--text", "morre no meio", "--no-wait",
        )  # fmt: skip
        assert code == 0, err
        outbox_id = int(out.split("outbox id ")[1].split()[0])
        stall.armed = SEND_ROUTE[provider][1]
        log = tmp_path / "daemon.log"
        with daemon_process(config, log) as first:
            await asyncio.wait_for(stall.accepted.wait(), 30)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert (await outbox_row(db_url, outbox_id)).status == "SENDING"
        with daemon_process(config, log):

            async def sent() -> bool:
                return bool((await outbox_row(db_url, outbox_id)).status == "SENT")

            await until(sent, 30, "the row to be reconciled as SENT")
        row = await outbox_row(db_url, outbox_id)
        own = [m for m in env_sim.sends if m.status == 201]
    assert len(env_sim.sends) == 1 and len(own) == 1, log.read_text()
    assert own[0].message_id is not None
    assert row.provider_message_id == own[0].message_id.split("_")[-1]
    async with Store(db_url) as store, store.read() as conn:
        ids = (await conn.execute(text("SELECT provider_message_id FROM messages"))).all()
    assert [i[0] for i in ids] == [row.provider_message_id]


async def test_cli_send_waits_and_prints_the_provider_id(db_url: str, tmp_path: Path) -> None:
    """`wasync send --to --text` with no daemon sends its own row and prints the id; a retry
    with the same idempotency key prints the same id without sending again."""
    async with sims_on_loopback() as (waha, _evo, _ws, _es, waha_url, evo_url):
        config = write_config(tmp_path / "c.toml", db_url, waha_url, evo_url)
        args = ["send", "--config", str(config), "--tenant", "acme", "--to", "+55 11 98765-0001"]
        args += ["--text", "Olá do terminal", "--idempotency-key", "k-1"]
        code, out, err = await wasync(*args)
        again = await wasync(*args)
    assert code == 0, err
    assert again[0] == 0 and again[1] == out
    assert len(waha.sends) == 1
    assert waha.sends[0].message_id is not None
    assert out.strip() == waha.sends[0].message_id.split("_")[2]


async def test_cli_send_to_a_number_not_on_whatsapp_exits_1(db_url: str, tmp_path: Path) -> None:
    """One line on stderr, exit 1, nothing queued."""
    async with sims_on_loopback() as (_waha, evo, _ws, _es, waha_url, evo_url):
        evo.mark_absent("5511900002222")
        config = write_config(tmp_path / "c.toml", db_url, waha_url, evo_url)
        code, out, err = await wasync(
            "send", "--config", str(config), "--tenant", "acme", "--session", "evo",
            "--to", "5511900002222", "--image", "https://cdn.example.com/x.jpg",
        )  # fmt: skip
    assert (code, out) == (1, "")
    assert err.strip().splitlines() == [
        "wasync: +5511900002222 is not on WhatsApp (checked on acme/evo)"
    ]
    async with Store(db_url) as store, store.read() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar() == 0


async def test_cli_campaign_from_csv(db_url: str, tmp_path: Path) -> None:
    """`--csv --template`: variables from the row, else the lead; numbers not on WhatsApp are
    skipped; bad phones and rows missing a variable are invalid; a rerun sends nothing new."""
    async with sims_on_loopback() as (waha, _evo, _ws, _es, waha_url, evo_url):
        waha.mark_absent("5511900003333")
        config = write_config(tmp_path / "c.toml", db_url, waha_url, evo_url)
        async with Store(db_url) as store:
            await store.upgrade()
            await sync(store, make_settings(db_url, waha_url, evo_url))
            async with store.write() as conn:
                await conn.execute(text(
                    "INSERT INTO leads (tenant_id, first_name, last_name, email, phone, source,"
                    " status, score, created_at) VALUES ('acme', 'Ana', 'Silva', NULL,"
                    " '5511987650002', 'CRM', 'NEW', 50, CURRENT_TIMESTAMP)"
                ))  # fmt: skip
        csv_file = tmp_path / "leads.csv"
        csv_file.write_text(
            "phone,first_name,city\n5511987650001,João,Recife\n5511987650002,,Natal\n"
            "5511900003333,Rui,Belém\nnot-a-phone,Zé,Ubá\n5511987650003,,Ubá\n",
            encoding="utf-8",
        )
        args = ["send", "--config", str(config), "--tenant", "acme", "--csv", str(csv_file)]
        args += ["--template", "Olá {first_name}, novidades em {city}!"]
        code, out, err = await wasync(*args)
        rerun = await wasync(*args)
    assert code == 0, err
    assert out.strip() == (
        "queued=2 already_queued=0 sent=2 failed=0 not_sent_yet=0 "
        "skipped_not_on_whatsapp=1 invalid=2"
    )
    assert [s.body["text"] for s in waha.sends] == [
        "Olá João, novidades em Recife!",
        "Olá Ana, novidades em Natal!",
    ]
    assert rerun[0] == 0 and "queued=0 already_queued=2 sent=2" in rerun[1]
    assert len(waha.sends) == 2


async def test_cli_campaign_with_a_repeated_phone_finishes_and_reports_it(
    db_url: str, tmp_path: Path
) -> None:
    """A CSV naming one phone twice (in two spellings) sends once, waits on distinct outbox
    rows (no hang until --timeout) and names the repeated phone."""
    async with sims_on_loopback() as (waha, _evo, _ws, _es, waha_url, evo_url):
        config = write_config(tmp_path / "c.toml", db_url, waha_url, evo_url)
        csv_file = tmp_path / "leads.csv"
        csv_file.write_text(
            "phone\n5511987650001\n+55 11 98765-0001\n5511987650004\n", encoding="utf-8"
        )
        args = ["send", "--config", str(config), "--tenant", "acme", "--csv", str(csv_file)]
        code, out, err = await wasync(*args, "--text", "Oi!", "--timeout", "240")
    assert code == 0, err
    assert out.strip() == (
        "queued=2 already_queued=0 sent=2 failed=0 not_sent_yet=0 "
        "skipped_not_on_whatsapp=0 invalid=0 skipped_duplicate=1"
    )
    assert "rows repeating a phone, skipped: +5511987650001" in err
    assert len(waha.sends) == 2


# --- pure parts -----------------------------------------------------------------------------------


def test_reconcile_matches_only_our_own_unclaimed_message() -> None:
    """Same text and type, inside the window, not typed on the phone, not owned elsewhere."""

    chat = f"{PHONE}@c.us"
    out = Outgoing(to_jid=chat, kind="text", text="ok")
    since = T0.timestamp()
    cands = [
        msg(1, "early", chat, from_me=True, body="ok", at=-5),
        msg(1, "phone", chat, from_me=True, body="ok", at=1),
        msg(1, "owned", chat, from_me=True, body="ok", at=2),
        msg(1, "other", chat, from_me=True, body="oi", at=3),
        msg(1, "image", chat, from_me=True, body="ok", at=4, type_=MessageType.IMAGE),
        msg(1, "theirs", chat, from_me=False, body="ok", at=5),
        msg(1, "ours-2", chat, from_me=True, body="ok", at=9),
        msg(1, "ours-1", chat, from_me=True, body="ok", at=6),
    ]
    typed = [c if c.provider_message_id != "phone" else _with_source(c, "app") for c in cands]
    got = match_sent(out, typed, since=since, exclude={"owned"})
    assert got is not None and got.provider_message_id == "ours-1"
    assert match_sent(out, typed, since=since, exclude={"owned", "ours-1", "ours-2"}) is None


def test_reconcile_skips_what_evolution_says_the_phone_typed() -> None:
    """Evolution marks each message with the device behind its id: the agent's phone
    (android, ios) is never our send; an API send shows as web or unknown."""
    chat = f"{PHONE}@s.whatsapp.net"
    out = Outgoing(to_jid=chat, kind="text", text="Olá!")
    records = [
        {"key": {"remoteJid": chat, "fromMe": True, "id": f"3EB0{n}"}, "source": source}
        | {"message": {"conversation": "Olá!"}, "messageTimestamp": int(T0.timestamp()) + n}
        for n, source in enumerate(["android", "ios", "web"], start=1)
    ]
    cands = [evolution.parse_message(r, session_id=1) for r in records]
    assert all(isinstance(c, WaMessage) for c in cands)
    assert [c.extra.get("device") for c in cands] == ["android", "ios", "web"]
    got = match_sent(out, cands, since=T0.timestamp(), exclude=set())  # type: ignore[arg-type]
    assert got is not None and got.provider_message_id == "3EB03"


def _with_source(message: Any, source: str) -> Any:
    """The message as WAHA GOWS lists one typed on the phone (`waha.parse_message` below)."""
    return replace(message, extra={"source": source, "typed_on_phone": True})


def test_reconcile_trusts_wahas_app_source_only_where_it_is_proof() -> None:
    """WAHA GOWS says `source: "app"` by the sending device: never our send. NOWEB and WEBJS
    say it of every id their 10-minute cache has not (a restart empties it, waha.md 3): a
    send reconciled after that is still ours, not sent twice."""
    chat = f"{PHONE}@c.us"
    out = Outgoing(to_jid=chat, kind="text", text="ok")
    when = int(T0.timestamp()) + 5
    shapes = {
        "NOWEB": {"key": {"remoteJid": f"{PHONE}@s.whatsapp.net", "fromMe": True, "id": "N1"}},
        "GOWS": {"Info": {"Chat": f"{PHONE}@s.whatsapp.net", "IsFromMe": True, "ID": "G1"}},
        "WEBJS": {"id": {"fromMe": True, "remote": chat, "id": "W1"}, "type": "chat"},
    }
    found = {}
    for engine, data in shapes.items():
        payload = {"id": f"true_{chat}_{engine}1", "timestamp": when, "to": chat, "fromMe": True}
        payload |= {"from": "5531900000000@c.us", "body": "ok", "source": "app", "_data": data}
        candidate = waha.parse_message(payload, session_id=1)
        got = match_sent(out, [candidate], since=T0.timestamp(), exclude=set())  # type: ignore[list-item]
        found[engine] = got.provider_message_id if got else None
    assert found == {"NOWEB": "NOWEB1", "GOWS": None, "WEBJS": "WEBJS1"}
    incoming = {"id": f"false_{chat}_IN1", "timestamp": when, "from": chat, "fromMe": False}
    incoming |= {"body": "oi", "source": "app", "_data": {"Info": {"IsFromMe": False}}}
    theirs = waha.parse_message(incoming, session_id=1)
    assert "typed_on_phone" not in theirs.extra  # GOWS says `app` of every incoming message


def test_rate_limiter_spaces_sends_after_a_burst() -> None:
    """GCRA: `burst` sends at once, then one per interval; the clock is a parameter."""
    now = [100.0]
    limiter = TokenBucket(2.0, 3, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.delay() == 0
        limiter.take()
    assert limiter.delay() == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.delay() == 0
    limiter.take()
    assert limiter.delay() == pytest.approx(0.5)


async def test_number_answers_are_cached_negatives_briefly(env: Env) -> None:
    """A found number is cached for the TTL, a missing one for ten minutes at most."""
    now = [0.0]
    book = NumberBook(3600, clock=lambda: now[0])
    provider, ref = env.outbox.provider(env.ref("evolution")), env.ref("evolution")
    env.evo.mark_absent("5511900005555")
    assert not (await book.check(provider, ref.id, "5511900005555")).exists
    assert (await book.check(provider, ref.id, PHONE)).exists
    now[0] = 601
    await book.check(provider, ref.id, "5511900005555")
    await book.check(provider, ref.id, PHONE)
    assert env.evo.requests["chat.whatsappNumbers"] == 3


async def test_the_outbox_wait_columns_migrate_and_go_back(db_url: str) -> None:
    """0007_outbox_waits adds `unknown_since` and `session_down_since` as the model has them
    (nullable times), and its downgrade removes them."""
    from alembic import command
    from sqlalchemy import inspect

    from wasync.store import models
    from wasync.store.migrate import alembic_config

    def columns(conn: Any) -> dict[str, bool]:
        return {c["name"]: c["nullable"] for c in inspect(conn).get_columns("outbox")}

    table = models.Outbox.__table__  # type: ignore[attr-defined]
    model = {c.name: bool(c.nullable) for c in table.c}
    async with Store(db_url) as store:
        await store.upgrade()
        async with store.writer.begin() as conn:
            assert await conn.run_sync(columns) == model
            await conn.run_sync(
                lambda c: command.downgrade(alembic_config(c), "0006_session_health")
            )
            old = await conn.run_sync(columns)
        assert set(model) - set(old) == {"unknown_since", "session_down_since"}
        await store.upgrade()
        async with store.read() as conn:
            assert await conn.run_sync(columns) == model
