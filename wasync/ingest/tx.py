"""`Tx`: one ingest transaction over a batch of jobs.

The steps, in order (`Tx.run`), with the event log locked from the BEGIN (`INGEST_LOCK`,
taken by `Store.run_write`: `Pipeline._transaction`): resolve tenants; for new messages and
reactions resolve identities and chats (`contacts`) and insert what is new (`messages`); run
the commands (`sends`, `actions`, `media`); apply poll votes to their polls (`polls`); apply
acks, edits and revokes by the one rule, parking what has no message yet (`updates`); session
states and poll cursors (`sessions`); session health rides along (`health`: message flow
as messages are inserted, a poll cycle's observation as a command); append the event log;
keep what cannot be stored in `dead_letters` (`quarantine`). Everything runs as synchronous
code on one connection (`Store.run_write`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from wasync import eventlog
from wasync.config import CrmConfig
from wasync.eventlog import PublishedEvent
from wasync.events import (
    Command,
    MediaClaim,
    MediaExpired,
    MediaFailed,
    MediaRequeue,
    MediaStored,
    SendAccepted,
    SendFailed,
    SendQueued,
)
from wasync.health import ObserveHealth, RecordPolls
from wasync.ingest import health, quarantine, sessions
from wasync.ingest.actions import Actions
from wasync.ingest.base import Job, Memory, TxState
from wasync.ingest.contacts import Contacts
from wasync.ingest.media import MediaRoom
from wasync.ingest.messages import Messages
from wasync.ingest.polls import Polls
from wasync.ingest.sends import Sends
from wasync.ingest.updates import Updates


class Tx(TxState):
    """One transaction over `jobs`, its rooms composed on the shared state."""

    def __init__(
        self,
        memory: Memory,
        jobs: list[Job],
        *,
        crm: CrmConfig,
        admins: Mapping[str, Sequence[str]],
        pg: bool,
    ) -> None:
        super().__init__(memory, jobs, crm=crm, admins=admins, pg=pg)
        self.contacts = Contacts(self)
        self.updates = Updates(self)
        self.messages = Messages(self, self.updates)
        self.sends = Sends(self, self.contacts, self.messages, self.updates)
        self.actions = Actions(self)
        self.media = MediaRoom(self)
        self.polls = Polls(self)

    def run(self, conn: Connection) -> list[PublishedEvent]:
        """The whole transaction (see the module docstring); returns the new log rows."""
        self.conn = conn
        # The caller holds `INGEST_LOCK` on Postgres: ingest is serialised across nodes, so
        # event ids become visible in id order, and the first-message races (lead, chat,
        # pending acks) cannot interleave.
        self.load_tenants()
        items = self.messages.items()
        if items:
            self.contacts.resolve(items)
            self.messages.insert(items)
        for job in self.jobs:
            job.outcomes += [self._command(job, command) for command in job.commands]
        self.polls.apply()
        self.updates.collect(self.jobs)
        self.updates.apply()
        sessions.apply_statuses(self)
        sessions.advance_cursors(self)
        quarantine.keep(self)
        return eventlog.append(conn, self.log, pg=self.pg)

    def _command(self, job: Job, command: Command) -> Any:
        if isinstance(command, SendQueued | SendAccepted | SendFailed):
            return self.sends.run(job, command)
        if isinstance(
            command, MediaClaim | MediaStored | MediaFailed | MediaExpired | MediaRequeue
        ):
            return self.media.run(command)
        if isinstance(command, ObserveHealth):
            return health.observe(self, command)
        if isinstance(command, RecordPolls):
            return health.record_polls(self, command)
        return self.actions.run(command)
