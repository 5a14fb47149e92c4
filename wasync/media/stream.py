"""A stored file as an HTTP response: streamed in chunks (memory stays flat whatever its size),
one byte `Range` for seeking in audio and video (206, or 416), a strong `ETag` (the content
key) with `If-None-Match` / `If-Range`, and headers that keep a browser from running it.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from wasync.media.sniff import base_type

Reader = Callable[[int, int | None], AsyncIterator[bytes]]
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_INLINE = ("image/", "video/", "audio/")


class RangeNotSatisfiable(ValueError):
    """A `Range` that starts past the end of the file."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte span `(start, end)` (inclusive) a `Range` header asks for, clamped to the
    file; None to send the whole file (no header, several ranges, not a byte range)."""
    if not header:
        return None
    found = _RANGE.match(header.strip().replace(" ", ""))
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # `bytes=-N`: the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - count), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(header)
    return start, end


def file_name(name: str | None, *, mimetype: str, fallback: str) -> str:
    """The name to offer: the original one, else `fallback` with the type's extension."""
    clean = "".join(ch for ch in name or "" if ch.isprintable()).strip()  # no CR/LF in headers
    if clean:
        return clean.replace("/", "_").replace("\\", "_")
    return fallback + (mimetypes.guess_extension(base_type(mimetype)) or "")


def disposition(name: str, mimetype: str) -> str:
    """`Content-Disposition`: inline for pictures and sound, else attachment; the name as
    ASCII and as RFC 5987 UTF-8 (`filename*`)."""
    kind = "inline" if base_type(mimetype).startswith(_INLINE) else "attachment"
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def media_response(
    request: Request, read: Reader, *, key: str, size: int, mimetype: str, name: str
) -> Response:
    """The response for `GET` of a stored file (see the module docstring). The first chunk
    is read before answering, so a store that cannot be read fails before the status line."""
    etag = f'"{key}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=86400",
        "Content-Disposition": disposition(name, mimetype),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None  # the client's copy is another file: send this one whole
    try:
        span = parse_range(wanted, size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if span is None:
        headers["Content-Length"] = str(size)
        body = await _primed(read(0, None))
        return StreamingResponse(body, headers=headers, media_type=mimetype)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    body = await _primed(read(start, end))
    return StreamingResponse(body, status_code=206, headers=headers, media_type=mimetype)


async def _primed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks` with its first one already read (errors of opening raise here)."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    return rest()


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags
