"""The media worker's paths, one at a time: a WAHA file already deleted (the re-download path),
Evolution's inline base64 (no download at all), our own send (the outbox's bytes), a file
over the size cap (FAILED), each change a `chat:message-media` row with its chat; a download
that fails as a lost file does is retried (a glitch ends STORED, a lost file EXPIRED once its
attempts are spent), and what Evolution's 400s say decides between gone, maybe gone and
transient."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.media_support import FAST_MEDIA, wait_settled
from wasync.config import Settings, parse
from wasync.events import Media, MessageType, SendQueued
from wasync.media import LocalStore, MediaWorker
from wasync.media.fetch import MAYBE_GONE, kept_reason
from wasync.media.job import MediaJob
from wasync.metrics import Metrics
from wasync.pipeline import Pipeline
from wasync.providers import KINDS
from wasync.registry import Registry, sync
from wasync.sim import EvolutionSim, Fault, WahaSim, media, serve
from wasync.store import Store

WAHA_KEY, EVO_KEY = "waha-sim-key", "evolution-sim-key"
# Few, quick attempts: a file that may be gone spends them all before it is EXPIRED.
RETRIES = {"tries": 2, "max_attempts": 3, "retry_delay_s": 0.05, "backoff_s": 0.01}
DOWNLOAD = "chat.getBase64FromMediaMessage"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


def _settings(
    db_url: str, waha_url: str, evo_url: str, tmp_path: Path, **media_cfg: Any
) -> Settings:
    section = {"dir": str(tmp_path / "media"), **FAST_MEDIA, **media_cfg}
    sessions = [
        {"name": "default", "provider": "waha", "base_url": waha_url, "api_key": WAHA_KEY},
        {"name": "vendas", "provider": "evolution", "base_url": evo_url, "api_key": EVO_KEY},
    ]
    return parse(
        {
            "database": {"url": db_url},
            "media": section,
            "tenants": [{"id": "acme", "sessions": sessions}],
        }
    )


@pytest.fixture
async def rig(db_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """Both simulators (WAHA files live 20 s by the test's clock), a store, a pipeline that
    tracks media, and a function running a worker until nothing is PENDING."""
    clock = Clock()
    waha = WahaSim(api_key=WAHA_KEY, clock=clock, files_lifetime_s=20)
    evo = EvolutionSim(api_key=EVO_KEY)
    waha.add_session("default", engine="NOWEB")
    evo.add_instance("vendas")
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        settings = _settings(db_url, waha_url, evo_url, tmp_path, max_bytes=60_000)
        async with Store(db_url) as store:
            await store.upgrade()
            registry = await sync(store, settings)
            async with Pipeline(store, media=True) as pipeline, httpx.AsyncClient() as client:
                yield waha, evo, clock, settings, store, registry, pipeline, client


async def _worker(rig: Any, **media_cfg: Any) -> MediaWorker:
    _waha, _evo, _clock, settings, store, registry, pipeline, client = rig
    media_store = await LocalStore(Path(settings.media.dir)).__aenter__()
    return MediaWorker(
        settings.media.model_copy(update=media_cfg),
        pipeline=pipeline,
        store=store,
        media=media_store,
        registry=registry,
        client=client,
        poll=settings.poll,
        metrics=Metrics(),
    )


async def _work(rig: Any, expected: int, worker: MediaWorker | None = None) -> Any:
    """Run a worker until `expected` media settled; (worker, counts by status)."""
    worker = worker or await _worker(rig)
    async with worker:
        counts = await wait_settled(rig[4], expected, timeout_s=60)
    return worker, counts


def _ref(registry: Registry, name: str) -> Any:
    return next(r for r in registry if r.name == name)


async def test_a_deleted_waha_file_comes_from_the_re_download_path(rig: Any):
    """The webhook's URL is gone (WAHA's lifetime passed): the worker asks for the message
    with downloadMedia=true and stores the fresh file's bytes."""
    waha, _evo, clock, _settings_, store, registry, pipeline, _client = rig
    photo = waha.add_message("default", "5531988887777", media("image", size=30_000))
    payload = waha.webhook_payload("default", photo)  # WAHA saves the file as it emits
    clock.now += 60  # ... and deletes it 20 s later
    events = KINDS["waha"].parse_webhook(
        {"event": "message", "session": "default", "payload": payload},
        session_id=_ref(registry, "default").id,
    )
    await pipeline.ingest(events, source="webhook")
    _worker, counts = await _work(rig, 1)
    assert counts == {"STORED": 1}
    assert waha.requests["chats.message"] >= 1 and waha.requests["files"] >= 2
    async with store.read() as conn:
        key = (await conn.execute(text("SELECT media_key FROM messages"))).scalar_one()
    local = LocalStore(Path(_settings_.media.dir))
    assert local.path(key).read_bytes() == waha.media_bytes("default", photo)


