"""Session health from message flow: the observation a poll cycle makes, and the rules that
turn what the database knows of a session into `OK`, `STALLED` or `DOWN` (pure: no I/O).

WAHA #1717/#2151 and Evolution #2647/#2665: a session can answer WORKING and still stop
firing webhooks. When webhooks are on, polling is reconciliation, so a message polling stores
first is one a webhook has not delivered, if it is dated after the daemon started polling the
session (older history, and what came while the daemon was down, proves nothing about the
provider's webhooks). One such cycle proves little (the webhook may be in
flight); when no webhook has delivered any message of the session by the end of the next
cycle, the session is `STALLED` (`missed_webhooks`): at most two reconciliation cycles after
the first message they missed. It is `OK` again once a webhook delivers a message and a cycle
recovers nothing. A WORKING session where nothing inbound arrived for `[health] silence_s` is
`STALLED` too (`silence`), with or without webhooks. A session the provider does not call
working is `DOWN`. The ingest room `wasync.ingest.health` applies these rules in the
transaction that records them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

OK = "OK"
STALLED = "STALLED"
DOWN = "DOWN"
MISSED_WEBHOOKS = "missed_webhooks"  # polling found messages no webhook delivered
SILENCE = "silence"  # nothing inbound for `silence_s`
NOT_WORKING = "not_working"  # the provider's own state is not a working one
RECOVERY_WINDOW = timedelta(hours=1)
# The `session_health` columns that are `SessionHealth` fields of the same name.
FIELDS = (
    "state",
    "reason",
    "state_at",
    "last_poll_at",
    "last_inbound_at",
    "last_webhook_at",
    "webhook_lag_s",
    "recovered_total",
    "suspect_at",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ObserveHealth:
    """A command: one poll cycle of a session ended without an error. `started` is when it
    began; `recovered` the messages it stored first while webhooks are on (`reconciling`);
    `working` and `status` what the provider last said. Answers the new `SessionHealth`."""

    session_id: int
    started: datetime
    working: bool
    status: str | None
    reconciling: bool
    recovered: int = 0
    silence_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPolls:
    """A command: idle cycles that changed nothing but each session's last poll time
    (`polled`: session id, when its cycle ended), written together for many sessions
    (`wasync.healthwatch.PollBeats`). A time older than the row's is ignored. Answers each
    session's row after it (`SessionHealth` by session id)."""

    polled: tuple[tuple[int, datetime], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionHealth:
    """A `session_health` row. `recent` holds `(minute, count)` pairs of recovered messages
    within the last hour; `suspect_at` the start of a cycle that recovered messages and waits
    for the next one to say whether the webhooks stopped."""

    session_id: int
    state: str | None = None
    reason: str | None = None
    state_at: datetime | None = None
    last_poll_at: datetime | None = None
    last_inbound_at: datetime | None = None
    last_webhook_at: datetime | None = None
    webhook_lag_s: float | None = None
    recovered_total: int = 0
    recent: tuple[tuple[int, int], ...] = field(default=())
    suspect_at: datetime | None = None
    created_at: datetime | None = None

    @property
    def stalled(self) -> bool:
        """The state is STALLED."""
        return self.state == STALLED

    def recovered_last_hour(self, now: datetime) -> int:
        """Messages recovered by reconciliation within the hour before `now`."""
        return sum(n for _minute, n in window(self.recent, now))


def from_row(session_id: int, row: Mapping[Any, Any]) -> SessionHealth:
    """A `session_health` row (a mapping of its columns) as `SessionHealth`."""
    recent = row["recovered_recent"] or []
    return SessionHealth(
        session_id=session_id,
        recent=tuple((int(p[0]), int(p[1])) for p in recent),
        created_at=row["created_at"],
        **{name: row[name] for name in FIELDS},
    )


def minute_of(at: datetime) -> int:
    """Minutes since the epoch."""
    return int(at.timestamp() // 60)


def window(recent: Sequence[Sequence[int]], now: datetime) -> tuple[tuple[int, int], ...]:
    """The `(minute, count)` pairs of the last hour."""
    oldest = minute_of(now - RECOVERY_WINDOW)
    return tuple((int(m), int(n)) for m, n in recent if int(m) > oldest)


def decide(prev: SessionHealth, obs: ObserveHealth, now: datetime) -> SessionHealth:
    """The session's health after the cycle `obs`, from what the database held (`prev`)."""
    recent = window(prev.recent, now)
    recovered = obs.recovered if obs.reconciling else 0
    if recovered:
        minute = minute_of(now)
        counts = dict(recent)
        counts[minute] = counts.get(minute, 0) + recovered
        recent = tuple(sorted(counts.items()))
    state, reason, suspect = _state(prev, obs, now)
    changed = state != prev.state or reason != prev.reason
    return replace(
        prev,
        state=state,
        reason=reason,
        state_at=now if changed else prev.state_at,
        last_poll_at=now,
        recovered_total=prev.recovered_total + recovered,
        recent=recent,
        suspect_at=suspect,
    )


def _state(
    prev: SessionHealth, obs: ObserveHealth, now: datetime
) -> tuple[str, str | None, datetime | None]:
    """(state, reason, suspect_at) by the rules of the module docstring."""
    if not obs.working:
        return DOWN, NOT_WORKING, None
    suspect: datetime | None = None
    if obs.reconciling:
        hooks = prev.last_webhook_at
        if prev.state == STALLED and prev.reason == MISSED_WEBHOOKS:
            resumed = hooks is not None and (prev.state_at is None or hooks > prev.state_at)
            if not resumed or obs.recovered:
                return STALLED, MISSED_WEBHOOKS, None
        else:
            suspect = prev.suspect_at
            if suspect is not None and hooks is not None and hooks >= suspect:
                suspect = None  # a webhook came after all: it was in flight, not lost
            if suspect is not None and suspect < obs.started:
                return STALLED, MISSED_WEBHOOKS, None
            if suspect is None and obs.recovered:
                suspect = obs.started
    since = prev.last_inbound_at or prev.created_at or now
    if obs.silence_s > 0 and (now - since).total_seconds() > obs.silence_s:
        return STALLED, SILENCE, suspect
    return OK, None, suspect
