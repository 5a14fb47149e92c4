"""The provider contract: every `ProviderKind` in `wasync.providers.KINDS`, against its simulator.

Each kind's adapter, admin calls, signature check, detection and parsers are exercised the same
way, through `httpx.ASGITransport` over the simulator's app; webhooks the simulator delivers
are caught by an `httpx.MockTransport`, so the headers and bytes checked are the ones it sent.
No wasync code is patched: the simulators are the fakes. A kind without a simulator here fails
the suite.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from tests.test_parse_evolution import EXPECTED as EVOLUTION_EXPECTED
from tests.test_parse_waha import EXPECTED as WAHA_EXPECTED
from wasync import providers
from wasync.delivery import match_sent
from wasync.errors import PayloadError, Unauthorized
from wasync.events import Message
from wasync.poller import window_pages
from wasync.providers import KINDS, Endpoint, Provider, ProviderKind
from wasync.providers.http import Http, RetryPolicy
from wasync.providers.sending import Outgoing
from wasync.sim import EvolutionSim, WahaSim

KEY = "contract-api-key"
SECRET = "contract-webhook-secret-of-32-bytes!"
SESSION = "vendas"
HOOK_URL = "http://wasync.test/api/webhooks/contract?tenant=acme"
PHONE, OTHER, ABSENT = "5511988887777", "5511977776666", "5511966665555"
SAMPLES = Path(__file__).parent / "samples"
SHARED = Path("/work/shared/providers")
NOW = int(time.time())


class World(Protocol):
    """A simulator seen from a test: what to seed, how to break it, how it delivers."""

    app: Any
    requests_total: int
    signs_body: bool  # the signature covers the raw body (a tampered body fails)

    def incoming(self, phone: str, text: str, ts: int) -> str:
        """A message someone sent us; its provider message id."""

    def typed_on_phone(self, phone: str, text: str, ts: int) -> str:
        """A message an agent typed in the phone app; its provider message id."""

    @property
    def tells_typed_on_phone(self) -> bool:
        """The provider's listing proves which fromMe messages were typed on the phone."""

    def stop(self) -> None:
        """Take the session out of its working state."""

    def restart(self) -> None:
        """Restart the session (what the provider forgets, it forgets)."""

    def absent(self, phone: str) -> None:
        """Make `phone` not on WhatsApp."""

    async def deliver(self, message_id: str) -> None:
        """Deliver a stored message as the provider's message webhook."""


class WahaWorld:
    """WahaSim with one session of `engine`."""

    signs_body = True

    def __init__(self, engine: str, hooks: httpx.AsyncClient) -> None:
        self.sim = WahaSim(api_key=KEY, http=hooks)
        self.sim.add_session(SESSION, engine=engine)
        self.app = self.sim.app
        self._ids: dict[str, str] = {}  # bare id -> serialized id

    @property
    def requests_total(self) -> int:
        """Requests the simulator answered."""
        return self.sim.requests_total

    def _bare(self, serialized: str) -> str:
        bare = serialized.split("_")[2]
        self._ids[bare] = serialized
        return bare

    def incoming(self, phone: str, text: str, ts: int) -> str:
        """`add_incoming`, by bare id."""
        return self._bare(self.sim.add_incoming(SESSION, phone, text=text, ts=ts))

    def typed_on_phone(self, phone: str, text: str, ts: int) -> str:
        """`add_outgoing` (`source: app`), by bare id."""
        return self._bare(self.sim.add_outgoing(SESSION, phone, text=text, ts=ts))

    @property
    def tells_typed_on_phone(self) -> bool:
        """GOWS tells by the sending device; NOWEB and WEBJS by a cache of API ids (waha.md 3)."""
        return self.sim.session(SESSION).engine == "GOWS"

    def stop(self) -> None:
        """The session waits for a QR scan."""
        self.sim.set_status(SESSION, "SCAN_QR_CODE")

    def restart(self) -> None:
        """`POST /api/sessions/{session}/restart`'s effect: NOWEB and WEBJS forget their ids."""
        self.sim.session(SESSION).restarted()

    def absent(self, phone: str) -> None:
        """check-exists says no."""
        self.sim.mark_absent(phone)

    async def deliver(self, message_id: str) -> None:
        """`message.any`, to every registered webhook."""
        await self.sim.deliver_message(
            SESSION, self._ids[message_id], event="message.any", delay_s=0
        )


