"""SQLite takes one node: `node_lock` holds an OS lock (`flock` on `<database>.lock`) for the
daemon's life, so a second `wasync run` on the same file stops with one line naming the node
that has it; `file_lock_holder` tells `wasync sessions` which node that is."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from wasync.errors import AlreadyRunning
from wasync.store import Store


def _lock_path(store: Store) -> Path | None:
    database = store.url.database
    if not database or database == ":memory:":
        return None
    return Path(database).expanduser().with_name(Path(database).name + ".lock")


@contextlib.contextmanager
def node_lock(store: Store, node_id: str) -> Iterator[None]:
    """SQLite: `flock` on `<database>.lock` while the block runs (the daemon's life);
    AlreadyRunning when another process holds it. Nothing to do on Postgres (leases)."""
    path = _lock_path(store) if store.is_sqlite else None
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fh: IO[str] = path.open("a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            other = fh.readline().strip() or "another process"
            raise AlreadyRunning(
                f"another wasync run (node {other}) is using {path.with_suffix('')}: SQLite "
                "takes one node; stop it first, or use Postgres for several nodes"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{node_id}\n{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # closing drops the lock


def file_lock_holder(store: Store) -> str | None:
    """The node written in the lock file, while its process is alive."""
    path = _lock_path(store)
    if path is None or not path.is_file():
        return None
    lines = path.read_text().splitlines()
    if len(lines) != 2 or not lines[1].isdigit():
        return None
    try:
        os.kill(int(lines[1]), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return lines[0]
