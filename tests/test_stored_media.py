"""Media end to end over loopback: 200 attachments of every type from both simulators, 30 % of
downloads failing (5xx, 429 with Retry-After, cut and reset answers), WAHA's files expiring
20 s after it saved them, in webhook mode and in polling-only mode, on SQLite and Postgres, in
a local directory and in an S3 bucket (a moto server): each ends STORED with the simulator's
bytes, served by `GET /api/messages/{id}/media`, or EXPIRED with the reason when the provider
lost it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.daemon import running
from tests.media_support import S3_KEY, S3_SECRET, media_section, s3_bucket, wait_settled
from wasync.auth import issue_token
from wasync.config import Settings, parse
from wasync.sim import EvolutionSim, Faults, WahaSim, media, serve
from wasync.sim.evolution import DOWNLOAD_ROUTES as EVO_DOWNLOADS
from wasync.sim.waha import DOWNLOAD_ROUTES as WAHA_DOWNLOADS
from wasync.store import Store
from wasync.webhooks import run_all

WAHA_KEY, EVO_KEY = "waha-sim-key", "evolution-sim-key"
HMAC = "hmac-secret-of-at-least-32-bytes-long"
EVO_JWT_KEY = "evolution-jwt-key-of-at-least-32-bytes"  # jwt_key, registered by run_all
JWT = "jwt-secret-for-media-tests-at-least-32"
KINDS = ("image", "video", "audio", "voice", "document", "sticker")
PER_PROVIDER = 100
LOST = 4  # per provider: files WhatsApp no longer has
FAULTS = ("500", "502", "503", "429", "truncated", "reset")


def settings_for(
    url: str, waha_url: str, evo_url: str, mode: str, section: dict[str, Any]
) -> Settings:
    """One tenant with a WAHA session and an Evolution instance; webhooks on in webhook mode
    (polling then only reconciles, rarely), polling every 0.2 s otherwise."""
    webhook = mode == "webhook"
    return parse(
        {
            "database": {"url": url},
            "http": {"port": 0},
            "webhook": {"enabled": webhook, "rate_per_s": 10_000, "burst": 10_000},
            "poll": {
                "interval_s": 0.2,
                "reconcile_interval_s": 3600,
                "jitter_s": 0,
                "log_idle_cycles": False,
                "page_size": 100,
            },
            "auth": {"jwt_secret": JWT},
            "media": section,
            "tenants": [
                {
                    "id": "acme",
                    "admins": ["u1"],
                    "sessions": [
                        {
                            "name": "default",
                            "provider": "waha",
                            "base_url": waha_url,
                            "api_key": WAHA_KEY,
                            "webhook_secret": HMAC,
                        },
                        {
                            "name": "vendas",
                            "provider": "evolution",
                            "base_url": evo_url,
                            "api_key": EVO_KEY,
                            "webhook_secret": EVO_JWT_KEY,
                        },
                    ],
                }
            ],
        }
    )


def faults(seed: int, routes: frozenset[str]) -> Faults:
    """30 % of download requests fail, in every way a download can."""
    return Faults(rate=0.3, kinds=FAULTS, routes=routes, seed=seed, retry_after_s=1)


async def arrive(waha: WahaSim, evo: EvolutionSim, *, webhooks: bool) -> None:
    """100 media messages in each simulator over 10 chats, every kind, a few lost; with
    `webhooks` each is delivered as it arrives (WAHA saves the file as it emits: the file's
    20 s start then)."""
    now = int(time.time())
    for i in range(PER_PROVIDER):
        content = media(KINDS[i % len(KINDS)], size=700 + 97 * i, caption=f"arquivo {i}")
        phone = f"55319888800{i % 10:02d}"
        waha_id = waha.add_message("default", phone, content, ts=now - 60 + i % 30)
        evo_key = evo.add_message("vendas", phone, content, ts=now - 60 + i % 30)
        if i % 7 == 0 and i < 7 * LOST:
            waha.lose_media("default", waha_id)
            evo.lose_media("vendas", evo_key)
        if webhooks:
            deliveries = await waha.deliver_message(
                "default", waha_id, event="message.any", delay_s=0
            )
            assert [d.status for d in deliveries] == [200]
            delivery = await evo.deliver_message("vendas", evo_key, delay_s=0)
            assert delivery is not None and delivery.status == 200


async def stored_media(store: Store) -> list[Any]:
    """Every media message: id, provider id, source, status, reason."""
    query = text(
        "SELECT m.id, m.provider_message_id, s.provider, m.media_status, m.media_reason"
        " FROM messages m JOIN sessions s ON s.id = m.session_id ORDER BY m.id"
    )
    async with store.read() as conn:
        return list((await conn.execute(query)).all())


@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize("mode", ["webhook", "poll"])
async def test_every_attachment_ends_stored_or_expired(
    db_url: str, mode: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """200 attachments, 30 % of downloads failing, WAHA files living 20 s: every one is STORED with
    the simulator's exact bytes (served with its type and name), or EXPIRED with the
    provider's reason when WhatsApp lost it; nothing is left PENDING or FAILED."""
    monkeypatch.setenv("WASYNC_TEST_S3_KEY", S3_KEY)
    monkeypatch.setenv("WASYNC_TEST_S3_SECRET", S3_SECRET)
    async with httpx.AsyncClient() as hooks, s3_bucket(backend) as s3:
        waha = WahaSim(
            api_key=WAHA_KEY, http=hooks, files_lifetime_s=20, faults=faults(1, WAHA_DOWNLOADS)
        )
        # Evolution has no file URL to expire (every download is `getBase64FromMediaMessage`);
        # what it truly lost is `lose_media`. A CDN lifetime of 20 s here would make the
        # outcome depend on how fast a loaded machine gets through the retries.
        evo = EvolutionSim(
            api_key=EVO_KEY, http=hooks, webhook_delay_s=0, faults=faults(2, EVO_DOWNLOADS)
        )
        waha.add_session("default", engine="WEBJS")
        evo.add_instance("vendas")
        async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
            section = media_section(backend, tmp_path, s3)
            settings = settings_for(db_url, waha_url, evo_url, mode, section)
            async with running(settings) as d:
                if mode == "webhook":
                    await run_all(settings, public_url=d.base_url)
                await arrive(waha, evo, webhooks=mode == "webhook")
                counts = await wait_settled(d.store, 2 * PER_PROVIDER)
                rows = await stored_media(d.store)
                expired = [r for r in rows if r.media_status == "EXPIRED"]
                assert counts == {"STORED": 2 * (PER_PROVIDER - LOST), "EXPIRED": 2 * LOST}, expired
                await check_served(d.base_url, rows, waha, evo)
        assert sum(waha.faults.injected.values()) > 0 and sum(evo.faults.injected.values()) > 0


async def check_served(base_url: str, rows: list[Any], waha: WahaSim, evo: EvolutionSim) -> None:
    """Each STORED file comes back byte for byte; each EXPIRED one says why, and is 410."""
    token = issue_token(JWT, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=600)
    by_bare = {m["id"].split("_")[2]: m["id"] for m in waha.all_messages("default")}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
        for row in rows:
            got = await client.get(f"/api/messages/{row.id}/media")
            if row.media_status == "EXPIRED":
                assert got.status_code == 410 and row.media_reason
                continue
            if row.provider == "waha":
                truth = waha.media_bytes("default", by_bare[row.provider_message_id])
            else:
                truth = evo.media_bytes("vendas", row.provider_message_id)
            assert got.status_code == 200 and got.content == truth, row