async def test_inline_base64_is_stored_without_a_download(rig: Any):
    """Evolution with `webhookBase64`: the file in the webhook is the one stored; the worker
    never calls getBase64FromMediaMessage. Its frame carries the chat and the new status."""
    _waha, evo, _clock, _s, store, registry, pipeline, _client = rig
    evo.instance("vendas").webhook = {"webhookBase64": True}
    key = evo.add_message("vendas", "5531988887777", media("voice", size=9_000))
    data = evo.upsert_payload("vendas", key)
    assert data["message"]["base64"]
    body = {"event": "messages.upsert", "instance": "vendas", "data": data}
    events = KINDS["evolution"].parse_webhook(body, session_id=_ref(registry, "vendas").id)
    worker = await _worker(rig)
    worker.offer(events)  # what the webhook receiver does before it ingests
    await pipeline.ingest(events, source="webhook")
    worker, counts = await _work(rig, 1, worker)
    assert counts == {"STORED": 1}
    assert evo.requests["chat.getBase64FromMediaMessage"] == 0
    async with store.read() as conn:
        frames = (
            await conn.execute(
                text("SELECT chat_id, data FROM events WHERE type = 'chat:message-media'")
            )
        ).all()
    assert len(frames) == 1 and frames[0].chat_id is not None
    assert "STORED" in str(frames[0].data)
    assert worker.outcomes == {"stored": 1}


async def test_our_send_is_stored_from_the_outbox_bytes(rig: Any):
    """A media send queued with base64 data: the worker keeps exactly those bytes, without
    asking the provider."""
    _waha, evo, _clock, _s, store, registry, pipeline, _client = rig
    raw = b"%PDF-1.7\n" + bytes(range(200)) * 20
    ref = _ref(registry, "vendas")
    payload = {"data": base64.b64encode(raw).decode(), "mimetype": "application/pdf"}
    command = SendQueued(
        tenant_id="acme",
        session_id=ref.id,
        to_jid="5531988887777@s.whatsapp.net",
        phone="5531988887777",
        kind="document",
        payload={**payload, "filename": "contrato.pdf"},
        type=MessageType.DOCUMENT,
        media=Media(mimetype="application/pdf", filename="contrato.pdf", size=len(raw)),
    )
    await pipeline.execute(command, source="outbox")
    _worker, counts = await _work(rig, 1)
    assert counts == {"STORED": 1}
    async with store.read() as conn:
        row = (
            await conn.execute(text("SELECT media_key, media_size, media_mimetype FROM messages"))
        ).one()
    assert row.media_size == len(raw) and row.media_mimetype == "application/pdf"
    local = LocalStore(Path(_s.media.dir))
    assert local.path(row.media_key).read_bytes() == raw
    assert evo.requests["chat.getBase64FromMediaMessage"] == 0


async def test_a_file_over_the_cap_fails_at_once(rig: Any):
    """Over `[media] max_bytes`: FAILED with the reason, no retry; counted by outcome."""
    _waha, evo, _clock, _s, store, registry, pipeline, _client = rig
    key = evo.add_message("vendas", "5531988887777", media("video", size=80_000))
    data = evo.upsert_payload("vendas", key)
    body = {"event": "messages.upsert", "instance": "vendas", "data": data}
    events = KINDS["evolution"].parse_webhook(body, session_id=_ref(registry, "vendas").id)
    await pipeline.ingest(events, source="webhook")
    worker, counts = await _work(rig, 1)
    assert counts == {"FAILED": 1} and worker.outcomes == {"failed": 1}
    assert evo.requests["chat.getBase64FromMediaMessage"] == 1
    async with store.read() as conn:
        reason = (await conn.execute(text("SELECT media_reason FROM messages"))).scalar_one()
    assert "max_bytes" in reason


