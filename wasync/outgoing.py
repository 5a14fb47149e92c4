"""What to send: a request checked before anything is queued.

Text must not be blank; media comes as an http(s) URL (passed through to the provider), base64
data, or (CLI only) a local file read as base64. Size is checked against `[send]
max_media_bytes` and the mimetype against the kind (a local file's from its bytes, with
puremagic), so a bad request is refused with one clear line (`SendRejected`) and never
reaches the outbox. A file name is sent with its mimetype's extension (Evolution types media
by the name alone).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import puremagic

from wasync.errors import Refused
from wasync.events import Media, MessageType
from wasync.phones import parse_phone
from wasync.providers.sending import MEDIA_KINDS

# The `messages.type` of each kind of send (voice notes are audio with `media_voice`).
MESSAGE_TYPES = {
    "text": MessageType.TEXT,
    "image": MessageType.IMAGE,
    "video": MessageType.VIDEO,
    "audio": MessageType.AUDIO,
    "voice": MessageType.AUDIO,
    "document": MessageType.DOCUMENT,
}
_MAJOR = {"image": "image/", "video": "video/", "audio": "audio/", "voice": "audio/"}
_DEFAULT_MIME = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/mpeg",
    "voice": "audio/ogg",
    "document": "application/octet-stream",
}


class SendRejected(Refused):
    """A send request that is refused before anything is queued; `status` is the HTTP answer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest:
    """What to send, validated: text, or media as a URL (passed through) or base64 data."""

    kind: str = "text"
    text: str | None = None
    url: str | None = None
    data: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    size: int | None = None

    def payload(self) -> dict[str, Any]:
        """The outbox row's `payload` JSON."""
        fields = ("text", "url", "data", "mimetype", "filename", "size")
        return {k: getattr(self, k) for k in fields if getattr(self, k) is not None}

    @property
    def message_type(self) -> MessageType:
        """The outbound message's `messages.type`."""
        return MESSAGE_TYPES[self.kind]

    def media(self) -> Media | None:
        """The outbound message's media columns (None for text)."""
        if self.kind == "text":
            return None
        return Media(
            mimetype=self.mimetype,
            filename=self.filename,
            url=self.url,
            size=self.size,
            voice=self.kind == "voice",
        )


def parse_to(to: str) -> str:
    """A phone typed by a person as canonical digits (Brazil's ninth digit); SendRejected."""
    try:
        return parse_phone(to)
    except ValueError as exc:
        raise SendRejected(str(exc)) from None


def text_request(text: str) -> SendRequest:
    """A text message; blank text is refused."""
    if not text.strip():
        raise SendRejected("text is empty")
    return SendRequest(kind="text", text=text)


def media_request(
    kind: str,
    source: str,
    *,
    caption: str | None = None,
    filename: str | None = None,
    mimetype: str | None = None,
    max_bytes: int,
    allow_files: bool,
) -> SendRequest:
    """Media from a URL (passed through) or, when `allow_files`, a local file (sent as base64).

    A URL's mimetype is `mimetype`, else its name's, else the kind's default (a local file's
    comes from its bytes). Size and mimetype are checked here, before anything is queued.
    """
    if kind not in MEDIA_KINDS:
        raise SendRejected(f"unknown media kind {kind!r}; expected one of {sorted(MEDIA_KINDS)}")
    if _is_url(source):
        name = filename or Path(urlsplit(source).path).name or None
        known = mimetype or _guess_mime(name)
        mime = _checked_mime(kind, known or _DEFAULT_MIME[kind], source)
        name = _sent_name(kind, name, mime, typed=known is not None)
        return SendRequest(kind=kind, text=caption, url=source, mimetype=mime, filename=name)
    if not allow_files:
        raise SendRejected("media must be an http(s) URL or base64 data")
    return _file_request(kind, Path(source).expanduser(), caption, filename, max_bytes)


def data_request(
    kind: str,
    data: str,
    *,
    mimetype: str | None,
    caption: str | None = None,
    filename: str | None = None,
    max_bytes: int,
) -> SendRequest:
    """Media given as base64 (a `data:` URI prefix is accepted and removed)."""
    if kind not in MEDIA_KINDS:
        raise SendRejected(f"unknown media kind {kind!r}; expected one of {sorted(MEDIA_KINDS)}")
    if data.startswith("data:") and "," in data:
        head, data = data.split(",", 1)
        mimetype = mimetype or head[5:].split(";", 1)[0] or None
    try:
        size = len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise SendRejected(f"{kind} data is not valid base64") from None
    _check_size(kind, size, max_bytes, "data")
    known = mimetype or _guess_mime(filename)
    mime = _checked_mime(kind, known or _DEFAULT_MIME[kind], "data")
    filename = _sent_name(kind, filename, mime, typed=known is not None)
    return SendRequest(
        kind=kind, text=caption, data=data, mimetype=mime, filename=filename, size=size
    )


