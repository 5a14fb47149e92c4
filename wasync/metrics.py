"""Prometheus metrics (prometheus-client), in a registry owned by the daemon, not a global."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from wasync.events import Event, Message, MessageType

M = TypeVar("M", Counter, Gauge, Histogram)


class Metrics:
    """Every metric wasync exposes on `/metrics`."""

    def __init__(self) -> None:
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingested = Counter(
            "wasync_messages_ingested_total", "Messages stored, by source.", ["source"], registry=r
        )
        self.duplicates = Counter(
            "wasync_messages_duplicate_total",
            "Messages seen again, by source.",
            ["source"],
            registry=r,
        )
        self.quarantined = Counter(
            "wasync_messages_quarantined_total",
            "Events kept in dead_letters instead of stored (beyond a column's limits, or"
            " refused by the store), by source.",
            ["source"],
            registry=r,
        )
        self.unauthenticated = Counter(
            "wasync_webhook_unauthenticated_total",
            "Webhook bodies no configured session signed, by what happened to them: sampled"
            " into dead_letters, or only counted.",
            ["kept"],
            registry=r,
        )
        self.reconciled = Counter(
            "wasync_reconciled_messages_total",
            "Messages the poller stored first although webhooks are on (lost or late webhooks).",
            registry=r,
        )
        self.webhooks = Counter(
            "wasync_webhook_requests_total",
            "Webhook requests by provider and outcome.",
            ["provider", "outcome"],
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "wasync_webhook_seconds",
            "Webhook handling time, receipt to answer.",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.poll_cycles = Counter(
            "wasync_poll_cycles_total", "Poll cycles by outcome.", ["outcome"], registry=r
        )
        self.poll_requests = Counter(
            "wasync_poll_requests_total", "HTTP requests made by pollers.", registry=r
        )
        self.outbox_depth = Gauge(
            "wasync_outbox_queued", "Outbox rows waiting to be sent.", ["session"], registry=r
        )
        self.ws_clients = Gauge("wasync_ws_clients", "Connected WebSocket clients.", registry=r)
        self.media = Counter(
            "wasync_media_total",
            "Media fetches by outcome: stored, retry (later), failed, expired.",
            ["outcome"],
            registry=r,
        )
        self.media_pending = Gauge(
            "wasync_media_pending", "Messages whose media waits to be fetched.", registry=r
        )
        self.unparsed = Counter(
            "wasync_messages_unparsed_total",
            "Messages whose content wasync does not understand (stored as `other`), by provider "
            "and the provider's own name for the content: a new WhatsApp family shows here.",
            ["provider", "type"],
            registry=r,
        )
        self.ack_checks = Counter(
            "wasync_ack_check_requests_total",
            "HTTP requests of the pollers' ack checks (recent messages read again for acks, "
            "edits, revokes and reactions), counted apart from the poll cycles.",
            registry=r,
        )

        self.health = SessionMetrics(r)

    def child(self, metric: M, *values: str) -> M:
        """`metric.labels(*values)`, looked up once per set of values: a `labels()` call
        costs microseconds, a few per webhook (label values here come from small fixed
        sets: sources, provider kinds, outcomes)."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found  # type: ignore[no-any-return]

    def count_unparsed(self, provider: str, events: Iterable[Event]) -> None:
        """Count the `other` messages among `events` (the first time a source sees them)."""
        for ev in events:
            if isinstance(ev, Message) and ev.type is MessageType.OTHER:
                self.unparsed.labels(provider, ev.provider_type or "unknown").inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class SessionMetrics:
    """Each session's health (`wasync.health`), labelled `session` (`tenant/name`), as the
    node polling it last recorded it."""

    def __init__(self, r: CollectorRegistry) -> None:
        labels = ["session"]
        self.stalled = Gauge(
            "wasync_session_stalled",
            "1 while the session is STALLED: WORKING, but webhooks stopped delivering what"
            " polling finds, or nothing inbound for [health] silence_s.",
            labels,
            registry=r,
        )
        self.down = Gauge(
            "wasync_session_down",
            "1 while the provider does not call the session working (DOWN).",
            labels,
            registry=r,
        )
        self.last_poll = Gauge(
            "wasync_session_last_poll_timestamp_seconds",
            "When the session's last successful poll cycle ended (Unix time).",
            labels,
            registry=r,
        )
        self.last_inbound = Gauge(
            "wasync_session_last_inbound_timestamp_seconds",
            "The provider time of the session's newest inbound message (Unix time).",
            labels,
            registry=r,
        )
        self.recovered = Counter(
            "wasync_session_recovered",
            "Messages reconciliation stored first (no webhook had delivered them).",
            labels,
            registry=r,
        )
        self.recovered_hour = Gauge(
            "wasync_session_recovered_last_hour",
            "Messages reconciliation recovered within the last hour (every node's).",
            labels,
            registry=r,
        )
        self.webhook_lag = Gauge(
            "wasync_session_webhook_lag_seconds",
            "Latest webhook-vs-poll lag: seconds polling saw a message after its webhook"
            " (negative: polling stored it first and the webhook came later).",
            labels,
            registry=r,
        )
