"""One media job, start to outcome: take the file (inline from the webhook, the outbox's own
bytes for our sends, else from the provider), write it to a scratch file while hashing it,
check its size and type, put it in the media store.

Transient failures (connect errors, timeouts, 5xx, 429 with its `Retry-After`, a cut body)
are retried `tries` times with exponential backoff (tenacity); still failing, the job is
retried later (`retry_delay_s`, doubling) until `max_attempts`, then FAILED. A download the
provider says may have failed because the file is gone (MediaMaybeGone) is retried the same
way and ends EXPIRED, not FAILED; a provider sure it has no file makes it EXPIRED at once; a
refusal (401, a file over `max_bytes`) is FAILED at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from wasync.config import MediaConfig, PollConfig
from wasync.errors import (
    MediaGone,
    MediaMaybeGone,
    MediaStoreUnavailable,
    ProviderError,
    RateLimited,
    StoreUnavailable,
    TransientProviderError,
    WasyncError,
)
from wasync.events import MediaCommand, MediaExpired, MediaFailed, MediaStored
from wasync.media.job import InlineFiles, MediaJob
from wasync.media.sniff import HEAD_BYTES, checked_type
from wasync.media.store import MediaStore
from wasync.outbox import SOURCE as OUTBOX_SOURCE
from wasync.outbox import T_OUTBOX
from wasync.providers.base import MediaFile, Provider
from wasync.providers.http import Http, RetryPolicy, chunks
from wasync.registry import Registry, provider_for
from wasync.store import Store

log = logging.getLogger(__name__)

_RETRIED = (TransientProviderError, MediaStoreUnavailable, StoreUnavailable)
# How a retry's reason (`media_reason`) starts when the provider's last word on the file was
# MediaMaybeGone: later attempts that learn nothing new about it (a 5xx, a reset) keep that
# reason, and the job ends EXPIRED with it when the attempts are spent.
MAYBE_GONE = "the file may be gone: "


def kept_reason(job: MediaJob, reason: str) -> str:
    """`reason` for a retry that learned nothing of the file (the worker interrupted, a bug),
    unless an earlier attempt's word was that it may be gone: that word is kept."""
    if job.reason is not None and job.reason.startswith(MAYBE_GONE):
        return job.reason
    return reason


class TooLarge(WasyncError):
    """A file over `[media] max_bytes`: FAILED, not retried."""


class SizeMismatch(TransientProviderError):
    """The bytes are not the size the provider declared: a cut download, worth another try."""


@dataclass(slots=True)
class _Word:
    """What one run heard of the file: `maybe_gone` (the last try's answer that it may be
    gone), or `heard` with no `maybe_gone` when a try got its bytes flowing (it is there)."""

    maybe_gone: MediaMaybeGone | None = None
    heard: bool = False

    def gone(self, exc: MediaMaybeGone) -> None:
        self.maybe_gone, self.heard = exc, True

    def there(self) -> None:
        self.maybe_gone, self.heard = None, True


@dataclass(frozen=True, slots=True, kw_only=True)
class Saved:
    """A complete download in the scratch directory: its key (SHA-256), size, first bytes."""

    path: Path
    key: str
    size: int
    head: bytes


async def save(parts: AsyncIterator[bytes], scratch: Path, *, max_bytes: int) -> Saved:
    """Write the chunks to a new scratch file, hashing and counting; TooLarge past the cap."""
    path = scratch / f"{uuid.uuid4().hex}.part"
    digest, size, head = hashlib.sha256(), 0, bytearray()
    handle = await asyncio.to_thread(path.open, "wb")
    try:
        async for chunk in parts:
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"larger than [media] max_bytes ({max_bytes} bytes)")
            digest.update(chunk)
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            await asyncio.to_thread(handle.write, chunk)
    except BaseException:
        await asyncio.to_thread(handle.close)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    await asyncio.to_thread(handle.close)
    return Saved(path=path, key=digest.hexdigest(), size=size, head=bytes(head))


@asynccontextmanager
async def _bytes_file(raw: bytes, mimetype: str | None = None) -> AsyncIterator[MediaFile]:
    async def one() -> AsyncIterator[bytes]:
        yield raw

    yield MediaFile(chunks=one(), mimetype=mimetype)


