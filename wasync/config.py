"""Settings from a TOML file plus `WASYNC_*` environment overrides, validated once at start.

The one place that reads configuration. A bad file raises `ConfigError` naming the key
(`tenants[0].sessions[1].provider`) and the problem; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from wasync.errors import ConfigError

DEFAULT_CONFIG = "config.example.toml"
ENV_PREFIX = "WASYNC_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Section):
    """`[database]`: SQLite by default, Postgres in production."""

    url: str = "sqlite+aiosqlite:///wasync.db"
    busy_timeout_ms: int = Field(default=10_000, ge=0)
    pool_size: int = Field(default=5, ge=1)
    batch_max_events: int = Field(default=500, ge=1)
    batch_max_wait_ms: float = Field(default=0.0, ge=0)
    # Text no column stores (NUL, lone surrogates): "clean" drops those characters and
    # stores the message; "quarantine" keeps the message aside in dead_letters instead.
    invalid_text: Literal["clean", "quarantine"] = "clean"


class PollConfig(_Section):
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


class HttpConfig(_Section):
    """`[http]`: the daemon's one HTTP port (webhooks, REST, WebSocket, metrics)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    ws_ping_interval_s: float = Field(default=20, gt=0)  # WebSocket keepalive pings
    ws_ping_timeout_s: float = Field(default=20, gt=0)  # no pong by then: connection dropped
    ws_queue_frames: int = Field(default=1000, ge=1)  # per client; overflow closes with 4008


class WebhookConfig(_Section):
    """`[webhook]`: the optional webhook receiver."""

    enabled: bool = False
    public_url: str | None = None
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


class AuthConfig(_Section):
    """`[auth]`: the HS256 secret for REST and WebSocket JWTs."""

    jwt_secret_env: str | None = "WASYNC_JWT_SECRET"
    jwt_secret: SecretStr | None = None

    def secret(self) -> str:
        """The JWT secret, from the file or the named environment variable."""
        return _secret(self.jwt_secret, self.jwt_secret_env, "auth.jwt_secret")


class LeadDefaults(_Section):
    """Defaults of a lead created for a new number (the CRM's original plan)."""

    first_name: str = "Lead"
    last_name: str = "{last4}"
    email: str = "{phone}@whatsapp.com"
    source: str = "WHATSAPP_CAMPAIGN"
    status: str = "NEW"
    score: int = 50


class NotificationTexts(_Section):
    """The admin notification for a new lead; Portuguese defaults as in the CRM."""

    type: str = "NEW_MESSAGE"
    title: str = "Nova mensagem de {phone}"
    message: str = "Lead criado automaticamente"
    link: str = "/atendimento?chat={chat_id}"


class CrmConfig(_Section):
    """`[crm]`: what a new number creates, and which chats are dropped."""

    lead: LeadDefaults = LeadDefaults()
    notification: NotificationTexts = NotificationTexts()
    keep_status_broadcast: bool = False
    keep_newsletters: bool = False


class SessionConfig(_Section):
    """`[[tenants.sessions]]`: one WAHA session or Evolution instance."""

    name: str = Field(min_length=1)
    provider: Literal["waha", "evolution"]
    base_url: str = Field(pattern=r"^https?://")
    api_key_env: str | None = None
    api_key: SecretStr | None = None
    webhook_secret_env: str | None = None
    webhook_secret: SecretStr | None = None
    engine: str | None = None
    enabled: bool = True

    def resolved_api_key(self) -> str | None:
        """The API key from the file or the environment; None when the provider needs none."""
        if self.api_key is None and self.api_key_env is None:
            return None
        return _secret(self.api_key, self.api_key_env, f"session {self.name!r} api_key")

    def resolved_webhook_secret(self) -> str | None:
        """The webhook HMAC key / JWT secret, or None when none is configured."""
        if self.webhook_secret is None and self.webhook_secret_env is None:
            return None
        return _secret(
            self.webhook_secret, self.webhook_secret_env, f"session {self.name!r} webhook_secret"
        )


class TenantConfig(_Section):
    """`[[tenants]]`: one CRM tenant, its admins and its sessions."""

    id: str = Field(min_length=1)
    name: str | None = None
    admins: list[str] = []
    sessions: list[SessionConfig] = []

    @model_validator(mode="after")
    def _unique_sessions(self) -> TenantConfig:
        names = [s.name for s in self.sessions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"session name {dupes[0]!r} appears twice")
        return self


