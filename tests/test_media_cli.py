"""`wasync media retry` and `wasync backfill --media`: media queued again by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from tests.factories import msg
from tests.media_support import FAST_MEDIA, media_counts
from wasync.backfill import make_options, run_backfill
from wasync.cli import app
from wasync.config import parse
from wasync.events import Media, MediaClaim, MediaFailed, MessageType
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.sim import EvolutionSim, media, serve
from wasync.store import Store

EVO_KEY = "evolution-sim-key"


def _config(path: Path, db: Path) -> Path:
    path.write_text(
        f"""
[database]
url = "sqlite+aiosqlite:///{db}"
[[tenants]]
id = "acme"
[[tenants.sessions]]
name = "vendas"
provider = "evolution"
base_url = "http://127.0.0.1:9"
api_key = "k"
"""
    )
    return path


async def _failed_media(config: Path) -> None:
    """One media message whose fetch FAILED for good."""
    from wasync.config import load

    settings = load(config)
    async with Store.from_config(settings.database) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        sid = next(iter(registry)).id
        async with Pipeline(store, media=True) as pipeline:
            jid = "5511977776666@s.whatsapp.net"
            image = msg(sid, "IMG", jid, type_=MessageType.IMAGE, media=Media())
            await pipeline.ingest([image], source="poll")
            (job,) = await pipeline.execute(MediaClaim(limit=5, per_session=5, lease_s=60))
            failed = MediaFailed(message_id=job["id"], attempts=job["media_attempts"], reason="x")
            assert await pipeline.execute(failed)


def test_media_retry_queues_failed_media_again(tmp_path: Path):
    """FAILED media becomes PENDING from its first attempt, with a chat:message-media frame;
    an unknown session is one line and exit 2."""
    config = _config(tmp_path / "c.toml", tmp_path / "w.db")
    asyncio.run(_failed_media(config))
    runner = CliRunner()
    bad = runner.invoke(app, ["media", "retry", "--config", str(config), "--session", "nope"])
    assert bad.exit_code == 2 and "unknown session 'nope'" in bad.output
    done = runner.invoke(app, ["media", "retry", "--config", str(config), "--since", "2020-01-01"])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == "queued=1"

    async def check() -> tuple[Any, list[Any]]:
        async with Store(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}") as store:
            async with store.read() as conn:
                row = (
                    await conn.execute(text("SELECT media_status, media_attempts FROM messages"))
                ).one()
                frames = (
                    await conn.execute(
                        text("SELECT chat_id, data FROM events WHERE type = 'chat:message-media'")
                    )
                ).all()
            return row, frames

    row, frames = asyncio.run(check())
    assert tuple(row) == ("PENDING", 0)
    assert [f.chat_id is not None for f in frames] == [True, True]  # FAILED, then PENDING
    again = runner.invoke(app, ["media", "retry", "--config", str(config)])
    assert again.output.strip() == "queued=0"


async def test_backfill_media_fetches_history_within_the_budget(db_url: str, tmp_path: Path):
    """History stays untracked (NONE) unless `--media`, which fetches at most the budget's
    files, newest first, and reports them."""
    sim = EvolutionSim(api_key=EVO_KEY)
    sim.add_instance("vendas")
    for i in range(6):
        sim.add_message(
            "vendas", "5531988887777", media("image", size=2_000 + i), ts=1_780_000_000 + i
        )
    async with serve(sim.app) as url:
        settings = parse(
            {
                "database": {"url": db_url},
                "media": {"dir": str(tmp_path / "media"), **FAST_MEDIA},
                "tenants": [
                    {
                        "id": "acme",
                        "sessions": [
                            {
                                "name": "vendas",
                                "provider": "evolution",
                                "base_url": url,
                                "api_key": EVO_KEY,
                            }
                        ],
                    }
                ],
            }
        )
        plain = await run_backfill(settings, make_options(settings, since="2026-01-01"))
        assert plain.ok and plain.media is None
        async with Store(db_url) as store:
            assert await media_counts(store) == {"NONE": 6}
        options = make_options(settings, since="2026-01-01", media=True, media_budget=4)
        report = await run_backfill(settings, options)
        assert report.media == {"stored": 4, "pending": 0}
        async with Store(db_url) as store:
            assert await media_counts(store) == {"NONE": 2, "STORED": 4}
            async with store.read() as conn:
                newest = await conn.execute(
                    text("SELECT provider_message_id FROM messages WHERE media_status = 'STORED'")
                )
                stored = {r[0] for r in newest}
    keys = [m["key"]["id"] for m in sim.all_messages("vendas")]
    assert stored == set(keys[-4:])
    assert sim.requests["chat.getBase64FromMediaMessage"] == 4
