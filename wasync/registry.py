"""The configured tenants and sessions, mirrored into the `tenants` and `sessions` tables, and
the glue from a configured session to its provider (`provider_for`, `http_for`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpx
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from wasync import providers
from wasync.config import PollConfig, SessionConfig, Settings
from wasync.providers import Endpoint, Provider, ProviderKind
from wasync.providers.http import Http, RetryPolicy
from wasync.store import Store
from wasync.store import models as m

T_TENANTS = m.Tenant.__table__  # type: ignore[attr-defined]
T_SESSIONS = m.Session.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRef:
    """A configured session with its database id."""

    id: int
    tenant_id: str
    config: SessionConfig

    @property
    def name(self) -> str:
        """The WAHA session / Evolution instance name."""
        return self.config.name

    @property
    def provider(self) -> str:
        """The provider's name, as configured (`wasync.providers.KINDS` has its kind)."""
        return self.config.provider

    @property
    def kind(self) -> ProviderKind:
        """What the session's provider is and does."""
        return providers.kind(self.config.provider)

    @property
    def label(self) -> str:
        """`tenant/session`, for logs."""
        return f"{self.tenant_id}/{self.config.name}"


@dataclass(frozen=True, slots=True)
class Registry:
    """Every configured session, by id and by (tenant, name)."""

    sessions: Mapping[int, SessionRef]

    def __iter__(self) -> Iterator[SessionRef]:
        return iter(self.sessions.values())

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, tenant_id: str, name: str) -> SessionRef | None:
        """The session `name` of `tenant_id`, if configured."""
        for ref in self.sessions.values():
            if ref.tenant_id == tenant_id and ref.name == name:
                return ref
        return None

    def by_name(self, name: str, provider: str | None = None) -> list[SessionRef]:
        """Sessions with this provider-side name (several tenants may reuse `default`)."""
        return [
            s
            for s in self.sessions.values()
            if s.name == name and (provider is None or s.provider == provider)
        ]


def endpoint_of(ref: SessionRef) -> Endpoint:
    """The plain values the provider side needs (ConfigError for an API key env var unset)."""
    cfg = ref.config
    return Endpoint(
        base_url=cfg.base_url,
        api_key=cfg.resolved_api_key(),
        session=cfg.name,
        session_id=ref.id,
        engine=cfg.engine,
    )


def _http(ref: SessionRef, endpoint: Endpoint, client: httpx.AsyncClient, poll: PollConfig) -> Http:
    retry = RetryPolicy(
        attempts=poll.max_attempts, backoff_s=poll.backoff_s, max_wait_s=poll.max_retry_wait_s
    )
    return providers.make_http(ref.kind, endpoint, client, retry=retry, timeout_s=poll.timeout_s)


def http_for(ref: SessionRef, client: httpx.AsyncClient, poll: PollConfig) -> Http:
    """The HTTP of one configured session: base URL, API key header, retries, timeout."""
    return _http(ref, endpoint_of(ref), client, poll)


def provider_for(ref: SessionRef, client: httpx.AsyncClient, poll: PollConfig) -> Provider:
    """The adapter of one configured session, over `http_for`'s HTTP."""
    endpoint = endpoint_of(ref)
    return ref.kind.adapter(_http(ref, endpoint, client, poll), endpoint)


def configured_refs(settings: Settings) -> list[SessionRef]:
    """Every configured session, without a database id (0): for commands that talk to the
    providers without the store (`webhooks`, `doctor`)."""
    return [
        SessionRef(id=0, tenant_id=t.id, config=s) for t in settings.tenants for s in t.sessions
    ]


def selected_refs(
    settings: Settings, *, tenant: str | None = None, session: str | None = None
) -> list[SessionRef]:
    """The configured sessions a command was pointed at (`--tenant`, `--session`)."""
    return [
        ref
        for ref in configured_refs(settings)
        if (tenant is None or ref.tenant_id == tenant) and (session is None or ref.name == session)
    ]


async def sync(store: Store, settings: Settings) -> Registry:
    """Upsert the configured tenants and sessions; return their ids. Nothing is deleted."""
    pg = not store.is_sqlite
    insert = postgresql.insert if pg else sqlite.insert
    refs: dict[int, SessionRef] = {}
    async with store.write() as conn:
        for tenant in settings.tenants:
            await conn.execute(
                insert(T_TENANTS)
                .values(id=tenant.id, name=tenant.name, created_at=m.utcnow())
                .on_conflict_do_update(index_elements=["id"], set_={"name": tenant.name})
            )
            for cfg in tenant.sessions:
                stmt = insert(T_SESSIONS).values(
                    tenant_id=tenant.id,
                    name=cfg.name,
                    provider=cfg.provider,
                    base_url=cfg.base_url,
                    engine=cfg.engine,
                    created_at=m.utcnow(),
                )
                stmt = stmt.on_conflict_do_nothing(index_elements=["tenant_id", "name"])
                await conn.execute(stmt)
                c = T_SESSIONS.c
                await conn.execute(
                    update(T_SESSIONS)
                    .where(c.tenant_id == tenant.id, c.name == cfg.name)
                    .values(provider=cfg.provider, base_url=cfg.base_url)
                )
                sid = (
                    await conn.execute(
                        select(c.id).where(c.tenant_id == tenant.id, c.name == cfg.name)
                    )
                ).scalar_one()
                refs[int(sid)] = SessionRef(id=int(sid), tenant_id=tenant.id, config=cfg)
    return Registry(refs)
