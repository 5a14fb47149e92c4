"""What `wasync run` refuses and what it only warns about, decided once for a configuration.

`wasync run` raises the first failure (exit 2) and logs the warnings; `wasync doctor` prints
every finding. Both call `findings()`, so they never disagree on a configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from wasync.errors import ConfigError

if TYPE_CHECKING:
    from wasync.config import Settings
    from wasync.config.tenants import SessionConfig

WAHA_SESSION_WAIT_S = 15  # WAHA waits this long for a session to be WORKING (waha.md)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem of a configuration: `fail` stops `wasync run`, `warn` does not."""

    key: str  # the configuration key, or `session 'name'`
    level: Literal["fail", "warn"]
    problem: str

    def error(self) -> ConfigError:
        """The finding as the ConfigError `wasync run` raises."""
        return ConfigError(self.key, self.problem)


def findings(settings: Settings) -> list[Finding]:
    """Every finding, failures first: missing secrets of enabled sessions, webhook sessions
    without a secret, a poll timeout too short for WAHA."""
    out: list[Finding] = []
    for tenant in settings.tenants:
        for session in tenant.sessions:
            if session.enabled:
                out += _session(settings, session)
    if settings.poll.timeout_s <= WAHA_SESSION_WAIT_S:
        problem = (
            f"{settings.poll.timeout_s:g} s is not above WAHA's {WAHA_SESSION_WAIT_S} s wait "
            "for a WORKING session: expect timeouts on sessions that are starting"
        )
        out.append(Finding(key="poll.timeout_s", level="warn", problem=problem))
    return sorted(out, key=lambda f: f.level != "fail")


def check(settings: Settings) -> list[Finding]:
    """Raise the first failure as a ConfigError; return the warnings."""
    found = findings(settings)
    for finding in found:
        if finding.level == "fail":
            raise finding.error()
    return found


def _session(settings: Settings, session: SessionConfig) -> list[Finding]:
    out = []
    try:
        session.resolved_api_key()
    except ConfigError as exc:
        out.append(Finding(key=exc.key, level="fail", problem=exc.problem))
    if not settings.webhook.enabled:
        return out
    try:
        secret = session.resolved_webhook_secret()
    except ConfigError as exc:
        return [*out, Finding(key=exc.key, level="fail", problem=exc.problem)]
    if secret is None:
        key = f"session {session.name!r} webhook_secret"
        if settings.webhook.allow_unsigned:
            problem = "none: unsigned webhooks accepted ([webhook] allow_unsigned = true)"
        else:
            problem = (
                "none: its webhooks are refused (401); set webhook_secret_env, or "
                "[webhook] allow_unsigned = true to accept unsigned ones"
            )
        out.append(Finding(key=key, level="warn", problem=problem))
    return out