class Fetcher:
    """Runs media jobs to an outcome command (see the module docstring)."""

    def __init__(
        self,
        cfg: MediaConfig,
        *,
        store: Store,
        media: MediaStore,
        registry: Registry,
        client: httpx.AsyncClient,
        poll: PollConfig,
        inline: InlineFiles,
    ) -> None:
        self.cfg, self.store, self.media, self.registry = cfg, store, media, registry
        self.client, self.inline = client, inline
        # One request per try: the retries are this module's, with the media timeout.
        self.poll = poll.model_copy(update={"max_attempts": 1, "timeout_s": cfg.timeout_s})
        self._plain = Http(client, "", headers={}, retry=RetryPolicy(attempts=1))
        self._providers: dict[int, Provider] = {}

    async def run(self, job: MediaJob) -> MediaCommand:
        """Fetch and store `job`'s file; the command that records what happened."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.cfg.tries),
            wait=self._wait,
            retry=retry_if_exception_type(_RETRIED),
            reraise=True,
        )
        word = _Word()
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        return await self._once(job, word)
                    except MediaMaybeGone as exc:
                        word.gone(exc)
                        raise
        except MediaGone as exc:
            return MediaExpired(message_id=job.id, attempts=job.attempts, reason=str(exc))
        except _RETRIED as exc:
            return self._later(job, exc, word)
        except (ProviderError, TooLarge) as exc:
            return MediaFailed(message_id=job.id, attempts=job.attempts, reason=str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    def _later(self, job: MediaJob, exc: Exception, word: _Word) -> MediaFailed | MediaExpired:
        """Another attempt after `retry_delay_s` (doubling); when they are spent, EXPIRED if
        the provider's last word on the file was 'may be gone', else FAILED. Tries that said
        nothing of the file (a 5xx, a reset) leave an earlier try's or attempt's word."""
        reason = f"{word.maybe_gone or exc} (after {self.cfg.tries} tries)"
        if word.maybe_gone is not None:
            reason = MAYBE_GONE + reason
        elif not word.heard and job.reason is not None and job.reason.startswith(MAYBE_GONE):
            reason = job.reason
        if job.attempts >= self.cfg.max_attempts:
            if reason.startswith(MAYBE_GONE):
                return MediaExpired(message_id=job.id, attempts=job.attempts, reason=reason)
            return MediaFailed(message_id=job.id, attempts=job.attempts, reason=reason)
        delay = self.cfg.retry_delay_s * 2.0 ** (job.attempts - 1)
        return MediaFailed(
            message_id=job.id, attempts=job.attempts, reason=reason, retry_in_s=delay
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return min(exc.retry_after_s, self.cfg.max_backoff_s)
        base: float = self.cfg.backoff_s * 2.0 ** (state.attempt_number - 1)
        return min(random.uniform(base / 2, base * 1.5), self.cfg.max_backoff_s)

    async def _once(self, job: MediaJob, word: _Word) -> MediaStored:
        converted = False
        async with await self._open(job) as file:
            word.there()  # whatever fails now (a cut body, the media store), the file exists
            saved = await save(file.chunks, self.media.scratch, max_bytes=self.cfg.max_bytes)
            converted = self.cfg.convert_voice and job.voice and file.size is None
        try:
            expected = file.size if file.size is not None else None if converted else job.size
            if expected is not None and expected != saved.size:
                raise SizeMismatch(f"got {saved.size} bytes, the provider said {expected}")
            declared = file.mimetype if converted else job.mimetype or file.mimetype
            mimetype, note = checked_type(declared, saved.head)
            await self.media.put(saved.key, saved.path, content_type=mimetype)
        finally:
            await asyncio.to_thread(saved.path.unlink, missing_ok=True)
        return MediaStored(
            message_id=job.id,
            key=saved.key,
            size=saved.size,
            mimetype=mimetype,
            filename=file.filename,
            note=note,
        )

    async def _open(self, job: MediaJob) -> AbstractAsyncContextManager[MediaFile]:
        """Where the bytes come from: our send's own, the webhook's, or the provider."""
        if job.source == OUTBOX_SOURCE:
            return await self._outbound(job)
        inline = self.inline.take(job.key)
        if inline is not None:
            return _bytes_file(inline)
        age = (datetime.now(UTC) - job.created_at).total_seconds()
        source = job.source_for(url_fresh=age < self.cfg.url_lifetime_s)
        return self._provider(job).fetch_media(source, convert_voice=self.cfg.convert_voice)

    async def _outbound(self, job: MediaJob) -> AbstractAsyncContextManager[MediaFile]:
        """Our send's payload: its base64 data, or the URL it was sent from."""
        o = T_OUTBOX.c
        async with self.store.read() as conn:
            row = (await conn.execute(select(o.payload).where(o.message_id == job.id))).first()
        payload: dict[str, Any] = dict(row.payload or {}) if row is not None else {}
        if isinstance(payload.get("data"), str):
            try:
                raw = base64.b64decode(payload["data"], validate=True)
            except (binascii.Error, ValueError):
                raise ProviderError("the outbox data is not valid base64") from None
            return _bytes_file(raw, payload.get("mimetype"))
        if isinstance(payload.get("url"), str):
            return self._url_file(payload["url"])
        raise ProviderError("the send has neither data nor a URL to keep")

    @asynccontextmanager
    async def _url_file(self, url: str) -> AsyncIterator[MediaFile]:
        async with self._plain.stream(url, keyed=False) as resp:
            yield MediaFile(chunks=chunks(resp), mimetype=resp.headers.get("content-type"))

    def _provider(self, job: MediaJob) -> Provider:
        found = self._providers.get(job.session_id)
        if found is None:
            ref = self.registry.sessions.get(job.session_id)
            if ref is None:
                raise ProviderError(f"session {job.session_id} is not configured")
            found = self._providers[job.session_id] = provider_for(ref, self.client, self.poll)
        return found
