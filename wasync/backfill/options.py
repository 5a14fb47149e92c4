"""`wasync backfill` options: the command line checked against the config, and which sessions
it selects."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from wasync import phones
from wasync.config import Settings
from wasync.registry import SessionRef
from wasync.store.types import as_utc

DAY_S = 86_400.0
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BackfillUsageError(ValueError):
    """A bad command line (date, tenant, session, chat); the CLI prints it and exits 2."""


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatFilter:
    """`--chat`: a canonical phone (matched in any jid form, or through a known LID) or a jid."""

    text: str
    phone: str | None = None
    jid: str | None = None

    def matches(self, chat_id: str, lid_phones: Mapping[str, str]) -> bool:
        """True when a listed chat is the wanted one."""
        phone = phones.canonical_phone(chat_id) or lid_phones.get(chat_id.lower())
        if self.phone is not None and phone == self.phone:
            return True
        return self.jid is not None and chat_id.lower() == self.jid


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What to backfill and how; built by `make_options` from the command line.

    Windows start at `window_s`, double up to `max_window_s` while they fit in one page, and are
    halved (down to `min_window_s`) while they need more than `max_pages` pages. `fetch_only`
    reads the providers and never opens the database (benchmarks).
    """

    since: float
    until: float
    tenant: str | None = None
    session: str | None = None
    chat: ChatFilter | None = None
    max_messages: int | None = None
    dry_run: bool = False
    fetch_only: bool = False
    notify: bool = False
    page_size: int = 100
    window_s: float = DAY_S
    max_window_s: float = 32 * DAY_S
    min_window_s: float = 1.0
    max_pages: int = 10
    chats_in_flight: int = 4
    flush_events: int = 2_000
    media: bool = False  # then fetch the media of that history, at most `media_budget` files
    media_budget: int = 500


def parse_when(text: str, *, end_of_day: bool = False) -> float:
    """Epoch seconds of an ISO date (`2026-01-31`: midnight UTC, or its last second with
    `end_of_day`) or date-time (`2026-01-31T12:00`, UTC unless it carries an offset)."""
    raw = text.strip()
    try:
        if _DATE_ONLY.match(raw):
            day = date.fromisoformat(raw)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start.timestamp() + (DAY_S - 1 if end_of_day else 0)
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise BackfillUsageError(
            f"bad date {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"
        ) from None
    return as_utc(when).timestamp()


def parse_chat(text: str) -> ChatFilter:
    """`--chat`: a jid (`…@c.us`, `…@s.whatsapp.net`, `…@lid`, `…@g.us`) or a phone number."""
    raw = text.strip()
    if "@" in raw:
        return ChatFilter(text=text, jid=raw.lower(), phone=phones.canonical_phone(raw))
    try:
        return ChatFilter(text=text, phone=phones.parse_phone(raw))
    except ValueError as exc:
        raise BackfillUsageError(f"--chat: {exc}") from None


def make_options(
    settings: Settings,
    *,
    since: str,
    until: str | None = None,
    tenant: str | None = None,
    session: str | None = None,
    chat: str | None = None,
    now: float | None = None,
    **extra: Any,
) -> Options:
    """Validate the command line against the config; raise BackfillUsageError on a problem."""
    start = parse_when(since)
    end = parse_when(until, end_of_day=True) if until else (now or time.time())
    if start >= end:
        raise BackfillUsageError("--since must be before --until (or before now)")
    check_selection(settings, tenant, session)
    chat_filter = parse_chat(chat) if chat else None
    return Options(
        since=float(math.floor(start)),
        until=float(math.ceil(end)),
        tenant=tenant,
        session=session,
        chat=chat_filter,
        **extra,
    )


def check_selection(settings: Settings, tenant: str | None, session: str | None) -> None:
    """Unknown tenant, unknown session, or a session name shared by tenants without `--tenant`."""
    tenants = [t for t in settings.tenants if tenant is None or t.id == tenant]
    if tenant is not None and not tenants:
        known = ", ".join(t.id for t in settings.tenants) or "none configured"
        raise BackfillUsageError(f"unknown tenant {tenant!r} (tenants: {known})")
    if session is None:
        return
    owners = [t.id for t in tenants if any(s.name == session for s in t.sessions)]
    if not owners:
        where = f" in tenant {tenant!r}" if tenant else ""
        raise BackfillUsageError(f"unknown session {session!r}{where}")
    if len(owners) > 1:
        raise BackfillUsageError(
            f"session {session!r} exists in tenants {', '.join(owners)}: pass --tenant"
        )


def selected(refs: Iterable[SessionRef], options: Options) -> list[SessionRef]:
    """The sessions to walk: the named one (even if disabled), else every enabled one."""
    out = []
    for ref in refs:
        if options.tenant is not None and ref.tenant_id != options.tenant:
            continue
        if options.session is not None:
            if ref.name == options.session:
                out.append(ref)
        elif ref.config.enabled:
            out.append(ref)
    return out