class SendConfig(_Section):
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


class EventsConfig(_Section):
    """`[events]`: how long the event log (WebSocket replay, the CRM's change feed) keeps rows."""

    retain_days: float = Field(default=0, ge=0)  # 0 keeps every row (the default)
    prune_interval_s: float = Field(default=3600, gt=0)
    prune_batch: int = Field(default=5000, ge=1)  # rows deleted per transaction


class Settings(_Section):
    """The whole configuration."""

    database: DatabaseConfig = DatabaseConfig()
    poll: PollConfig = PollConfig()
    http: HttpConfig = HttpConfig()
    webhook: WebhookConfig = WebhookConfig()
    auth: AuthConfig = AuthConfig()
    crm: CrmConfig = CrmConfig()
    send: SendConfig = SendConfig()
    events: EventsConfig = EventsConfig()
    log_level: str = "INFO"
    tenants: list[TenantConfig] = []

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds or names (JWT secret, API keys, webhook
        secrets) that can be resolved now: what a log line must never show."""
        getters: list[Callable[[], str | None]] = [self.auth.secret]
        for tenant in self.tenants:
            for session in tenant.sessions:
                getters += [session.resolved_api_key, session.resolved_webhook_secret]
        values = []
        for get in getters:
            try:
                value = get()
            except ConfigError:
                continue
            if value:
                values.append(value)
        return values

    def check_secrets(self) -> None:
        """Resolve every secret the daemon will need; raise ConfigError for the first missing."""
        for tenant in self.tenants:
            for session in tenant.sessions:
                if session.enabled:
                    session.resolved_api_key()
                    if self.webhook.enabled:
                        session.resolved_webhook_secret()


def _secret(value: SecretStr | None, env: str | None, key: str) -> str:
    if value is not None:
        return value.get_secret_value()
    if env and os.environ.get(env):
        return os.environ[env]
    raise ConfigError(key, f"not set (set it in the file or in the environment variable {env})")


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration; raise ConfigError on any problem."""
    env = os.environ if env is None else env
    path = Path(path or env.get("WASYNC_CONFIG") or DEFAULT_CONFIG)
    data = _read_toml(path)
    _apply_env(data, Settings, env, ENV_PREFIX)
    _inject_secrets(data, env)
    return parse(data)


def parse(data: Mapping[str, Any]) -> Settings:
    """Validate an already merged mapping."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _format_loc(err["loc"]) or "config"
        raise ConfigError(key, _problem(err)) from None
    seen: set[str] = set()
    for i, tenant in enumerate(settings.tenants):
        if tenant.id in seen:
            raise ConfigError(f"tenants[{i}].id", f"tenant id {tenant.id!r} appears twice")
        seen.add(tenant.id)
    return settings


def _inject_secrets(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """Copy secrets named by `*_env` keys from `env` into the data (they stay SecretStr)."""
    auth = data.setdefault("auth", {})
    if isinstance(auth, dict):
        auth.setdefault("jwt_secret_env", AuthConfig.model_fields["jwt_secret_env"].default)
        _inject(auth, "jwt_secret", env)
    for tenant in data.get("tenants") or []:
        for session in (tenant.get("sessions") or []) if isinstance(tenant, dict) else []:
            _inject(session, "api_key", env)
            _inject(session, "webhook_secret", env)


def _inject(section: Any, key: str, env: Mapping[str, str]) -> None:
    """`section[key] = env[section[key_env]]` unless the key is set already."""
    if not isinstance(section, dict) or section.get(key) is not None:
        return
    name = section.get(f"{key}_env")
    if isinstance(name, str) and env.get(name):
        section[key] = env[name]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), "config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML ({exc})") from None


def _apply_env(
    data: dict[str, Any], model: type[BaseModel], env: Mapping[str, str], prefix: str
) -> None:
    """`WASYNC_POLL_INTERVAL_S=10` overrides `[poll] interval_s`; nested sections nest."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        env_name = f"{prefix}{name.upper()}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            section = data.setdefault(name, {})
            if isinstance(section, dict):
                _apply_env(section, annotation, env, env_name + "_")
        elif env_name in env and name != "tenants":
            data[name] = env[env_name]


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _problem(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
