"""Evolution media: `POST /chat/getBase64FromMediaMessage/{instance}`, the S3 `mediaUrl`, and
the inline `message.base64` of `webhookBase64` (evolution.md 3.1 and 6).

`getBase64FromMediaMessage` takes `{"message": {"key": ..., "message": ...}}`: with the
message proto Evolution downloads and decrypts without its own database (with only a key it
loads the row first); `convertToMp4: true` turns a voice note into `audio/mp4`. It answers
every error as a 400 with the error's text (whatsapp.baileys.service.ts 2.3.7 l.3977): a few
texts say the message has no file to give; Baileys' `Failed to fetch stream from <url>` (its
fallback download, whether the CDN copy expired or the network failed), `fetch failed` and
timeouts say nothing sure, so they are retried before the file counts as gone.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx

from wasync.errors import (
    FatalProviderError,
    MediaGone,
    MediaMaybeGone,
    ProviderError,
    TransientProviderError,
)
from wasync.providers.base import MediaFile, MediaSource
from wasync.providers.http import Http, chunks
from wasync.providers.parsing import JsonMap, as_int, as_map, as_str, dig, first_str
from wasync.providers.proto import Content

# The proto fields a download needs (Baileys `downloadMediaMessage`): not the thumbnail, the
# waveform or the caption, which only make `media_ref` big.
_DOWNLOAD_FIELDS = (
    "url",
    "directPath",
    "mediaKey",
    "mediaKeyTimestamp",
    "fileEncSha256",
    "fileSha256",
    "fileLength",
    "mimetype",
    "fileName",
    "ptt",
)
_KEY_FIELDS = ("remoteJid", "fromMe", "id", "participant")
# The 400s of getBase64FromMediaMessage that no retry changes: no such message (none handed
# and none in its database), no media in it, a template without a media header, no media
# key to fall back on (2.3.7 l.3845-3909).
_NO_FILE = (
    "message not found",
    "the message is not of the media type",
    "template message does not contain a supported media type",
    "could not determine mediatype for fallback",
)


def media_ref(data: JsonMap, content: Content) -> dict[str, Any]:
    """What `getBase64FromMediaMessage` needs to download without Evolution's database: the
    message key and the (unwrapped) media proto's download fields. A business message's media
    is its header's (`templateMessage.hydratedTemplate.imageMessage`...): Evolution reads a
    `templateMessage` it is handed as a template and fails (400) on one without its parts."""
    key = as_map(data.get("key"))
    ref: dict[str, Any] = {"key": {k: key[k] for k in _KEY_FIELDS if k in key}}
    name, proto = content.media_proto or (content.key, content.value)
    if name:
        fields = {k: proto[k] for k in _DOWNLOAD_FIELDS if k in proto}
        ref["message"] = {name: fields}
    return ref


def inline_bytes(data: JsonMap) -> bytes | None:
    """The file Evolution put in the webhook (`data.message.base64` with `webhookBase64`),
    or None when there is none or it is not valid base64."""
    text = as_str(dig(data, "message", "base64"))
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _request(source: MediaSource, convert: bool) -> dict[str, Any]:
    ref = source.ref
    message: dict[str, Any] = {"key": dict(as_map(ref.get("key")))}
    if not message["key"]:
        message["key"] = {
            "id": source.provider_message_id,
            "remoteJid": source.chat_jid,
            "fromMe": source.from_me,
        }
    proto = ref.get("message")
    # A reference whose proto carries nothing (an older wasync's `{"templateMessage": {}}`) is
    # left out: Evolution then reads the message from its own database by the key.
    if isinstance(proto, Mapping) and any(as_map(v) for v in proto.values()):
        message["message"] = proto
    return {"message": message, "convertToMp4": convert}


async def _base64(http: Http, instance: str, source: MediaSource, convert: bool) -> MediaFile:
    path = f"/chat/getBase64FromMediaMessage/{quote(instance, safe='')}"
    try:
        data = await http.post(path, _request(source, convert))
    except FatalProviderError as exc:
        if exc.status == 400:
            raise _download_error(path, exc) from None
        raise
    answer = as_map(data)
    try:
        raw = base64.b64decode(as_str(answer.get("base64")) or "", validate=True)
    except (binascii.Error, ValueError):
        raise TransientProviderError(f"POST {path}: answer without valid base64") from None
    if not raw:
        raise TransientProviderError(f"POST {path}: answer without base64")
    return MediaFile(
        chunks=_one(raw),
        mimetype=first_str(answer.get("mimetype")),
        filename=first_str(answer.get("fileName")),
        size=None if convert else as_int(dig(answer, "size", "fileLength")),
    )


def _download_error(path: str, exc: FatalProviderError) -> ProviderError:
    """What a 400 of getBase64FromMediaMessage means: not connected (transient), no file for
    sure (gone), or a failed download that may be a lost file or a glitch (maybe gone)."""
    text = str(exc).partition(" HTTP 400 ")[2].lower()  # the answer, not the instance name
    if "connection closed" in text:
        return TransientProviderError(f"POST {path}: instance not connected")
    if any(sign in text for sign in _NO_FILE):
        return MediaGone(f"Evolution has no file for the message: {exc}")
    return MediaMaybeGone(f"Evolution could not download the file: {exc}")


async def _one(raw: bytes) -> AsyncIterator[bytes]:
    yield raw


@asynccontextmanager
async def fetch_media(
    http: Http, instance: str, source: MediaSource, *, convert_voice: bool
) -> AsyncIterator[MediaFile]:
    """The file of `source`: the S3 `mediaUrl` when Evolution gave one, else the base64."""
    convert = convert_voice and source.voice
    async with AsyncExitStack() as stack:
        resp: httpx.Response | None = None
        if source.url and not convert:
            try:  # an object in Evolution's own bucket (S3/MinIO on): a plain GET
                resp = await stack.enter_async_context(http.stream(source.url, keyed=False))
            except ProviderError:
                resp = None  # expired or unreachable: Evolution downloads it again below
        if resp is not None:
            yield MediaFile(chunks=chunks(resp), mimetype=resp.headers.get("content-type"))
        else:
            yield await _base64(http, instance, source, convert)
