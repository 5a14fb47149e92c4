"""`wasync doctor`: check a configuration against the world before running it.

One line per check. The checks cover:

- the configuration: every finding of `wasync.config.checks` (the same function `wasync run`
  calls, so a config `run` refuses is a FAIL here, with the same words);
- the database: reachable, and its schema version against the packaged migrations;
- `dead_letters`: events quarantined and webhook bodies kept unparsed, per session, and the
  sample of unauthenticated bodies (`wasync sessions` shows them per session);
- the `[auth]` JWT secret;
- every configured session: can its provider be reached, is the API key accepted, is the
  session working, and can it be polled (a WAHA NOWEB session without its store cannot);
- with `[webhook] enabled`, whether the provider has a webhook registered; without, what
  polling cannot see on the session (a delete on Evolution 2.3.0-2.3.4 and 2.3.7+, edits
  on WAHA GOWS).

A failure is something `wasync run` cannot work around. A warning is something it works
around, or that a command fixes. No secret is ever printed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import httpx
import sqlalchemy.exc
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from wasync import webhooks
from wasync.config import Settings
from wasync.config.checks import findings
from wasync.deadletters import QUARANTINED, UNAUTHENTICATED, UNPARSED
from wasync.errors import ConfigError, ProviderError, StoreUnavailable, Unauthorized
from wasync.registry import SessionRef, configured_refs, http_for, provider_for
from wasync.session_status import dead_letter_counts
from wasync.store import Store
from wasync.store.migrate import alembic_config

T = TypeVar("T")
Level = Literal["ok", "warn", "fail"]
MIN_JWT_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key of at least the hash size


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """The outcome of one check."""

    subject: str  # `database`, `auth`, `acme/default`
    level: Level
    detail: str


async def diagnose(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> list[Check]:
    """Every check, in order: the config, database, auth, then each configured session."""
    checks = _config(settings)
    checks.append(database := await _database(settings))
    if database.level == "ok":
        checks.append(await _dead_letters(settings))
    checks.append(_auth(settings))
    refs = [ref for ref in configured_refs(settings) if ref.config.enabled]
    # One attempt per request: a doctor reports, it does not wait out an outage.
    quick = settings.model_copy(
        update={"poll": settings.poll.model_copy(update={"max_attempts": 1})}
    )
    async with httpx.AsyncClient(transport=transport) as client:
        for ref in refs:
            checks += await _session(quick, ref, client)
    return checks


def _config(settings: Settings) -> list[Check]:
    """What `wasync run` refuses (FAIL) or warns about, in its words."""
    found = findings(settings)
    if not found:
        return [Check(subject="config", level="ok", detail="every secret resolved")]
    return [Check(subject="config", level=f.level, detail=f"{f.key}: {f.problem}") for f in found]


def _no_sqlite_file(settings: Settings) -> Check | None:
    """A SQLite file that does not exist yet (connecting would create it: not ours to do)."""
    url = make_url(settings.database.url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    path = Path(url.database).expanduser()
    if path.exists():
        return None
    detail = f"{url.drivername}: {path} does not exist yet (`wasync run` creates it)"
    return Check(subject="database", level="warn", detail=detail)


async def _database(settings: Settings) -> Check:
    missing = _no_sqlite_file(settings)
    if missing is not None:
        return missing
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    chain = [r.revision for r in script.walk_revisions()][::-1]  # oldest first
    backend = make_url(settings.database.url).drivername
    try:
        async with Store.from_config(settings.database) as store, store.read() as conn:
            try:
                found = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            except sqlalchemy.exc.DBAPIError:  # no schema yet: no such table
                found = None
    except (StoreUnavailable, OSError) as exc:
        return Check(subject="database", level="fail", detail=f"{backend}: {exc}")
    if found == head:
        detail = f"{backend}, schema {head} (revisions {', '.join(chain)})"
        return Check(subject="database", level="ok", detail=detail)
    detail = f"{backend}, schema {found or 'absent'}, packaged {head}: `wasync db upgrade`"
    return Check(subject="database", level="warn", detail=detail + " (run also applies it)")


async def _dead_letters(settings: Settings) -> Check:
    """What the database kept aside instead of storing: a warning while any of it waits."""
    try:
        async with Store.from_config(settings.database) as store, store.read() as conn:
            dead = await dead_letter_counts(conn)
    except (StoreUnavailable, OSError, sqlalchemy.exc.DBAPIError) as exc:
        return Check(subject="dead_letters", level="fail", detail=f"unreadable: {exc}"[:200])
    quarantined = dead.by_kind.get(QUARANTINED, 0)
    unparsed = dead.by_kind.get(UNPARSED, 0)
    sampled = dead.by_kind.get(UNAUTHENTICATED, 0)
    parts = [f"{quarantined} quarantined", f"{unparsed} unparsed", f"{sampled} unsigned samples"]
    if not quarantined and not unparsed:
        return Check(subject="dead_letters", level="ok", detail=", ".join(parts))
    totals = sorted(
        ((sum(kinds.values()), f"{t}/{n}") for (t, n), kinds in dead.by_session.items()),
        key=lambda pair: (-pair[0], pair[1]),
    )
    per = [f"{label} {count}" for count, label in totals[:5]]
    more = f"; {len(totals) - 5} more" if len(totals) > 5 else ""
    detail = f"{', '.join(parts)} ({'; '.join(per)}{more}): see `wasync sessions`"
    return Check(subject="dead_letters", level="warn", detail=detail)


def _auth(settings: Settings) -> Check:
    try:
        secret = settings.auth.secret()
    except ConfigError as exc:
        return Check(subject="auth", level="warn", detail=f"{exc}: REST and /ws refuse everyone")
    if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        detail = f"JWT secret shorter than {MIN_JWT_SECRET_BYTES} bytes"
        return Check(subject="auth", level="warn", detail=detail)
    return Check(subject="auth", level="ok", detail="JWT secret set")


async def _session(settings: Settings, ref: SessionRef, client: httpx.AsyncClient) -> list[Check]:
    where = f"{ref.provider} {ref.config.base_url}"
    try:
        provider = provider_for(ref, client, settings.poll)
    except ConfigError:
        return []  # a missing secret: the config check has said so
    state = await _ask(provider.state)
    if isinstance(state, Check):
        return [Check(subject=ref.label, level="fail", detail=f"{where}: {state.detail}")]
    engine = f", engine {state.engine}" if state.engine else ""
    level: Level = "ok" if state.working else "warn"
    detail = f"{where}: {state.status}{engine}"
    if state.blocker:  # up, but polling cannot read it: with the fix
        level, detail = "fail", f"{detail}: {state.blocker}"
    checks = [Check(subject=ref.label, level=level, detail=detail)]
    if settings.webhook.enabled:
        checks.append(await _webhook(settings, ref, client))
    elif state.working:
        http = http_for(ref, client, settings.poll)
        gaps = await _ask(lambda: ref.kind.admin.polling_gaps(http, ref.name))
        if isinstance(gaps, str):  # a failed ask was the state's to report
            detail = f"{gaps} (webhooks do: [webhook] enabled)"
            checks.append(Check(subject=f"{ref.label} polling", level="warn", detail=detail))
    return checks


async def _webhook(settings: Settings, ref: SessionRef, client: httpx.AsyncClient) -> Check:
    subject = f"{ref.label} webhook"
    state = await _ask(lambda: webhooks.status(http_for(ref, client, settings.poll), ref))
    if isinstance(state, Check):
        return Check(subject=subject, level="fail", detail=state.detail)
    if state.url is None:
        detail = "none registered: `wasync webhooks register` (polling still runs)"
        return Check(subject=subject, level="warn", detail=detail)
    signed = "signed" if state.signed else "UNSIGNED"
    return Check(subject=subject, level="ok", detail=f"{state.url} [{signed}]")


async def _ask(call: Callable[[], Awaitable[T]]) -> T | Check:
    """The call's answer, or a failed Check saying why in one line."""
    try:
        return await call()
    except Unauthorized:
        return Check(subject="", level="fail", detail="API key rejected (401)")
    except ProviderError as exc:
        return Check(subject="", level="fail", detail=str(exc))
    except httpx.HTTPError as exc:
        return Check(subject="", level="fail", detail=f"unreachable: {type(exc).__name__}")