class EvolutionWorld:
    """EvolutionSim with one open instance."""

    signs_body = False  # a JWT in Authorization: the body is not signed (evolution.md 3.3)

    def __init__(self, hooks: httpx.AsyncClient) -> None:
        self.sim = EvolutionSim(api_key=KEY, http=hooks, webhook_delay_s=0)
        self.sim.add_instance(SESSION)
        self.app = self.sim.app

    @property
    def requests_total(self) -> int:
        """Requests the simulator answered."""
        return self.sim.requests_total

    def incoming(self, phone: str, text: str, ts: int) -> str:
        """`add_incoming`: its key.id."""
        return self.sim.add_incoming(SESSION, phone, text=text, ts=ts)

    def typed_on_phone(self, phone: str, text: str, ts: int) -> str:
        """`add_outgoing` (an android message id)."""
        return self.sim.add_outgoing(SESSION, phone, text=text, ts=ts)

    tells_typed_on_phone = True  # the device behind each message id (evolution.md)

    def stop(self) -> None:
        """The instance's socket is closed."""
        self.sim.set_state(SESSION, "close")

    def restart(self) -> None:
        """The instance's socket closes and opens again."""
        self.sim.set_state(SESSION, "close")
        self.sim.set_state(SESSION, "open")

    def absent(self, phone: str) -> None:
        """whatsappNumbers says no."""
        self.sim.mark_absent(phone)

    async def deliver(self, message_id: str) -> None:
        """`messages.upsert`, to the instance webhook."""
        await self.sim.deliver_message(SESSION, message_id, delay_s=0)


# Every simulator variant of each kind: WAHA's engines page and list chats differently.
WORLDS: dict[str, dict[str, Callable[[httpx.AsyncClient], World]]] = {
    "waha": {
        engine: (lambda hooks, engine=engine: WahaWorld(engine, hooks))
        for engine in ("WEBJS", "NOWEB", "GOWS")
    },
    "evolution": {"open": EvolutionWorld},
}
# The parser tests' verdict on each sample (event classes, "error", or "api": not a webhook),
# and the envelope key that names the session (waha.md 4, evolution.md 4.1).
SAMPLE_VERDICTS: dict[str, dict[str, Any]] = {
    "waha": WAHA_EXPECTED,
    "evolution": EVOLUTION_EXPECTED,
}
NAME_KEYS = {"waha": "session", "evolution": "instance"}
TARGETS = [
    pytest.param((kind, variant), id=f"{kind.name}-{variant}")
    for kind in KINDS.values()
    for variant in WORLDS.get(kind.name, {"missing": None})
]


@dataclass
class Rig:
    """One kind's adapter over its simulator, and the webhooks the simulator sent."""

    kind: ProviderKind
    world: World
    client: httpx.AsyncClient
    hooks: list[httpx.Request] = field(default_factory=list)

    def endpoint(self, api_key: str | None = KEY) -> Endpoint:
        """The session's plain values."""
        return Endpoint(base_url="http://sim", api_key=api_key, session=SESSION, session_id=1)

    def http(self, api_key: str | None = KEY) -> Http:
        """The kind's HTTP (its API key header), no retries."""
        retry = RetryPolicy(attempts=1)
        return providers.make_http(self.kind, self.endpoint(api_key), self.client, retry=retry)

    def provider(self, api_key: str | None = KEY) -> Provider:
        """The kind's adapter."""
        return self.kind.adapter(self.http(api_key), self.endpoint(api_key))


@pytest.fixture(params=TARGETS)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """The kind's simulator variant, its adapter's client, and a catcher for its webhooks."""
    kind, variant = request.param
    make = WORLDS.get(kind.name, {}).get(variant)
    assert make is not None, f"no simulator for provider kind {kind.name!r}"
    caught: list[httpx.Request] = []

    def catch(req: httpx.Request) -> httpx.Response:
        caught.append(req)
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(catch)) as hooks:
        world = make(hooks)
        transport = httpx.ASGITransport(app=world.app)
        async with httpx.AsyncClient(transport=transport) as client:
            yield Rig(kind=kind, world=world, client=client, hooks=caught)


# --- session state and auth ----------------------------------------------------------------------


async def test_a_working_session_says_so(rig: Rig) -> None:
    """A paired session is `working`, with the provider's own status word."""
    state = await rig.provider().state()
    assert state.working is True
    assert state.status and state.status == state.status.strip()


async def test_a_session_out_of_service_is_not_working(rig: Rig) -> None:
    """A session waiting for a QR scan / with a closed socket is not `working`."""
    rig.world.stop()
    state = await rig.provider().state()
    assert state.working is False
    assert state.status


async def test_the_api_key_goes_in_the_kinds_header(rig: Rig) -> None:
    """The right key in `kind.auth_header` is accepted; a wrong one is Unauthorized."""
    assert (await rig.provider().state()).working
    with pytest.raises(Unauthorized):
        await rig.provider(api_key="not-the-key").state()


async def test_requests_counts_every_request_made(rig: Rig) -> None:
    """`Provider.requests` is the number of HTTP requests the provider answered."""
    provider = rig.provider()
    before = rig.world.requests_total
    await provider.state()
    await provider.chat_heads(limit=10, offset=0)
    await provider.check_number(PHONE)
    assert provider.requests == rig.world.requests_total - before > 0


