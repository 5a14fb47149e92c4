"""The bytes of a simulated media file: the format's real signature, then deterministic noise,
`content.size` bytes long (what the message's `fileLength` says). The same message always has
the same bytes, so a test compares what wasync stored with `file_bytes(...)`."""

from __future__ import annotations

import random
from collections.abc import Iterator

from wasync.sim.content import Content

CHUNK = 64 * 1024
# Byte signatures (what a type check reads first) per declared type.
_MAGIC = {
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    "image/png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "image/webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    "video/mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
    "audio/ogg": b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x13OpusHead",
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "audio/mp4": b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A isom",
    "application/pdf": b"%PDF-1.7\n",
}
_ZIP = b"PK\x03\x04\x14\x00\x06\x00"


def _magic(mimetype: str | None) -> bytes:
    base = (mimetype or "").split(";", 1)[0].strip().lower()
    if base in _MAGIC:
        return _MAGIC[base]
    if base.startswith(("application/vnd.openxmlformats", "application/zip")):
        return _ZIP
    return b"wasync-sim-file\n"


def file_chunks(content: Content, seed: str) -> Iterator[bytes]:
    """The file in `CHUNK`-byte pieces (the last one shorter)."""
    size = max(content.size, 0)
    head = _magic(content.mimetype)[:size]
    rng = random.Random(seed)
    left = size - len(head)
    first = True
    while first or left > 0:
        piece = rng.randbytes(min(CHUNK, max(left, 0)))
        left -= len(piece)
        yield head + piece if first else piece
        first = False


def file_bytes(content: Content, seed: str) -> bytes:
    """The whole file."""
    return b"".join(file_chunks(content, seed))
