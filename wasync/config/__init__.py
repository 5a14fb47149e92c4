"""Settings from a TOML file plus `WASYNC_*` environment overrides, validated once at start.

The sections are models in this package's modules (`sections`: the daemon's own; `crm`;
`tenants`; `media`); this module assembles them (`Settings`) and reads the file.

The one place that reads configuration. A bad file raises `ConfigError` naming the key
(`tenants[0].sessions[1].provider`) and the problem; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ValidationError

from wasync.config.cluster import ClusterConfig
from wasync.config.crm import CrmConfig, LeadDefaults, NotificationTexts
from wasync.config.media import MediaConfig
from wasync.config.sections import (
    AuthConfig,
    DatabaseConfig,
    EventsConfig,
    HealthConfig,
    HttpConfig,
    PollConfig,
    Section,
    SendConfig,
    WebhookConfig,
)
from wasync.config.tenants import SessionConfig, TenantConfig
from wasync.errors import ConfigError

# Where `load()` looks when neither `--config` nor `$WASYNC_CONFIG` names a file, in order.
SEARCH_PATH = ("./wasync.toml", "~/.config/wasync/config.toml", "/etc/wasync/config.toml")
ENV_PREFIX = "WASYNC_"


class Settings(Section):
    """The whole configuration."""

    database: DatabaseConfig = DatabaseConfig()
    poll: PollConfig = PollConfig()
    http: HttpConfig = HttpConfig()
    webhook: WebhookConfig = WebhookConfig()
    auth: AuthConfig = AuthConfig()
    crm: CrmConfig = CrmConfig()
    send: SendConfig = SendConfig()
    events: EventsConfig = EventsConfig()
    health: HealthConfig = HealthConfig()
    media: MediaConfig = MediaConfig()
    cluster: ClusterConfig = ClusterConfig()
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line (wasync.logs)
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

    # What `wasync run` refuses and `wasync doctor` reports: `wasync.config.checks`.


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration; raise ConfigError on any problem."""
    env = os.environ if env is None else env
    data = _read_toml(find(path, env))
    _apply_env(data, Settings, env, ENV_PREFIX)
    _inject_secrets(data, env)
    return parse(data)


def find(path: str | Path | None, env: Mapping[str, str]) -> Path:
    """The config file: `path`, else `$WASYNC_CONFIG`, else the first of `SEARCH_PATH` that
    exists; a ConfigError naming every place looked at when there is none."""
    given = path or env.get("WASYNC_CONFIG")
    if given:
        return Path(given)
    for candidate in SEARCH_PATH:
        found = Path(candidate).expanduser()
        if found.is_file():
            return found
    looked = ", ".join(("--config", "$WASYNC_CONFIG", *SEARCH_PATH))
    raise ConfigError(
        "config",
        f"no config file found (looked at {looked}); copy config.example.toml to "
        "./wasync.toml, or try `wasync sim --write-config wasync.toml`",
    )


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
            data[name] = _env_value(env[env_name], annotation)


def _env_value(raw: str, annotation: Any) -> Any:
    """A list setting comes from the environment as JSON (`'["a", "b"]'`); others as text."""
    if get_origin(annotation) is list:
        try:
            return json.loads(raw)
        except ValueError:
            return raw  # validation names the key
    return raw


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


__all__ = [
    "ENV_PREFIX",
    "SEARCH_PATH",
    "AuthConfig",
    "ClusterConfig",
    "CrmConfig",
    "DatabaseConfig",
    "EventsConfig",
    "HealthConfig",
    "HttpConfig",
    "LeadDefaults",
    "MediaConfig",
    "NotificationTexts",
    "PollConfig",
    "SendConfig",
    "SessionConfig",
    "Settings",
    "TenantConfig",
    "WebhookConfig",
    "find",
    "load",
    "parse",
]
