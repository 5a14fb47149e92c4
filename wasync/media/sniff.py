"""The mimetype a file is served as: what the provider declared, checked against the bytes.

The bytes are read by `puremagic` (pure Python magic numbers, no libmagic). When they agree
with the declared type (or only say the container: a zip for an .xlsx, Ogg for an opus voice
note) the declared type stays, with its parameters; when they say something else, they win
and the note says so; when they say nothing (plain text, unknown formats) the declared type
stays.
"""

from __future__ import annotations

import puremagic

HEAD_BYTES = 64 * 1024  # enough for every signature puremagic knows (OOXML looks inside)
OCTET = "application/octet-stream"

# Types that name one container: bytes detected as any of a family match a declared one.
_FAMILIES = (
    frozenset({"application/ogg", "audio/ogg", "audio/opus", "video/ogg", "audio/x-ogg"}),
    frozenset(
        {"video/mp4", "audio/mp4", "audio/x-m4a", "audio/m4a", "video/quicktime", "video/3gpp"}
    ),
    frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    frozenset({"audio/mpeg", "audio/mp3", "audio/mpeg3"}),
    frozenset({"application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint"}),
)
# Zip containers: OOXML, OpenDocument, EPUB, JAR/APK; puremagic guesses among them.
_ZIP_PREFIXES = (
    "application/zip",
    "application/x-zip",
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
    "application/epub+zip",
    "application/java-archive",
    "application/vnd.android.package-archive",
)


def base_type(mimetype: str | None) -> str:
    """`audio/ogg; codecs=opus` → `audio/ogg` (lower case); '' for none."""
    return (mimetype or "").split(";", 1)[0].strip().lower()


def detect(head: bytes) -> str | None:
    """What the first bytes of a file are, by their signature; None when nothing matches."""
    if not head:
        return None
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        return None
    found = [m for m in matches if m.mime_type]
    return base_type(max(found, key=lambda m: m.confidence).mime_type) if found else None


def _compatible(declared: str, detected: str) -> bool:
    if declared == detected:
        return True
    if any(declared in family and detected in family for family in _FAMILIES):
        return True
    return declared.startswith(_ZIP_PREFIXES) and detected.startswith(_ZIP_PREFIXES)


def checked_type(declared: str | None, head: bytes) -> tuple[str, str | None]:
    """(the type to serve, a note when the bytes contradict the declared type)."""
    detected = detect(head)
    if detected is None:
        return declared or OCTET, None
    if declared and _compatible(base_type(declared), detected):
        return declared, None
    note = f"declared {declared}, the bytes are {detected}" if declared else None
    return detected, note