# --- reading -------------------------------------------------------------------------------------


async def _chat_id(provider: Provider, phone: str) -> str:
    """The provider's own id of the chat with `phone`, from its chat list."""
    heads = await provider.chat_heads(limit=50, offset=0)
    return next(h.chat_id for h in heads if phone in h.chat_id)


async def test_window_pages_read_every_message_of_the_window_once(rig: Rig) -> None:
    """`window_pages` over the adapter returns each message in `[since, until]` exactly once,
    over several pages, and nothing outside it."""
    since, until = NOW - 10_000, NOW - 1_000
    inside = {rig.world.incoming(PHONE, f"dentro {i}", since + i * 300) for i in range(31)}
    outside = {rig.world.incoming(PHONE, "antes", since - 50)}
    outside.add(rig.world.incoming(PHONE, "depois", until + 50))
    provider = rig.provider()
    chat = await _chat_id(provider, PHONE)
    pages = [p async for p in window_pages(provider, chat, since=since, until=until, page_size=10)]
    ids = [i for p in pages for i in p.ids]
    assert len([p for p in pages if p.size]) >= 3
    assert len(ids) == len(set(ids))
    assert set(ids) == inside and not outside & set(ids)
    assert all(since <= p.min_ts <= p.max_ts <= until for p in pages if p.min_ts is not None)


async def test_all_chats_stream_when_supported(rig: Rig) -> None:
    """A provider that `supports_all_chats` lists every chat's messages with chat None."""
    first = rig.world.incoming(PHONE, "um", NOW - 600)
    second = rig.world.incoming(OTHER, "dois", NOW - 500)
    provider = rig.provider()
    if not await provider.supports_all_chats():
        pytest.skip("this provider reads chat by chat")
    pages = [
        p async for p in window_pages(provider, None, since=NOW - 3600, until=None, page_size=10)
    ]
    assert {first, second} <= {i for p in pages for i in p.ids}


async def test_chat_heads_are_newest_first_and_carry_the_last_message(rig: Rig) -> None:
    """Chat heads page by offset, newest activity first; a head names its newest message and
    `head_events` gives it without a request."""
    for n, phone in enumerate((PHONE, OTHER, "5511955554444")):
        rig.world.incoming(phone, "velha", NOW - 3000 + n)
        last = rig.world.incoming(phone, "nova", NOW - 1000 + n * 100)
    provider = rig.provider()
    heads = await provider.chat_heads(limit=2, offset=0)
    heads += await provider.chat_heads(limit=2, offset=2)
    assert len({h.chat_id for h in heads}) == len(heads) == 3
    stamps = [h.last_ts for h in heads]
    assert stamps == sorted(stamps, key=lambda ts: -(ts or 0))
    assert heads[0].last_id == last
    requests = provider.requests
    (event,) = provider.head_events(heads[0])
    assert isinstance(event, Message) and event.provider_message_id == last
    assert provider.requests == requests


# --- sending -------------------------------------------------------------------------------------


async def test_number_check_finds_present_and_absent_numbers(rig: Rig) -> None:
    """A number on WhatsApp exists under a jid; one marked absent does not."""
    rig.world.absent(ABSENT)
    provider = rig.provider()
    found = await provider.check_number(PHONE)
    assert found.exists and found.jid and "@" in found.jid
    assert not (await provider.check_number(ABSENT)).exists


async def test_a_send_has_an_id_and_reconciles(rig: Rig) -> None:
    """A text send returns a receipt with the message id; `sent_messages` then finds it, and
    tells it from a message an agent typed on the phone (`providers.typed_on_phone`)."""
    provider = rig.provider()
    jid = (await provider.check_number(PHONE)).jid
    assert jid is not None
    typed = rig.world.typed_on_phone(PHONE, "digitada no celular", NOW - 30)
    receipt = await provider.send(Outgoing(to_jid=jid, kind="text", text="Olá do contrato"))
    assert receipt.provider_message_id
    sent = {m.provider_message_id: m for m in await provider.sent_messages(jid, since=NOW - 60)}
    ours = sent[receipt.provider_message_id]
    assert ours.from_me and ours.body == "Olá do contrato"
    assert not providers.typed_on_phone(ours) and not rig.kind.typed_on_phone(ours)
    proof = rig.world.tells_typed_on_phone
    assert providers.typed_on_phone(sent[typed]) is proof
    assert rig.kind.typed_on_phone(sent[typed]) is proof


