"""What the rooms of an ingest transaction share: jobs, results, caches, `TxState`."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Connection

from wasync.config import CrmConfig
from wasync.eventlog import EventBuffer
from wasync.events import Address, Command, CursorUpdate, Event, Message, Reaction
from wasync.ingest.normalize import Refusal
from wasync.ingest.statements import STATEMENTS, T_SESSIONS
from wasync.store.models import utcnow
from wasync.store.statements import upsert

log = logging.getLogger(__name__)

CACHE_LIMIT = 100_000
# How new messages reach real-time clients: one `chat:new-message` each, or (backfill) one
# `chat:updated` per touched chat carrying `{"backfilled": n}`.
Realtime = Literal["message", "summary"]
Key = tuple[int, str]  # (session id, provider message id)


@dataclass(slots=True, kw_only=True)
class IngestResult:
    """What one `ingest()` call changed."""

    # The provider's time of each new message or reaction (what reconciliation needs to tell a
    # lost webhook from history older than the daemon: `wasync.poller.Poller.live_since`).
    new_times: list[datetime] = field(default_factory=list)
    duplicate: int = 0
    ignored: int = 0
    rejected: int = 0
    quarantined: int = 0  # kept in dead_letters (`wasync.ingest.quarantine`)

    @property
    def new(self) -> int:
        """Messages and reactions stored for the first time."""
        return len(self.new_times)

    def add(self, other: IngestResult) -> None:
        """Fold in the counts of a part of the same call (a half of a bisected job)."""
        self.new_times += other.new_times
        self.duplicate += other.duplicate
        self.ignored += other.ignored
        self.rejected += other.rejected
        self.quarantined += other.quarantined


@dataclass(slots=True, kw_only=True)
class Job:
    """One caller's events and commands; `outcomes` holds each command's answer."""

    events: Sequence[Event] = ()
    commands: Sequence[Command] = ()
    source: str
    cursors: Sequence[CursorUpdate] = ()
    notify: bool = True
    realtime: Realtime = "message"
    media: bool = False  # new media messages get media_status PENDING (the worker fetches)
    # Events that cannot be stored, kept in dead_letters by this job's transaction.
    refused: list[Refusal] = field(default_factory=list)
    future: asyncio.Future[None] | None = None
    result: IngestResult = field(default_factory=IngestResult)
    outcomes: list[Any] = field(default_factory=list)

    def reset(self) -> None:
        """Forget what a failed transaction counted (the job is retried alone)."""
        self.result = IngestResult()
        self.outcomes = []

    def part(self, events: Sequence[Event]) -> Job:
        """A job of some of this job's events alone: same source and flags, no cursor, no
        refusals (the pipeline commits the halves of a job the store refused this way)."""
        return Job(events=events, source=self.source, notify=self.notify, realtime=self.realtime)


@dataclass(slots=True)
class ChatRow:
    """A chat as ingest needs it."""

    id: int
    tenant_id: str
    jid: str
    kind: str
    phone: str | None
    lead_id: int | None


@dataclass(slots=True, kw_only=True)
class Item:
    """One Message/Reaction event with its job and resolved chat."""

    job: Job
    event: Message | Reaction
    tenant_id: str
    chat: Address
    chat_id: int = 0

    @property
    def key(self) -> Key:
        """The message key: (session id, provider message id)."""
        return (self.event.session_id, self.event.provider_message_id)


class Memory:
    """What committed transactions taught, kept between them (bounded). A failed transaction
    empties the chats and identities: they are only ever filled from committed ones."""

    def __init__(self) -> None:
        self.tenants: dict[int, str] = {}
        self.chats: dict[tuple[str, str], ChatRow] = {}
        self.identities: dict[tuple[str, str], str] = {}

    def remember(self, tx: TxState) -> None:
        """Keep what a committed transaction learned."""
        if len(self.chats) > CACHE_LIMIT or len(self.identities) > CACHE_LIMIT:
            self.forget()
        for key in tx.dropped:
            self.chats.pop(key, None)
        self.chats.update(tx.chats)
        self.identities.update(tx.learned)

    def forget(self) -> None:
        """Drop chats and identities (after a failed transaction)."""
        self.chats.clear()
        self.identities.clear()


class TxState:
    """The state of one transaction over `jobs` that every room works on: the connection, the
    dialect's statements, the clock, the event-log buffer and the chats resolved so far."""

    def __init__(
        self,
        memory: Memory,
        jobs: list[Job],
        *,
        crm: CrmConfig,
        admins: Mapping[str, Sequence[str]],
        pg: bool,
    ) -> None:
        self.memory, self.jobs, self.crm, self.admins, self.pg = memory, jobs, crm, admins, pg
        self.conn: Connection  # set by Tx.run(), which the store calls with its connection
        self.sql = STATEMENTS[pg]
        self.now = utcnow()
        self.log = EventBuffer(self.now)
        self.chats: dict[tuple[str, str], ChatRow] = {}  # resolved in this transaction
        self.learned: dict[tuple[str, str], str] = {}  # LID -> phone pairs new to us
        self.dropped: set[tuple[str, str]] = set()  # chats merged away

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT (with ON CONFLICT)."""
        return upsert(table, pg=self.pg)

    def load_tenants(self) -> None:
        """Learn the tenant of every session the jobs' events name."""
        known = self.memory.tenants
        wanted = {e.session_id for j in self.jobs for e in j.events} - known.keys()
        if not wanted:
            return
        c = T_SESSIONS.c
        rows = self.conn.execute(select(c.id, c.tenant_id).where(c.id.in_(wanted)))
        known.update({int(r.id): str(r.tenant_id) for r in rows})

    def tenant(self, job: Job, session_id: int) -> str | None:
        """The tenant of a session; None (counted as rejected, logged) for an unknown one."""
        tenant = self.memory.tenants.get(session_id)
        if tenant is None:
            job.result.rejected += 1
            log.warning("event for unknown session id %s rejected", session_id)
        return tenant


def group(keys: Iterable[tuple[Any, Any]]) -> dict[Any, list[Any]]:
    """Pairs grouped by their first element: `{a: [b, ...]}`."""
    out: dict[Any, list[Any]] = defaultdict(list)
    for a, b in keys:
        out[a].append(b)
    return out