async def _evolution_message(rig: Any) -> str:
    """An Evolution image ingested from its webhook (no inline base64); its key id."""
    _waha, evo, _clock, _s, _store, registry, pipeline, _client = rig
    key = evo.add_message("vendas", "5531988887777", media("image", size=20_000))
    body = {
        "event": "messages.upsert",
        "instance": "vendas",
        "data": evo.upsert_payload("vendas", key),
    }
    events = KINDS["evolution"].parse_webhook(body, session_id=_ref(registry, "vendas").id)
    await pipeline.ingest(events, source="webhook")
    return key


async def _media_rows(store: Store) -> list[Any]:
    query = "SELECT media_status, media_reason, media_attempts, media_key FROM messages"
    async with store.read() as conn:
        return list((await conn.execute(text(query + " ORDER BY id"))).all())


async def test_an_evolution_download_glitch_is_retried_until_stored(rig: Any):
    """The first three downloads answer Evolution's 400 for a failed fetch: two tries, then
    another attempt later, whose second try stores the file."""
    _waha, evo, _clock, settings, store, _registry, _pipeline, _client = rig
    key = await _evolution_message(rig)
    evo.glitch_media("vendas", key, times=3)
    worker, counts = await _work(rig, 1, await _worker(rig, **RETRIES))
    assert counts == {"STORED": 1} and worker.outcomes == {"retry": 1, "stored": 1}
    assert evo.requests[DOWNLOAD] == 4
    [row] = await _media_rows(store)
    assert row.media_attempts == 2
    local = LocalStore(Path(settings.media.dir))
    assert local.path(row.media_key).read_bytes() == evo.media_bytes("vendas", key)


async def test_a_file_evolution_lost_is_expired_once_its_attempts_are_spent(rig: Any):
    """WhatsApp lost the file: every download answers `Failed to fetch stream from ...`, so
    each attempt is spent (it might have been a glitch), then it is EXPIRED with that."""
    _waha, evo, _clock, _s, store, _registry, _pipeline, _client = rig
    key = await _evolution_message(rig)
    evo.lose_media("vendas", key)
    worker, counts = await _work(rig, 1, await _worker(rig, **RETRIES))
    assert counts == {"EXPIRED": 1} and worker.outcomes == {"retry": 2, "expired": 1}
    assert evo.requests[DOWNLOAD] == 2 * 3
    [row] = await _media_rows(store)
    assert row.media_attempts == 3 and row.media_reason.startswith(MAYBE_GONE)
    assert "Failed to fetch stream from https://mmg.whatsapp.net/" in row.media_reason


@pytest.mark.parametrize(
    ("error", "status", "downloads"),
    [
        ("Message not found", "EXPIRED", 1),
        ("The message is not of the media type", "EXPIRED", 1),
        ("Template message does not contain a supported media type", "EXPIRED", 1),
        ("Error: Could not determine mediaType for fallback", "EXPIRED", 1),
        ("TypeError: fetch failed", "EXPIRED", 6),
        ("Error: Timed Out", "EXPIRED", 6),
        ("Error: Connection Closed", "FAILED", 6),
    ],
)
async def test_evolution_400s_are_gone_maybe_gone_or_transient(
    rig: Any, error: str, status: str, downloads: int
):
    """getBase64FromMediaMessage answers every error as 400 with its text: no message or no
    media in it is EXPIRED at once; a failed download is retried, then EXPIRED; a closed
    connection is retried, then FAILED."""
    _waha, evo, _clock, _s, store, _registry, _pipeline, _client = rig
    key = await _evolution_message(rig)
    evo.glitch_media("vendas", key, times=100, error=error)
    _, counts = await _work(rig, 1, await _worker(rig, **RETRIES))
    assert counts == {status: 1} and evo.requests[DOWNLOAD] == downloads
    [row] = await _media_rows(store)
    assert error in row.media_reason or "not connected" in row.media_reason


