"""Nothing unauthenticated is stored unbounded: the sender is identified and verified before
a body is kept, unsigned bodies are counted and sampled within caps, a per-source limit comes
before any work, and "already kept" is an index probe."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import text

from tests.test_webhook import WAHA_BODIES, Env, _settings, evo_headers, waha_headers
from wasync import deadletters
from wasync.api.app import AppContext, create_app
from wasync.metrics import Metrics
from wasync.pipeline import Pipeline
from wasync.registry import sync
from wasync.store import Store
from wasync.store.migrate import alembic_config

REACTION = json.dumps(WAHA_BODIES["message.reaction.json"]).encode()


@asynccontextmanager
async def hooked(db_url: str, **webhook: Any) -> AsyncIterator[tuple[Env, Any]]:
    """The app on a fresh database with `[webhook]` settings; `client(address)` gives an
    HTTP client that posts from that address."""
    settings = _settings(db_url, **webhook)
    async with Store(db_url) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        async with Pipeline(store) as pipeline:
            metrics = Metrics()
            ctx = AppContext(
                settings=settings,
                store=store,
                registry=registry,
                pipeline=pipeline,
                metrics=metrics,
            )
            app = create_app(ctx)

            def client(address: str = "203.0.113.7") -> httpx.AsyncClient:
                transport = httpx.ASGITransport(app=app, client=(address, 40000))
                return httpx.AsyncClient(transport=transport, base_url="http://wasync")

            e = Env(store, registry, pipeline, metrics)
            async with client() as e.client:
                yield e, client


async def kept(e: Env, kind: str) -> list[Any]:
    """Rows of `dead_letters` of one kind, oldest first."""
    async with e.store.read() as conn:
        sql = text("SELECT * FROM dead_letters WHERE kind = :k ORDER BY id")
        return list(await conn.execute(sql, {"k": kind}))


def counted(e: Env, kept_: str) -> float:
    """wasync_webhook_unauthenticated_total{kept}."""
    value = e.metrics.registry.get_sample_value(
        "wasync_webhook_unauthenticated_total", {"kept": kept_}
    )
    return value or 0.0


async def test_unsigned_garbage_is_counted_and_only_a_capped_sample_kept(db_url: str) -> None:
    """300 unsigned bodies (not JSON, JSON that is no webhook, a webhook of nobody, a forged
    signature) are all answered 4xx and counted; at most `unauthenticated_sample_rows` are
    kept, each cut to `unauthenticated_sample_bytes`, the newest ones."""
    caps = {
        "unauthenticated_sample_rows": 5,
        "unauthenticated_sample_bytes": 64,
        "unauthenticated_sample_per_min": 100_000,
    }
    async with hooked(db_url, **caps) as (e, _):
        bodies = [f"garbage {i} ".encode() * 40 for i in range(297)]
        bodies += [b'{"hello": "world"}', json.dumps({"event": "x", "payload": {}}).encode()]
        answers = [await e.client.post("/api/webhooks/whatsapp", content=b) for b in bodies]
        forged = await e.client.post(
            "/api/webhooks/whatsapp", content=REACTION, headers=waha_headers(REACTION, "nope")
        )
        rows = await kept(e, deadletters.UNAUTHENTICATED)
    assert {a.status_code for a in answers} == {400} and forged.status_code == 401
    assert counted(e, "yes") + counted(e, "no") == 300
    assert len(rows) == 5 and all(len(bytes(r.body)) <= 64 for r in rows)
    assert bytes(rows[-1].body) == REACTION[:64]  # the newest kept, the oldest dropped
    assert all(r.session_name is None and r.tenant_id is None for r in rows)
    assert not await kept(e, deadletters.UNPARSED)


async def test_the_sample_is_rate_limited(db_url: str) -> None:
    """Past `unauthenticated_sample_per_min`, unsigned bodies are only counted."""
    async with hooked(db_url, unauthenticated_sample_per_min=2) as (e, _):
        for i in range(50):
            resp = await e.client.post("/api/webhooks/whatsapp", content=f"junk {i}".encode())
            assert resp.status_code == 400
        assert len(await kept(e, deadletters.UNAUTHENTICATED)) == 2
    assert (counted(e, "yes"), counted(e, "no")) == (2, 48)


async def test_a_signed_body_that_cannot_parse_is_kept_an_unsigned_one_is_not(
    db_url: str,
) -> None:
    """The same cut-off body: signed by a session's key it is kept as `unparsed` (replayable,
    for that session); unsigned, or nested too deep to parse, it is only sampled."""
    async with hooked(db_url) as (e, _):
        cut = REACTION[:-20]
        deep = b"[" * 100_000 + b"]" * 100_000
        signed = await e.client.post("/api/webhooks/waha", content=cut, headers=waha_headers(cut))
        unsigned = await e.client.post("/api/webhooks/waha", content=cut[:-3])
        deep_signed = await e.client.post(
            "/api/webhooks/waha", content=deep, headers=waha_headers(deep)
        )
        deep_unsigned = await e.client.post("/api/webhooks/whatsapp", content=deep)
        unparsed = await kept(e, deadletters.UNPARSED)
        sampled = await kept(e, deadletters.UNAUTHENTICATED)
    assert [r.status_code for r in (signed, unsigned, deep_signed, deep_unsigned)] == [400] * 4
    assert [bytes(r.body) for r in unparsed] == [cut, deep]
    assert unparsed[0].session_name == "default" and unparsed[0].session_id  # its raw name
    assert unparsed[1].provider == "waha"  # no name: a WAHA session whose key verifies it
    assert len(sampled) == 2


async def test_the_per_source_limit_comes_before_any_work(db_url: str) -> None:
    """One address past `source_burst` gets 429 with Retry-After, signed or not, before its
    body is read; another address is served meanwhile."""
    async with hooked(db_url, source_rate_per_s=0.01, source_burst=3) as (e, client):
        codes = []
        for _ in range(5):
            resp = await e.client.post(
                "/api/webhooks/waha", content=REACTION, headers=waha_headers(REACTION)
            )
            codes.append(resp.status_code)
        async with client("198.51.100.9") as other:
            elsewhere = await other.post(
                "/api/webhooks/waha", content=REACTION, headers=waha_headers(REACTION)
            )
    assert codes == [200, 200, 200, 429, 429] and int(resp.headers["retry-after"]) >= 1
    assert elsewhere.status_code == 200
    limited = e.metrics.registry.get_sample_value(
        "wasync_webhook_requests_total", {"provider": "waha", "outcome": "source_limited"}
    )
    assert limited == 2


async def test_the_duplicate_check_uses_the_hash_index(db_url: str) -> None:
    """ "Same body already kept?" is answered by `ix_dead_letters_body_sha256` once the table
    has grown (the issue saw a small post go from 3.8 ms to 89 ms as it did), not by
    comparing every body."""
    async with hooked(db_url) as (e, _):
        rows = [
            deadletters.row(
                kind=deadletters.UNPARSED, source="webhook", body=b"x%d" % i, error="e", now=_now()
            )
            for i in range(500)
        ]
        async with e.store.write() as conn:
            await conn.execute(deadletters.T_DEAD.insert(), rows)
            await conn.execute(text("ANALYZE"))
        probe = deadletters.same_row(rows[7])
        async with e.store.read() as conn:
            compiled = probe.compile(conn.sync_connection, compile_kwargs={"literal_binds": True})
            explain = "EXPLAIN QUERY PLAN" if e.store.is_sqlite else "EXPLAIN"
            plan = " ".join(str(r[-1]) for r in await conn.execute(text(f"{explain} {compiled}")))
            found = await conn.scalar(probe)
    assert "ix_dead_letters_body_sha256" in plan and found is not None


async def test_rows_kept_before_the_migration_get_their_hash(db_url: str) -> None:
    """Upgrading a database from 0002 hashes the dead letters it already holds, and they are
    `unparsed` (they were parse failures)."""
    async with Store(db_url) as store:
        async with store.writer.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0002"))
            await conn.execute(
                text(
                    "INSERT INTO dead_letters (source, error, body, created_at)"
                    " VALUES ('webhook', 'old', :b, :t)"
                ),
                {"b": b"an old body", "t": _now()},
            )
        await store.upgrade()
        async with store.read() as conn:
            got = (await conn.execute(text("SELECT kind, body_sha256 FROM dead_letters"))).one()
    assert got.kind == "unparsed"
    assert (
        got.body_sha256
        == deadletters.row(kind="x", source="x", body=b"an old body", error="", now=_now())[
            "body_sha256"
        ]
    )


@pytest.mark.parametrize("path", ["/api/webhooks/whatsapp", "/api/webhooks/evolution"])
async def test_evolution_bodies_that_cannot_parse_are_kept_only_when_signed(
    db_url: str, path: str
) -> None:
    """Evolution signs a header, not the body: a cut body with its JWT is kept for the
    session its raw bytes name; without the JWT it is only sampled."""
    body = json.dumps(
        {"event": "messages.upsert", "instance": "minha-instancia", "data": {"key": {}}}
    ).encode()
    async with hooked(db_url) as (e, _):
        with_jwt = await e.client.post(path, content=body[:-5], headers=evo_headers())
        without = await e.client.post(path, content=body[:-6])
        unparsed = await kept(e, deadletters.UNPARSED)
    assert (with_jwt.status_code, without.status_code) == (400, 400)
    assert len(unparsed) == 1 and unparsed[0].provider == "evolution"
    assert unparsed[0].session_name == "minha-instancia"


def _now() -> Any:
    from wasync.store.models import utcnow

    return utcnow()


async def test_an_answer_quoting_a_lone_surrogate_is_still_json(db_url: str) -> None:
    """Found by scripts/fuzz_webhooks.py: the 400 for a message without a chat quotes its id,
    and an id holding a lone surrogate made the answer unencodable (a 500)."""
    body = {"event": "message", "session": "default", "payload": {"id": "a\udfffb"}}
    raw = json.dumps(body).encode()
    async with hooked(db_url) as (e, _):
        resp = await e.client.post("/api/webhooks/waha", content=raw, headers=waha_headers(raw))
    assert resp.status_code == 400
    assert resp.json() == {"ok": False, "detail": "WAHA message ab without a chat id"}
