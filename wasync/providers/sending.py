"""What a send is, what the provider answered, and one POST that is never retried blindly.

`Http.call` retries timeouts, which is right for reads and wrong for sends: a send that timed
out after its request was written may have gone out. `post_once` makes exactly one request
and says which failures surely happened before the provider accepted anything (connect
errors, 429, 503, session not WORKING — safe to retry) and which leave the outcome unknown
(read timeout, connection dropped after writing, other 5xx, a 2xx with a cut body —
`SendOutcomeUnknown`, reconcile first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from wasync.errors import (
    FatalProviderError,
    RateLimited,
    SendOutcomeUnknown,
    SessionNotWorking,
    TransientProviderError,
    Unauthorized,
)
from wasync.providers.http import Http, retry_after

# Kinds of outgoing message; `voice` is a push-to-talk note, `audio` a plain audio file.
KINDS = ("text", "image", "video", "audio", "voice", "document")
MEDIA_KINDS = frozenset(KINDS[1:])
# Errors raised before the request was ever handed to a server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One message to send to `to_jid` (the jid the provider's number check returned).

    `text` is the text of a text message and the caption of media; media is `url` (passed
    through) or `data` (raw base64, no `data:` prefix) with its `mimetype` and `filename`.
    """

    to_jid: str
    kind: str
    text: str | None = None
    url: str | None = None
    data: str | None = None
    mimetype: str | None = None
    filename: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendReceipt:
    """What the provider said about an accepted send: its message id and timestamp."""

    provider_message_id: str
    timestamp: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberCheck:
    """Whether a phone is on WhatsApp, and the jid WhatsApp registered it under."""

    exists: bool
    jid: str | None = None


async def post_once(http: Http, path: str, body: Any) -> Any:
    """POST `body` exactly once; return the parsed answer, or raise by what is known.

    TransientProviderError / RateLimited / SessionNotWorking (WAHA 422, Evolution "Connection
    Closed"): the provider did not accept it.
    SendOutcomeUnknown: it may have. Unauthorized / FatalProviderError: it never will.
    Errors name the method and path only, never headers or the body.
    """
    what = f"POST {path}"
    http.requests += 1
    try:
        resp = await http.client.post(
            http.base_url + path, json=body, headers=http.headers, timeout=http.timeout
        )
    except _NOT_SENT as exc:
        raise TransientProviderError(f"{what}: {type(exc).__name__} (not sent)") from None
    except httpx.TransportError as exc:
        raise SendOutcomeUnknown(f"{what}: {type(exc).__name__} (outcome unknown)") from None
    return _answer(what, resp)


def _answer(what: str, resp: httpx.Response) -> Any:
    status = resp.status_code
    if status in (401, 403):
        raise Unauthorized(f"{what}: HTTP {status} (check the API key)", status=status)
    if status == 429:
        raise RateLimited(f"{what}: HTTP 429", retry_after_s=retry_after(resp))
    if status == 422 and "status is not as expected" in resp.text.lower():
        raise SessionNotWorking(f"{what}: session not WORKING")
    if status == 400 and "connection closed" in resp.text.lower():
        # Evolution's socket is down: refused before sending (evolution.md 6).
        raise SessionNotWorking(f"{what}: instance not connected (Connection Closed)")
    if status == 503 and "LICENSE_REQUIRED" not in resp.text:
        # Service unavailable: nginx or the provider refused before doing anything.
        raise TransientProviderError(f"{what}: HTTP 503 (not sent)", status=503)
    if status >= 500:
        raise SendOutcomeUnknown(f"{what}: HTTP {status} (outcome unknown)", status=status)
    if status >= 400:
        raise FatalProviderError(f"{what}: HTTP {status} {_short(resp.text)}", status=status)
    if not resp.content:
        return None
    try:
        return json.loads(resp.content)
    except ValueError:
        # Accepted (2xx) but the answer is cut: the id is unknown, the message is out.
        raise SendOutcomeUnknown(f"{what}: HTTP {status} with an unreadable body") from None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
