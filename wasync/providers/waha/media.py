"""WAHA media: a message's file from `media.url` while WAHA keeps it, else from a fresh URL.

WAHA saves an incoming file before it emits the webhook and deletes it after
`WHATSAPP_FILES_LIFETIME` (180 s by default); the URL needs `X-Api-Key` (waha.md 7). Polling
asks with `downloadMedia=false`, so a polled message has no URL at all. Either way the
re-download path is `GET /api/{session}/chats/{chatId}/messages/{messageId}?downloadMedia=true`
(waha.md 3, single message), whose `media.url` is a fresh file, or no message / no file when
WAHA has none to give. `media.error` is whatever WAHA's download threw, after its own five
quick tries (MediaManager.processMedia, 2026.2.1): the CDN copy gone, but as well a network
error or its media storage down (WAHA #510: ECONNREFUSED from S3), so it is retried first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from wasync.errors import FatalProviderError, MediaGone, MediaMaybeGone, TransientProviderError
from wasync.providers.base import MediaFile, MediaSource
from wasync.providers.http import Http, chunks
from wasync.providers.parsing import as_map, first_str
from wasync.providers.waha.send import cus_jid

_GONE_STATUSES = (404, 410)


def media_ref(payload: Mapping[str, Any], bare: str, chat: str | None) -> dict[str, str]:
    """What the re-download path needs: the message id as WAHA serialized it (WEBJS wants
    `{fromMe}_{chat}_{id}[_{participant}]`; GOWS/NOWEB also take the raw id) and its chat."""
    raw = payload.get("id")
    ident = raw if isinstance(raw, str) else as_map(raw).get("_serialized")
    ref = {"id": ident.strip() if isinstance(ident, str) and ident.strip() else bare}
    if chat:
        ref["chat"] = chat
    return ref


def _target(http: Http, url: str) -> tuple[str, bool]:
    """Where to GET a WAHA file, and whether the API key goes along: WAHA's own files are
    fetched from the configured base URL (`WAHA_BASE_URL` is often unreachable, waha.md 7),
    so the key never goes to a host a webhook named; anything else (S3 pre-signed) bare."""
    given, base = urlsplit(url), urlsplit(http.base_url)
    if (given.scheme, given.netloc) == (base.scheme, base.netloc):
        return url, True
    if given.path.startswith("/api/files/"):
        prefix = base.path.rstrip("/")
        return urlunsplit((base.scheme, base.netloc, prefix + given.path, given.query, "")), True
    return url, False


def _message_path(session: str, source: MediaSource) -> str:
    ref = source.ref
    guess = f"{'true' if source.from_me else 'false'}_{cus_jid(source.chat_jid)}_"
    ident = first_str(ref.get("id")) or guess + source.provider_message_id
    chat = first_str(ref.get("chat")) or cus_jid(source.chat_jid)
    parts = (quote(session, safe=""), quote(chat, safe=""), quote(ident, safe=""))
    return "/api/{}/chats/{}/messages/{}".format(*parts)


async def _fresh(http: Http, session: str, source: MediaSource) -> tuple[str, Mapping[str, Any]]:
    """A fresh file URL for the message (and its `media` object); MediaGone when WAHA has
    neither the message nor a file for it, MediaMaybeGone when its download failed."""
    path = _message_path(session, source)
    try:
        data = await http.get(path, params={"downloadMedia": "true"})
    except FatalProviderError as exc:
        if exc.status in _GONE_STATUSES:
            raise MediaGone(f"WAHA no longer has message {source.provider_message_id}") from None
        raise
    media = as_map(as_map(data).get("media"))
    url = first_str(media.get("url"))
    error = media.get("error")
    if url is None and error:
        raise MediaMaybeGone(f"WAHA could not download the file: {str(error)[:300]}")
    if url is None:  # not a media message to WAHA, or a mimetype it does not download
        raise MediaGone("WAHA could not download the file: no file (media not downloaded)")
    return url, media


async def _open(stack: AsyncExitStack, http: Http, url: str) -> httpx.Response:
    target, keyed = _target(http, url)
    return await stack.enter_async_context(http.stream(target, keyed=keyed))


@asynccontextmanager
async def fetch_media(http: Http, session: str, source: MediaSource) -> AsyncIterator[MediaFile]:
    """The file of `source`: its `media.url` while it lives, else a fresh one."""
    async with AsyncExitStack() as stack:
        resp: httpx.Response | None = None
        media: Mapping[str, Any] = {}
        if source.url:
            try:
                resp = await _open(stack, http, source.url)
            except FatalProviderError as exc:
                if exc.status not in _GONE_STATUSES:
                    raise
                # Deleted after WHATSAPP_FILES_LIFETIME: ask for a fresh file below.
        if resp is None:
            url, media = await _fresh(http, session, source)
            try:
                resp = await _open(stack, http, url)
            except FatalProviderError as exc:
                if exc.status not in _GONE_STATUSES:
                    raise
                raise TransientProviderError("WAHA deleted the fresh file at once") from None
        yield MediaFile(
            chunks=chunks(resp),
            mimetype=first_str(media.get("mimetype")) or resp.headers.get("content-type"),
            filename=first_str(media.get("filename")),
        )
