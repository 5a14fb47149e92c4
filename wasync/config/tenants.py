"""`[[tenants]]` and their `[[tenants.sessions]]`: who is served, through which provider."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from wasync.config.sections import Section, secret_value


class SessionConfig(Section):
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
        return secret_value(self.api_key, self.api_key_env, f"session {self.name!r} api_key")

    def resolved_webhook_secret(self) -> str | None:
        """The webhook HMAC key / JWT secret, or None when none is configured."""
        if self.webhook_secret is None and self.webhook_secret_env is None:
            return None
        return secret_value(
            self.webhook_secret, self.webhook_secret_env, f"session {self.name!r} webhook_secret"
        )


class TenantConfig(Section):
    """`[[tenants]]`: one CRM tenant, its admins and its sessions."""

    id: str = Field(min_length=1)
    name: str | None = None
    admins: list[str] = []
    agents: list[str] = []  # USERs chats can be transferred to (besides the admins)
    sessions: list[SessionConfig] = []

    def staff(self) -> list[str]:
        """Admins, then agents, each once: who a chat may be assigned to."""
        return list(dict.fromkeys([*self.admins, *self.agents]))

    @model_validator(mode="after")
    def _unique_sessions(self) -> TenantConfig:
        names = [s.name for s in self.sessions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"session name {dupes[0]!r} appears twice")
        return self
