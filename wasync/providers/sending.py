"""What a send is, what the provider answered, and one POST that is never retried blindly.

`Http.call` retries timeouts, which is right for reads and wrong for sends: a send that timed
out after its request was written may have gone out. `post_once` makes exactly one request
and says which failures surely happened before the provider accepted anything (connect
errors, 429, 503, session not WORKING, Evolution's own 500 — safe to retry) and which leave
the outcome unknown (read timeout, connection dropped after writing, other 5xx, a 2xx with a
cut body — `SendOutcomeUnknown`, reconcile first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from wasync.errors import (
    SendOutcomeUnknown,
    SessionNotWorking,
    TransientProviderError,
)
from wasync.providers.http import Http, decode

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
    """The common answer mapping (`http.decode`), with what a send needs on top: a 5xx other
    than 503 and Evolution's own 500, or an accepted answer we cannot read, leaves the outcome
    unknown."""
    status = resp.status_code
    if status >= 400 and "connection closed" in resp.text.lower():
        # Evolution's socket is down: refused before sending (evolution.md 6), as a 400 from
        # inside the send or a 500 from its number check, which runs before (Baileys' Boom
        # has no `status`, so main.ts answers 500).
        raise SessionNotWorking(f"{what}: instance not connected (Connection Closed)")
    if status == 400 and _thrown_inside_send(resp):
        raise SendOutcomeUnknown(
            f"{what}: HTTP 400 from an error inside the send (outcome unknown)", status=status
        )
    if status == 500 and _evolution_error(resp):
        raise TransientProviderError(f"{what}: HTTP 500 before sending (not sent)", status=status)
    if status >= 500 and status != 503:  # 503: refused before doing anything
        raise SendOutcomeUnknown(f"{what}: HTTP {status} (outcome unknown)", status=status)
    try:
        return decode(what, resp)
    except TransientProviderError:
        if status < 300:  # accepted, but the id is lost with the body
            raise SendOutcomeUnknown(f"{what}: HTTP {status} with an unreadable body") from None
        raise


def _evolution_error(resp: httpx.Response) -> bool:
    """Evolution's own error answer, `{"status", "error", "response": {"message"}}` (main.ts'
    handler; WAHA answers `{"statusCode", ...}`). With a 500 it comes from before the send:
    `sendMessageWithTyping` turns all it throws from the WhatsApp send on into a 400, so a
    500 is the number check, media preparation or audio conversion that run first
    (whatsapp.baileys.service.ts, the same from 2.0.10 to 2.4.0)."""
    try:
        body = resp.json()
    except ValueError:
        return False
    if not isinstance(body, dict) or body.get("status") != resp.status_code:
        return False
    response = body.get("response")
    return isinstance(response, dict) and "message" in response and "error" in body


# `Error: Timed Out`, `PrismaClientKnownRequestError: ...`: an Error's toString().
_THROWN = re.compile(r"^[A-Za-z]*Error\b")


def _thrown_inside_send(resp: httpx.Response) -> bool:
    """Evolution turns anything thrown inside a send, including after WhatsApp took the
    message (its own database write, a chatbot hook), into 400 `{"response": {"message":
    ["<Name>Error: ..."]}}` (evolution.md 6). Its refusals are plain texts ("For base64 the
    file name must be informed.") or `{exists: false}` objects, and stay permanent."""
    try:
        body = resp.json()
    except ValueError:
        return False
    response = body.get("response") if isinstance(body, dict) else None
    messages = response.get("message") if isinstance(response, dict) else None
    if not isinstance(messages, list):
        return False
    return any(isinstance(m, str) and _THROWN.match(m) for m in messages)
