"""The one ack rule's order, no ack first: `wasync.ingest.acks` says why and applies it; here,
outside `ingest/`, so that providers' parsers merge acks by it too."""

from __future__ import annotations

from wasync.events import AckLevel

ACK_ORDER = (
    None,
    AckLevel.PENDING,
    AckLevel.ERROR,
    AckLevel.SERVER,
    AckLevel.DEVICE,
    AckLevel.READ,
    AckLevel.PLAYED,
)
ACK_RANK: dict[AckLevel | None, int] = {level: n for n, level in enumerate(ACK_ORDER)}
