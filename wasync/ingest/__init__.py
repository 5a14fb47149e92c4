"""`ingest/`: the one writer of the core tables.

`messages`, `chats`, `leads`, `identities`, `notifications`, `pending_updates`,
`session_health` and the event log are written here and nowhere else (a test guards it):
provider events (`Message`, `Ack`, ...) and wasync's own commands (a send queued, accepted or
failed; an agent's action) are applied by one transaction type, `Tx`, with one set of rules.
Its rooms:

- `contacts`: identities (LID ↔ phone), chats, leads, admin notifications;
- `messages`: insert new messages, deduplicated; chat counters;
- `updates`: acks (one rule, `acks`), edits, revokes; parking and draining;
- `polls`: votes applied to their poll messages;
- `sends`: our outbound messages, queued, accepted (adopted) or failed;
- `actions`: agents' changes to chats and notifications;
- `sessions`: provider session states and poll cursors;
- `health`: session health from message flow, and a poll cycle's observation;
- `statements`: the hot SQL, built once per dialect.

`wasync.pipeline.Pipeline` queues jobs and group-commits them through `Tx`.
"""

from wasync.ingest.base import IngestResult, Job, Memory, Realtime
from wasync.ingest.tx import Tx

__all__ = ["IngestResult", "Job", "Memory", "Realtime", "Tx"]
