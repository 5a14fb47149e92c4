"""`wasync replay`: feed captured provider JSON through the same pipeline.

Accepts webhook bodies of either provider (auto-detected; a file may hold one body or a list
of bodies) and plain lists of provider messages (WAHA `WAMessage`s or Evolution records, which
need `--session`). Also re-runs rows of `dead_letters`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from wasync import providers
from wasync.config import Settings
from wasync.deadletters import UNPARSED
from wasync.errors import PayloadError, Quarantined, WasyncError
from wasync.events import Event
from wasync.pipeline import Pipeline
from wasync.registry import Registry, SessionRef
from wasync.store import Store
from wasync.store import models as m
from wasync.untrusted import loads

T_DEAD = m.DeadLetter.__table__  # type: ignore[attr-defined]


@dataclass(slots=True, kw_only=True)
class ReplayReport:
    """Totals of a replay."""

    new: int = 0
    duplicate: int = 0
    ignored: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: ReplayReport) -> None:
        """Fold another report into this one."""
        self.new += other.new
        self.duplicate += other.duplicate
        self.ignored += other.ignored
        self.rejected += other.rejected
        self.errors += other.errors


def resolve_session(
    registry: Registry, name: str | None, provider: str | None, tenant: str | None
) -> SessionRef:
    """The configured session a body belongs to; a clear error when none or several match."""
    if name is None:
        raise PayloadError("body names no session/instance")
    refs = [r for r in registry.by_name(name, provider) if tenant is None or r.tenant_id == tenant]
    if not refs:
        raise PayloadError(
            f"no configured {provider or ''} session named {name!r}".replace("  ", " ")
        )
    if len(refs) > 1:
        raise PayloadError(f"session {name!r} is configured in several tenants: pass --tenant")
    return refs[0]


def parse_document(
    doc: Any, registry: Registry, *, session: SessionRef | None = None, tenant: str | None = None
) -> list[Event]:
    """Events from one JSON document: a webhook body, a list of them, or a list of messages."""
    if isinstance(doc, list):
        return [
            ev
            for item in doc
            for ev in parse_document(item, registry, session=session, tenant=tenant)
        ]
    if not isinstance(doc, Mapping):
        raise PayloadError("not a JSON object or list")
    kind = providers.detect_kind(doc)
    if kind is not None:
        ref = session or resolve_session(registry, kind.session_name(doc), kind.name, tenant)
        return kind.parse_webhook(doc, session_id=ref.id)
    if session is None:
        raise PayloadError("a bare message needs --session (and --tenant when ambiguous)")
    return [session.kind.parse_message(doc, session_id=session.id)]


async def replay_files(
    pipeline: Pipeline,
    registry: Registry,
    paths: Sequence[Path],
    *,
    session: SessionRef | None = None,
    tenant: str | None = None,
) -> ReplayReport:
    """Replay JSON files; a file that cannot be read or parsed counts as rejected."""
    report = ReplayReport()
    for path in paths:
        try:
            doc = loads(path.read_bytes())  # a document nested too deep is a ValueError too
            events = parse_document(doc, registry, session=session, tenant=tenant)
        except (OSError, ValueError, WasyncError) as exc:
            report.rejected += 1
            report.errors.append(f"{path}: {exc}")
            continue
        await _ingest(pipeline, events, report)
    return report


async def replay_dead_letters(
    pipeline: Pipeline, store: Store, registry: Registry, *, tenant: str | None = None
) -> ReplayReport:
    """Re-run the unparsed bodies of `dead_letters` not yet replayed; the ones that now parse
    are marked replayed. Quarantined events and unauthenticated samples are not replayed (no
    session signed a sample; a quarantined event is a parsed event, kept for a person)."""
    report = ReplayReport()
    d = T_DEAD.c
    unreplayed = select(T_DEAD).where(d.replayed_at.is_(None), d.kind == UNPARSED)
    async with store.read() as conn:
        rows = (await conn.execute(unreplayed.order_by(d.id))).all()
    for row in rows:
        try:
            doc, owner = loads(row.body), tenant or row.tenant_id
            session = None
            bare = isinstance(doc, Mapping) and providers.detect_kind(doc) is None
            if bare and row.session_name:
                # a row polling listed (a bare message): it belongs to the session that read it
                session = resolve_session(registry, row.session_name, row.provider, owner)
            events = parse_document(doc, registry, session=session, tenant=owner)
        except (ValueError, WasyncError) as exc:
            report.rejected += 1
            report.errors.append(f"dead letter {row.id}: {exc}")
            continue
        await _ingest(pipeline, events, report)
        async with store.write() as conn:
            await conn.execute(
                update(T_DEAD).where(T_DEAD.c.id == row.id).values(replayed_at=datetime.now(UTC))
            )
    return report


async def _ingest(pipeline: Pipeline, events: Iterable[Event], report: ReplayReport) -> None:
    try:
        result = await pipeline.ingest(list(events), source="replay")
    except Quarantined as exc:  # kept in dead_letters again; counted as rejected
        result = exc.result
        report.errors += exc.reasons
    report.rejected += result.quarantined
    report.new += result.new
    report.duplicate += result.duplicate
    report.ignored += result.ignored
    report.rejected += result.rejected


async def replay_cli(
    settings: Settings,
    files: Sequence[Path],
    session: str | None,
    tenant: str | None,
    dead_letters: bool,
) -> ReplayReport:
    """What `wasync replay` runs: open the store, replay, close."""
    from wasync.registry import sync

    async with Store.from_config(settings.database) as store:
        await store.upgrade()
        registry = await sync(store, settings)
        ref = resolve_session(registry, session, None, tenant) if session else None
        async with Pipeline.from_settings(store, settings) as pipeline:
            report = await replay_files(pipeline, registry, files, session=ref, tenant=tenant)
            if dead_letters:
                report.add(await replay_dead_letters(pipeline, store, registry, tenant=tenant))
    return report
