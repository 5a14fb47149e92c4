"""`wasync sessions` and the dead-letter line of `wasync doctor`: what the database says about
each configured session, the messages it holds and what it could not store.

Read-only: the sessions table (state as the provider last reported it), the node holding its
lease (`wasync.lease_holders.holders`; on SQLite the one running daemon), message counts, each
session's health from message flow (`session_health`, `wasync.health`: last successful poll,
newest inbound message, webhook-vs-poll lag, messages reconciliation recovered in the last
hour, `OK` / `STALLED` / `DOWN`), and `dead_letters` not yet replayed, by kind
(`wasync.deadletters`): `quarantined` events (one bad message did not stop the session; it
waits here with its reason), `unparsed` webhook bodies (`wasync replay --dead-letters`
re-runs them) and the sample of `unauthenticated` bodies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wasync import deadletters
from wasync.config import Settings
from wasync.health import MISSED_WEBHOOKS, SILENCE, SessionHealth, from_row
from wasync.lease_holders import holders
from wasync.registry import configured_refs
from wasync.store import Store
from wasync.store import models as m

T_SESSIONS = m.Session.__table__  # type: ignore[attr-defined]
T_MESSAGES = m.Message.__table__  # type: ignore[attr-defined]
T_DEAD = deadletters.T_DEAD
T_HEALTH = m.SessionHealthRow.__table__  # type: ignore[attr-defined]


@dataclass(slots=True, kw_only=True)
class SessionLine:
    """One configured session as the database knows it."""

    label: str  # tenant/session
    provider: str
    enabled: bool
    status: str | None = None
    status_at: datetime | None = None
    messages: int = 0
    quarantined: int = 0
    unparsed: int = 0
    last_error: str | None = None  # the newest quarantined or unparsed row's reason
    health: SessionHealth | None = None  # None: never observed by a poll cycle
    node: str | None = None  # the node holding the session's lease (multi-node Postgres)


@dataclass(slots=True, kw_only=True)
class DeadLetterCounts:
    """Unreplayed `dead_letters` rows by kind, and per session."""

    by_kind: dict[str, int] = field(default_factory=dict)
    by_session: dict[tuple[str | None, str | None], dict[str, int]] = field(default_factory=dict)
    newest: dict[tuple[str | None, str | None], int] = field(default_factory=dict)


async def dead_letter_counts(conn: AsyncConnection) -> DeadLetterCounts:
    """Count the unreplayed rows (one grouped query)."""
    out = DeadLetterCounts()
    per: dict[tuple[str | None, str | None], dict[str, int]] = defaultdict(dict)
    for kind, tenant, name, count, newest in await conn.execute(deadletters.counts_by_session()):
        out.by_kind[kind] = out.by_kind.get(kind, 0) + int(count)
        if kind != deadletters.UNAUTHENTICATED:
            per[(tenant, name)][kind] = int(count)
            out.newest[(tenant, name)] = max(out.newest.get((tenant, name), 0), int(newest))
    out.by_session = dict(per)
    return out


async def read_sessions(settings: Settings) -> list[SessionLine]:
    """What `wasync sessions` shows: open the configured database, read, close."""
    async with Store.from_config(settings.database) as store:
        nodes = {sid: h.node_id for sid, h in (await holders(store)).items()}
        async with store.read() as conn:
            return await session_lines(settings, conn, nodes)


async def session_lines(
    settings: Settings, conn: AsyncConnection, nodes: Mapping[int, str] | None = None
) -> list[SessionLine]:
    """Every configured session, in configuration order, with what the database holds (and
    the node holding each, from `nodes`)."""
    msg = T_MESSAGES.c
    rows = {(r.tenant_id, r.name): r for r in await conn.execute(select(T_SESSIONS))}
    counted = select(msg.session_id, func.count()).group_by(msg.session_id)
    messages = {int(sid): int(n) for sid, n in await conn.execute(counted)}
    dead = await dead_letter_counts(conn)
    errors = await _errors(conn, list(dead.newest.values()))
    health = {
        int(r.session_id): from_row(int(r.session_id), r._mapping)
        for r in await conn.execute(select(T_HEALTH))
    }
    lines = []
    for ref in configured_refs(settings):
        row: Any = rows.get((ref.tenant_id, ref.name))
        kinds = dead.by_session.get((ref.tenant_id, ref.name), {})
        newest = dead.newest.get((ref.tenant_id, ref.name))
        lines.append(
            SessionLine(
                label=ref.label,
                provider=ref.provider,
                enabled=ref.config.enabled,
                status=row.status if row is not None else None,
                status_at=row.status_at if row is not None else None,
                node=(nodes or {}).get(int(row.id)) if row is not None else None,
                messages=messages.get(int(row.id), 0) if row is not None else 0,
                quarantined=kinds.get(deadletters.QUARANTINED, 0),
                unparsed=kinds.get(deadletters.UNPARSED, 0),
                last_error=errors.get(newest) if newest is not None else None,
                health=health.get(int(row.id)) if row is not None else None,
            )
        )
    return lines


async def _errors(conn: AsyncConnection, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    d = T_DEAD.c
    rows = await conn.execute(select(d.id, d.error).where(d.id.in_(ids)))
    return {int(r.id): str(r.error) for r in rows}


HEADER = (
    "SESSION",
    "PROVIDER",
    "STATUS",
    "SINCE",
    "MESSAGES",
    "QUARANTINED",
    "UNPARSED",
    "HEALTH",
    "NODE",
    "POLLED",
    "INBOUND",
    "LAG",
    "RECOVERED(1H)",
)


def render(lines: list[SessionLine], now: datetime | None = None) -> list[str]:
    """The `wasync sessions` table, one line per session (plain text, aligned); then the
    newest reason kept aside, and why each STALLED session is."""
    now = now or datetime.now(UTC)
    table: list[tuple[str, ...]] = [HEADER]
    for line in lines:
        status = (line.status or "-") if line.enabled else "disabled"
        table.append(
            (
                line.label,
                line.provider,
                status,
                _when(line.status_at),
                str(line.messages),
                str(line.quarantined),
                str(line.unparsed),
                *_health_cells(line, now),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    for line in lines:
        if line.last_error:
            out.append(f"{line.label}: last kept: {line.last_error}")
    for line in lines:
        if line.health is not None and line.health.stalled:
            why = STALL_REASONS.get(line.health.reason or "", line.health.reason or "")
            out.append(f"{line.label}: STALLED since {_when(line.health.state_at)}: {why}")
    return out


STALL_REASONS = {
    MISSED_WEBHOOKS: "the provider says it is working, but polling finds messages no webhook"
    " delivered (check the provider's webhook config and logs)",
    SILENCE: "nothing inbound for longer than [health] silence_s",
}


def _health_cells(line: SessionLine, now: datetime) -> tuple[str, ...]:
    h = line.health
    node = line.node or "-"
    if h is None:
        return ("-", node, "-", "-", "-", "-")
    lag = f"{h.webhook_lag_s:.1f}s" if h.webhook_lag_s is not None else "-"
    recovered = str(h.recovered_last_hour(now))
    return (h.state or "-", node, _when(h.last_poll_at), _when(h.last_inbound_at), lag, recovered)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at is not None else "-"