def _file_request(
    kind: str, path: Path, caption: str | None, filename: str | None, max_bytes: int
) -> SendRequest:
    if not path.is_file():
        raise SendRejected(f"{path}: no such file")
    size = path.stat().st_size
    _check_size(kind, size, max_bytes, str(path))
    raw = path.read_bytes()
    known = _content_mime(kind, raw, _guess_mime(path.name), str(path))
    mime, name = known or _DEFAULT_MIME[kind], filename or path.name
    # A type from the bytes can be a container's (a .docx is a zip to puremagic): it extends
    # a name with no extension, or one whose type we know to differ, not one we cannot read.
    typed = known is not None and (not Path(name).suffix or _guess_mime(name) is not None)
    sent = _sent_name(kind, name, mime, typed=typed)
    data = base64.b64encode(raw).decode("ascii")
    return SendRequest(kind=kind, text=caption, data=data, mimetype=mime, filename=sent, size=size)


def _sent_name(kind: str, name: str | None, mime: str, *, typed: bool) -> str | None:
    """The file name sent with media of `mime` (`typed`: stated or found, not the default).

    A document always has one: Evolution refuses base64 without it, and for a URL takes one
    out of the URL's text (or fails). When `typed`, a name whose extension does not give
    `mime` gets `mime`'s appended: since 2.3.3 (09ee2e62) Evolution types media by the name alone,
    `mimeTypes.lookup(fileName)`, "false" for an unknown extension (whatsapp.baileys.service.ts
    2.3.7 l.2870); WAHA shows the name as given.
    """
    if name is None:
        return "document" + (_extension(mime) or "") if kind == "document" else None
    if not typed or _names_type(name, mime):
        return name
    return name + (_extension(mime) or "")


def _bare(mime: str) -> str:
    return mime.split(";", 1)[0].strip().lower()


def _extension(mime: str) -> str | None:
    return mimetypes.guess_extension(_bare(mime), strict=False)


def _names_type(name: str, mime: str) -> bool:
    """Whether `name`'s extension gives `mime` (or is one of its extensions)."""
    bare = _bare(mime)
    if _bare(_guess_mime(name) or "") == bare:
        return True
    suffix = Path(name).suffix.lower()
    return bool(suffix) and suffix in mimetypes.guess_all_extensions(bare, strict=False)


def _check_size(kind: str, size: int, max_bytes: int, what: str) -> None:
    if size == 0:
        raise SendRejected(f"{kind} {what} is empty")
    if size > max_bytes:
        raise SendRejected(
            f"{kind} {what} is {size / 1_048_576:.1f} MiB; the limit is "
            f"{max_bytes / 1_048_576:.1f} MiB ([send] max_media_bytes)"
        )


def _guess_mime(name: str | None) -> str | None:
    if not name:
        return None
    if name.lower().endswith((".opus", ".oga")):
        return "audio/ogg"
    return mimetypes.guess_type(name, strict=False)[0]


def sniff(raw: bytes) -> str | None:
    """The mimetype a file's bytes show (puremagic's signatures), or None when unknown."""
    try:
        return puremagic.from_string(raw, mime=True) or None
    except (puremagic.PureError, ValueError):
        return None


def _content_mime(kind: str, raw: bytes, named: str | None, what: str) -> str | None:
    """The mimetype of a local file, checked against the kind from its bytes, not its name:
    a text file sent as `--image` is refused naming what it holds. Bytes puremagic does not
    know (some containers) are trusted by their name, unless they are plain text; None when
    neither tells."""
    found = sniff(raw)
    major = _MAJOR.get(kind)
    if major is not None:
        if found is not None and not found.lower().startswith(major):
            raise SendRejected(f"{kind} must be {major}* but {what} is {found} (by its bytes)")
        if found is None and _is_text(raw):
            raise SendRejected(f"{kind} must be {major}* but {what} is text (by its bytes)")
    if named is not None and (major is None or named.lower().startswith(major)):
        return named
    return found


def _is_text(raw: bytes) -> bool:
    head = raw[:4096]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 4  # a character cut at the end of the sample
    return True


def _checked_mime(kind: str, mime: str, what: str) -> str:
    major = _MAJOR.get(kind)
    if major and not mime.lower().startswith(major):
        raise SendRejected(f"{kind} must be {major}* but {what} is {mime}")
    return mime


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