async def test_a_send_is_still_found_after_the_provider_restarts(rig: Rig) -> None:
    """An unanswered send is reconciled after the session restarted (a restart is the usual
    reason a send goes unanswered): the provider's listing still gives our message as ours,
    so it is adopted, not sent again. WAHA NOWEB and WEBJS forget at a restart which ids they
    sent (`source` turns `app`); that is no proof the phone typed it."""
    provider = rig.provider()
    jid = (await provider.check_number(PHONE)).jid
    assert jid is not None
    out = Outgoing(to_jid=jid, kind="text", text="Olá depois do reinício")
    receipt = await provider.send(out)
    rig.world.restart()
    listed = await provider.sent_messages(jid, since=NOW - 60)
    found = match_sent(out, listed, since=NOW - 60, exclude=set())
    assert found is not None and found.provider_message_id == receipt.provider_message_id


# --- webhooks ------------------------------------------------------------------------------------


async def test_webhook_registration_is_idempotent(rig: Rig) -> None:
    """`kind.admin.register` points the session at our URL, signed; a second call changes
    nothing; `status` reads it back."""
    admin, http = rig.kind.admin, rig.http()
    first = await admin.register(http, SESSION, HOOK_URL, SECRET, label="acme/vendas")
    again = await admin.register(http, SESSION, HOOK_URL, SECRET, label="acme/vendas")
    state = await admin.status(http, SESSION, label="acme/vendas")
    assert (first.changed, again.changed) == (True, False)
    assert first.session == state.session == "acme/vendas"
    assert state.url == HOOK_URL and state.signed and state.events


async def _delivered(rig: Rig) -> tuple[str, httpx.Request]:
    """Register our webhook, then have the simulator deliver one incoming message."""
    await rig.kind.admin.register(rig.http(), SESSION, HOOK_URL, SECRET, label="acme/vendas")
    message_id = rig.world.incoming(PHONE, "pelo webhook", NOW - 5)
    await rig.world.deliver(message_id)
    (request,) = rig.hooks
    return message_id, request


async def test_a_delivered_webhook_verifies_and_parses(rig: Rig) -> None:
    """What the simulator sends with our secret passes `kind.verify`, is detected as this kind
    only, names the session, and parses into the message."""
    message_id, request = await _delivered(rig)
    assert rig.kind.verify(SECRET, request.headers, request.content)
    body = json.loads(request.content)
    assert [k for k in KINDS.values() if k.detect(body)] == [rig.kind]
    assert providers.detect_kind(body) is rig.kind
    assert rig.kind.session_name(body) == SESSION
    events = rig.kind.parse_webhook(body, session_id=1)
    assert [e.provider_message_id for e in events if isinstance(e, Message)] == [message_id]


async def test_a_bad_signature_is_refused(rig: Rig) -> None:
    """Another secret, no signature headers, or (when the body is signed) a changed body fail."""
    _, request = await _delivered(rig)
    raw = request.content
    assert not rig.kind.verify("some-other-secret-of-32-bytes-long!", request.headers, raw)
    assert not rig.kind.verify(SECRET, httpx.Headers({"content-type": "application/json"}), raw)
    tampered = raw.replace(b"pelo webhook", b"pelo  webhook")
    assert rig.kind.verify(SECRET, request.headers, tampered) is not rig.world.signs_body


# --- every sample webhook ------------------------------------------------------------------------


def _samples() -> list[Any]:
    """(kind, sample path) for every sample of every kind, here and in the shared notes."""
    out = []
    for kind in KINDS.values():
        for root in (SAMPLES, SHARED):
            for path in sorted((root / kind.name).glob("*.json")):
                out.append(pytest.param(kind, path, id=f"{kind.name}-{root.name}-{path.name}"))
    return out


@pytest.mark.parametrize(("kind", "path"), _samples())
def test_every_sample_is_detected_and_parsed_as_its_own_kind(
    kind: ProviderKind, path: Path
) -> None:
    """A webhook sample is detected as its own kind only, names its session as its envelope
    does, and parses, or raises PayloadError where the parser tests say it must; an API body
    is detected as no kind."""
    verdict = SAMPLE_VERDICTS[kind.name][path.name]
    body = json.loads(path.read_text(encoding="utf-8"))
    detected = [k for k in KINDS.values() if k.detect(body)]
    if verdict == "api":
        assert detected == [] and providers.detect_kind(body) is None
        return
    assert detected == [kind] and providers.detect_kind(body) is kind
    name, given = kind.session_name(body), body.get(NAME_KEYS[kind.name])
    if isinstance(given, str) and given.strip():
        assert name == given.strip()
    else:
        assert name is None or (name and name == name.strip())
    if verdict == "error":
        with pytest.raises(PayloadError):
            kind.parse_webhook(body, session_id=1)
        return
    events = kind.parse_webhook(body, session_id=1)
    assert [type(e) for e in events] == verdict and all(e.session_id == 1 for e in events)