async def test_a_lost_file_stays_expired_when_its_last_attempt_meets_only_5xx(rig: Any):
    """An attempt that only meets 503s learns nothing about the file: what the one before
    it heard (it may be gone) stands, and the spent job is EXPIRED, not FAILED."""
    _waha, evo, _clock, _s, store, _registry, _pipeline, _client = rig
    key = await _evolution_message(rig)
    evo.lose_media("vendas", key)
    through = Fault("slow", delay_s=0, route=DOWNLOAD)  # answered as usual
    evo.faults.push(through, through, Fault("503", route=DOWNLOAD), Fault("503", route=DOWNLOAD))
    _, counts = await _work(rig, 1, await _worker(rig, **{**RETRIES, "max_attempts": 2}))
    assert counts == {"EXPIRED": 1} and evo.requests[DOWNLOAD] == 4
    [row] = await _media_rows(store)
    assert row.media_reason.startswith(MAYBE_GONE) and "Failed to fetch stream" in row.media_reason


async def test_a_waha_media_error_is_retried_stored_after_a_glitch_expired_when_lost(rig: Any):
    """WAHA's `media.error` is whatever its download threw (its storage down, the CDN copy
    gone): a file whose first downloads fail is STORED later, a lost one EXPIRED once its
    attempts are spent."""
    waha, _evo, clock, _s, store, registry, pipeline, _client = rig
    ids = [waha.add_message("default", "5531988887777", media("image", size=9_000)) for _ in "ab"]
    payloads = [waha.webhook_payload("default", i) for i in ids]
    clock.now += 60  # the webhook's URLs are gone: the re-download path answers
    waha.glitch_media("default", ids[0], times=3)
    waha.lose_media("default", ids[1])
    for payload in payloads:
        body = {"event": "message", "session": "default", "payload": payload}
        events = KINDS["waha"].parse_webhook(body, session_id=_ref(registry, "default").id)
        await pipeline.ingest(events, source="webhook")
    _, counts = await _work(rig, 2, await _worker(rig, **RETRIES))
    assert counts == {"STORED": 1, "EXPIRED": 1}
    glitched, lost = await _media_rows(store)
    assert glitched.media_status == "STORED" and glitched.media_attempts == 2
    assert lost.media_status == "EXPIRED" and lost.media_attempts == 3
    assert lost.media_reason.startswith(MAYBE_GONE) and "gone from WhatsApp" in lost.media_reason


async def test_a_try_that_gets_the_bytes_flowing_overrules_a_media_error(rig: Any):
    """After a `media.error`, a try whose download starts (then a reset cuts it) shows WAHA
    has the file: the spent job is FAILED (`wasync media retry` queues it again), not
    EXPIRED."""
    waha, _evo, _clock, _s, store, registry, pipeline, _client = rig
    ident = waha.add_message("default", "5531988887777", media("image", size=9_000))
    polled = waha.get_message("default", ident)  # as polling reads it: no file URL
    waha.glitch_media("default", ident, times=1)
    waha.faults.push(Fault("reset", route="files"))
    body = {"event": "message", "session": "default", "payload": polled}
    events = KINDS["waha"].parse_webhook(body, session_id=_ref(registry, "default").id)
    await pipeline.ingest(events, source="webhook")
    _, counts = await _work(rig, 1, await _worker(rig, **{**RETRIES, "max_attempts": 1}))
    assert counts == {"FAILED": 1}
    assert waha.requests["chats.message"] == 2 and waha.requests["files"] == 1
    [row] = await _media_rows(store)
    assert not row.media_reason.startswith(MAYBE_GONE) and "reading" in row.media_reason


def test_a_retry_that_learned_nothing_keeps_the_word_that_the_file_may_be_gone() -> None:
    """The worker's own releases (stopping, a bug) learn nothing of the file: a job whose
    last attempt heard it may be gone keeps that reason (so it still ends EXPIRED), any other
    job takes the release's reason."""
    job = MediaJob(
        id=1, tenant_id="t", chat_id=1, chat_jid="x@s.whatsapp.net", session_id=1,
        provider_message_id="M", from_me=False, type="image", source="poll",
        created_at=datetime.now(UTC), attempts=2,
    )  # fmt: skip
    maybe = replace(job, reason=MAYBE_GONE + "Evolution could not download the file")
    assert kept_reason(maybe, "interrupted") == maybe.reason
    assert kept_reason(replace(job, reason="HTTP 503"), "interrupted") == "interrupted"
    assert kept_reason(job, "internal") == "internal"
