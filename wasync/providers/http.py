"""HTTP to providers: error mapping at the boundary, and retries for what is transient.

Connect errors, timeouts, 5xx and unparseable bodies are retried with exponential backoff and
jitter; 429 waits its `Retry-After`; 401/403 (`Unauthorized`), WAHA's 422 "session not
WORKING" (`SessionNotWorking`) and other 4xx are final. API keys never reach a log line or an
error message: errors name the method and path only.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from wasync.errors import (
    FatalProviderError,
    ProviderError,
    RateLimited,
    SessionNotWorking,
    TransientProviderError,
    Unauthorized,
)
from wasync.httpclient import Answer, fetcher
from wasync.untrusted import loads, parse_number

log = logging.getLogger(__name__)

# Above WAHA's own wait for a session to become WORKING (5 s + 10 s, waha.md section 3).
DEFAULT_TIMEOUT_S = 30.0
MAX_RETRY_AFTER_S = 86_400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard to try: attempts, backoff base (0 in tests) and the longest wait."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_wait_s: float = 30.0


class Http:
    """One provider's HTTP: base URL, auth headers, retries, error mapping."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        *,
        headers: dict[str, str],
        retry: RetryPolicy = RetryPolicy(),
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        self.retry = retry
        self.timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        self.requests = 0
        # JSON calls: over aiohttp directly with the daemon's client (`httpclient.fetcher`).
        self._fetch = fetcher(client, headers=headers, timeout=self.timeout)

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET a JSON document."""
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any) -> Any:
        """POST JSON, return the JSON answer."""
        return await self.call("POST", path, json=body)

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One logical request with retries; returns the parsed JSON body (or None). The first
        attempt runs bare (nearly every request succeeds at once, and tenacity's bookkeeping
        cost a tenth of a poll's CPU); a transient failure replays it as tenacity's first."""
        try:
            return await self._once(method, path, **kwargs)
        except TransientProviderError as exc:
            if self.retry.attempts <= 1:
                raise
            replay: list[TransientProviderError] = [exc]

        async def again() -> Any:
            if replay:
                raise replay.pop()
            return await self._once(method, path, **kwargs)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientProviderError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await again()
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return min(exc.retry_after_s, self.retry.max_wait_s)
        base: float = self.retry.backoff_s * 2.0 ** (state.attempt_number - 1)
        return min(random.uniform(0, base) + base / 2, self.retry.max_wait_s)

    @asynccontextmanager
    async def stream(self, url: str, *, keyed: bool = True) -> AsyncIterator[httpx.Response]:
        """GET an absolute `url` as a stream, once (the media worker retries): the API key
        header only when `keyed`. Error answers raise like `decode`; read the body with
        `chunks`. Errors name the path, never the query (it may carry a signature)."""
        what = f"GET {urlsplit(url).path}"
        self.requests += 1
        headers = self.headers if keyed else {}
        try:
            async with self.client.stream(
                "GET", url, headers=headers, timeout=self.timeout
            ) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    decode(what, resp)
                yield resp
        except httpx.TimeoutException:
            raise TransientProviderError(f"{what}: timed out") from None
        except httpx.TransportError as exc:
            raise TransientProviderError(f"{what}: {type(exc).__name__}") from None

    async def _once(self, method: str, path: str, **kwargs: Any) -> Any:
        what = f"{method} {path}"
        self.requests += 1
        url = self.base_url + path
        try:
            resp = await self._fetch(method, url, **kwargs)
        except httpx.TimeoutException:
            raise TransientProviderError(f"{what}: timed out") from None
        except httpx.TransportError as exc:
            raise TransientProviderError(f"{what}: {type(exc).__name__}") from None
        return decode(what, resp)


async def chunks(resp: httpx.Response, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """The body of a `stream` response; a connection that breaks or stalls while reading is
    a TransientProviderError (another try may finish it)."""
    what = f"GET {resp.request.url.path}"
    try:
        async for chunk in resp.aiter_bytes(chunk_size):
            yield chunk
    except httpx.TimeoutException:
        raise TransientProviderError(f"{what}: timed out while reading") from None
    except httpx.TransportError as exc:
        raise TransientProviderError(f"{what}: {type(exc).__name__} while reading") from None


def decode(what: str, resp: Answer | httpx.Response) -> Any:
    """Map a provider answer to its JSON body or to the error it means."""
    status = resp.status_code
    if status in (401, 403):
        raise Unauthorized(f"{what}: HTTP {status} (check the API key)", status=status)
    if status == 429:
        raise RateLimited(f"{what}: HTTP 429", retry_after_s=retry_after(resp))
    if status == 422 and "status is not as expected" in resp.text.lower():
        body = _json_or_none(resp.text) or {}
        raise SessionNotWorking(f"{what}: session not WORKING", status_name=body.get("status"))
    if status == 503 and "LICENSE_REQUIRED" in resp.text:
        raise FatalProviderError(
            f"{what}: Evolution is not activated (LICENSE_REQUIRED)", status=503
        )
    if status >= 500:
        raise TransientProviderError(f"{what}: HTTP {status}", status=status)
    if status >= 400:
        raise FatalProviderError(f"{what}: HTTP {status} {_short(resp.text)}", status=status)
    if not resp.content:
        return None
    try:
        return loads(resp.content)
    except ValueError:  # includes a body nested too deep (RecursionError)
        # A cut-off body (proxy, crash mid-answer) is worth another try.
        raise TransientProviderError(f"{what}: invalid JSON ({len(resp.content)} bytes)") from None


def retry_after(resp: Answer | httpx.Response, default_s: float = 5.0) -> float:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), at most a
    day (a hostile or broken value must not park a send for ever, nor overflow a date)."""
    value = resp.headers.get("retry-after")
    if not value:
        return default_s
    seconds = parse_number(value)
    if seconds is None:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time()
        except (TypeError, ValueError, OverflowError):
            return default_s
    return min(max(0.0, float(seconds)), MAX_RETRY_AFTER_S)


def _json_or_none(text: str) -> Any:
    try:
        return loads(text)
    except ValueError:
        return None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


__all__ = ["DEFAULT_TIMEOUT_S", "Http", "ProviderError", "RetryPolicy", "chunks", "retry_after"]
