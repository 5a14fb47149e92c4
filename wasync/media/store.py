"""The media store: files kept by content (the SHA-256 of their bytes is the key), so a file
sent twice is stored once; a local directory (`LocalStore`) or an S3 bucket
(`wasync.media.s3.S3Store`) behind one small interface.

Downloads in progress are written under `<dir>/incoming` (`scratch`) and handed to `put`
complete, so a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol, Self

from wasync.errors import MediaStoreUnavailable

CHUNK = 256 * 1024
_KEY = re.compile(r"^[0-9a-f]{64}$")


def check_key(key: str) -> str:
    """A key is a lower-case hex SHA-256, nothing else (it names a path or an object)."""
    if not _KEY.match(key):
        raise ValueError(f"not a media key: {key[:80]!r}")
    return key


class MediaStore(Protocol):
    """Where stored media live. Use as an async context manager."""

    scratch: Path  # a local directory for downloads in progress

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def has(self, key: str) -> bool:
        """True when a file with this key is stored."""
        ...

    async def put(self, key: str, path: Path, *, content_type: str) -> bool:
        """Store the complete file at `path` (taken: moved or deleted) under `key`; False when
        it was stored already. MediaStoreUnavailable when the store cannot be written."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes `start..end` (inclusive; None: to the end) of a stored file, in chunks."""
        ...


class LocalStore:
    """Files under `<root>/objects/ab/cd/<key>`; `put` is an atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.scratch = root / "incoming"

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.scratch.mkdir, parents=True, exist_ok=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def path(self, key: str) -> Path:
        """Where a key's file is."""
        check_key(key)
        return self.root / "objects" / key[:2] / key[2:4] / key

    async def has(self, key: str) -> bool:
        """True when the key's file exists."""
        return await asyncio.to_thread(self.path(key).is_file)

    async def put(self, key: str, path: Path, *, content_type: str) -> bool:
        """Move the file into place (the content type is the row's to keep)."""
        try:
            return await asyncio.to_thread(self._put, self.path(key), path)
        except OSError as exc:
            raise MediaStoreUnavailable(f"media dir: {exc.strerror or exc}") from None

    @staticmethod
    def _put(dest: Path, path: Path) -> bool:
        if dest.is_file():
            path.unlink(missing_ok=True)
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        return True

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Chunks of the file, read in a thread (the loop never waits on the disk)."""
        try:
            handle = await asyncio.to_thread(self.path(key).open, "rb")
        except OSError as exc:
            raise MediaStoreUnavailable(f"media dir: {exc.strerror or exc}") from None
        try:
            await asyncio.to_thread(handle.seek, start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = await asyncio.to_thread(
                    handle.read, CHUNK if left is None else min(CHUNK, left)
                )
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)
