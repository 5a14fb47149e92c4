"""The daemon's own sections: database, poll, http, webhook, auth, send, events, health."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from wasync.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(Section):
    """`[database]`: SQLite by default, Postgres in production."""

    url: str = "sqlite+aiosqlite:///wasync.db"
    busy_timeout_ms: int = Field(default=10_000, ge=0)
    pool_size: int = Field(default=5, ge=1)
    batch_max_events: int = Field(default=500, ge=1)
    batch_max_wait_ms: float = Field(default=0.0, ge=0)
    # Text no column stores (NUL, lone surrogates): "quarantine" keeps the message aside in
    # dead_letters (the default: nothing is stored that differs from what the provider sent);
    # "clean" drops those characters and stores the message.
    invalid_text: Literal["clean", "quarantine"] = "quarantine"


class PollConfig(Section):
    """`[poll]`: how often and how far back the poller looks."""

    interval_s: float = Field(default=5, gt=0)
    reconcile_interval_s: float = Field(default=60, gt=0)
    initial_lookback_h: float = Field(default=24, ge=0)
    overlap_s: float = Field(default=120, ge=0)
    jitter_s: float = Field(default=1, ge=0)
    page_size: int = Field(default=50, ge=1, le=1000)
    timeout_s: float = Field(default=30, gt=0)  # keep above WAHA's 15 s session wait
    max_attempts: int = Field(default=4, ge=1)
    max_retry_wait_s: float = Field(default=30, ge=0)
    backoff_s: float = Field(default=0.5, ge=0)
    status_interval_s: float = Field(default=60, ge=0)
    log_idle_cycles: bool = True
    # The ack check (`wasync.recheck`): our messages of the last `ack_window_h` still below
    # READ are read again every `ack_interval_s` (0 h turns it off).
    ack_window_h: float = Field(default=24, ge=0)
    ack_interval_s: float = Field(default=120, gt=0)


class HttpConfig(Section):
    """`[http]`: the daemon's one HTTP port (webhooks, REST, WebSocket, metrics)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    ws_ping_interval_s: float = Field(default=20, gt=0)  # WebSocket keepalive pings
    ws_ping_timeout_s: float = Field(default=20, gt=0)  # no pong by then: connection dropped
    ws_queue_frames: int = Field(default=1000, ge=1)  # per client; overflow closes with 4008


class WebhookConfig(Section):
    """`[webhook]`: the optional webhook receiver."""

    enabled: bool = False
    public_url: str | None = None
    # A session with no webhook secret refuses every webhook (401) unless this is set: fail
    # closed, so a forgotten secret is not an open door.
    allow_unsigned: bool = False
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    rate_per_s: float = Field(default=200, gt=0)
    burst: int = Field(default=400, ge=1)
    # Per client address, before any work (one provider host may serve many sessions).
    source_rate_per_s: float = Field(default=500, gt=0)
    source_burst: int = Field(default=1000, ge=1)
    # Bodies no configured session signed: counted; a sample is kept in dead_letters.
    unauthenticated_sample_rows: int = Field(default=100, ge=0)
    unauthenticated_sample_bytes: int = Field(default=4096, ge=0)
    unauthenticated_sample_per_min: float = Field(default=10, gt=0)


class AuthConfig(Section):
    """`[auth]`: the HS256 secret for REST and WebSocket JWTs."""

    jwt_secret_env: str | None = "WASYNC_JWT_SECRET"
    jwt_secret: SecretStr | None = None

    def secret(self) -> str:
        """The JWT secret, from the file or the named environment variable."""
        return secret_value(self.jwt_secret, self.jwt_secret_env, "auth.jwt_secret")


class SendConfig(Section):
    """`[send]`: the durable outbox and its sender (per-session rate limit, retries, numbers)."""

    rate_per_minute: float = Field(default=20, gt=0)
    burst: int = Field(default=1, ge=1)
    timeout_s: float = Field(default=30, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_s: float = Field(default=2, ge=0)
    max_backoff_s: float = Field(default=300, ge=0)
    lease_s: float = Field(default=180, gt=0)
    reconcile_delay_s: float = Field(default=5, ge=0)
    reconcile_window_s: float = Field(default=30, ge=0)
    # How long after a request whose outcome is unknown it may still be going out: WAHA and
    # Evolution finish a send whose client gave up (a big video, a voice conversion, a WEBJS
    # upload), so the row is reconciled, never resent, until this has passed.
    reconcile_grace_s: float = Field(default=300, ge=0)
    # A session that is down (WAHA 422 "Session status is not as expected", Evolution
    # "Connection Closed") refuses before sending: the row waits for it, spending no attempt,
    # tried again after at most `session_retry_s`, and FAILED after `max_session_wait_s`.
    session_retry_s: float = Field(default=30, ge=0)
    max_session_wait_s: float = Field(default=3600, ge=0)
    poll_interval_s: float = Field(default=1, gt=0)
    metrics_interval_s: float = Field(default=5, gt=0)
    max_media_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    number_cache_ttl_s: float = Field(default=6 * 3600, ge=0)
    wait_timeout_s: float = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _lease_outlives_a_send(self) -> SendConfig:
        if self.lease_s <= self.timeout_s:
            raise ValueError("lease_s must be longer than timeout_s (a send in flight keeps it)")
        return self


class EventsConfig(Section):
    """`[events]`: how long the event log (WebSocket replay, the CRM's change feed) keeps rows."""

    retain_days: float = Field(default=0, ge=0)  # 0 keeps every row (the default)
    prune_interval_s: float = Field(default=3600, gt=0)
    prune_batch: int = Field(default=5000, ge=1)  # rows deleted per transaction


class HealthConfig(Section):
    """`[health]`: when a session that says WORKING counts as STALLED (`wasync.health`)."""

    # Nothing inbound for this long on a WORKING session is STALLED (`silence`); 0: never.
    silence_s: float = Field(default=86_400, ge=0)
    # An idle cycle of a healthy session is recorded at most this often (its last poll time).
    write_interval_s: float = Field(default=30, ge=0)


def secret_value(value: SecretStr | None, env: str | None, key: str) -> str:
    if value is not None:
        return value.get_secret_value()
    if env and os.environ.get(env):
        return os.environ[env]
    raise ConfigError(key, f"not set (set it in the file or in the environment variable {env})")
