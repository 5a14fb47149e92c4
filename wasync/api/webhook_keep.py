"""What the webhook endpoint keeps of a body it cannot ingest, and how little.

- A body a configured session signed but that can never parse is kept once in
  `dead_letters` (`unparsed`, replayable): the provider retries it (WAHA 15 times over hours,
  waha.md 5) and the duplicate check is an index probe on its hash.
- A body no session signed (not JSON, no session named, a signature that fails) is counted
  (`wasync_webhook_unauthenticated_total`); at most a sample of them is kept (`unauthenticated`):
  `[webhook] unauthenticated_sample_per_min`, cut to `unauthenticated_sample_bytes`, at most
  `unauthenticated_sample_rows` rows (the oldest are dropped). Anyone who can reach the port
  can post; nobody can fill the database that way.

Every kept body has API key values blanked and secret headers removed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from starlette.requests import Request

from wasync import deadletters, providers
from wasync.providers import ProviderKind
from wasync.ratelimit import TokenBucket
from wasync.registry import SessionRef
from wasync.store import Store
from wasync.store import models as m

log = logging.getLogger(__name__)

# Header names whose values never reach `dead_letters` or a log line: every kind's API key and
# signature headers, and cookies.
SECRET_HEADERS = frozenset(
    {"cookie", *(name for k in providers.KINDS.values() for name in k.secret_headers)}
)


@dataclass(slots=True)
class Keeper:
    """Keeps unparsed bodies of known senders, and a bounded sample of unknown ones."""

    store: Store
    sample_rows: int = 100
    sample_bytes: int = 4096
    sample_per_min: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _sampler: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        burst = max(1, int(self.sample_per_min))
        self._sampler = TokenBucket(self.sample_per_min / 60, burst, self.clock)

    async def unparsed(
        self, request: Request, raw: bytes, kind: ProviderKind, ref: SessionRef, error: str
    ) -> None:
        """Keep an authenticated body that can never parse, once. StoreUnavailable if down."""
        row = self._row(request, raw, deadletters.UNPARSED, error, kind=kind, ref=ref)
        async with self.store.write() as conn:
            if await conn.scalar(deadletters.same_row(row)) is not None:
                return
            await conn.execute(deadletters.T_DEAD.insert(), row)
        log.warning("session %s: webhook body kept in dead_letters: %s", ref.label, error)

    async def unauthenticated(self, request: Request, raw: bytes, error: str) -> bool:
        """Keep a body nobody signed if the sample has room this minute; True when kept.
        The oldest samples beyond the row cap are dropped in the same transaction."""
        if self.sample_rows <= 0 or self._sampler.try_take() > 0:
            return False
        cut = raw[: self.sample_bytes]
        note = error if len(cut) == len(raw) else f"{error} (first {len(cut)} of {len(raw)} bytes)"
        row = self._row(request, cut, deadletters.UNAUTHENTICATED, note)
        async with self.store.write() as conn:
            if await conn.scalar(deadletters.same_row(row)) is not None:
                return False
            await conn.execute(deadletters.T_DEAD.insert(), row)
            await conn.execute(deadletters.beyond_cap(self.sample_rows))
        client = request.client.host if request.client else "?"
        log.warning("webhook: unsigned body from %s sampled into dead_letters: %s", client, error)
        return True

    def _row(
        self,
        request: Request,
        raw: bytes,
        kind_of_row: str,
        error: str,
        *,
        kind: ProviderKind | None = None,
        ref: SessionRef | None = None,
    ) -> dict[str, object]:
        return deadletters.row(
            kind=kind_of_row,
            source="webhook",
            body=without_keys(raw),
            error=error,
            now=m.utcnow(),
            provider=kind.name if kind else None,
            session_name=ref.name if ref else None,
            tenant_id=ref.tenant_id if ref else None,
            session_id=ref.id if ref else None,
            headers=safe_headers(request.headers),
        )


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers worth keeping: no secrets, no cookies."""
    return {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}


# An API key inside a body: Evolution puts the instance token in its envelope's `apikey`
# (evolution.md 3.2, when AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES is on, as in its example
# env); with it anyone can send as the business.
_BODY_KEY = re.compile(rb'("(?:apikey|api_key)"\s*:\s*")((?:[^"\\]|\\.)*)("|\Z)', re.IGNORECASE)


def without_keys(raw: bytes) -> bytes:
    """The body to keep in `dead_letters`: byte for byte, but API key values blanked (found by
    pattern, so a body that is not valid JSON, even one cut inside the key, is scrubbed too)."""
    return _BODY_KEY.sub(rb"\1[redacted]\3", raw)
