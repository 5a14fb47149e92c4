"""Which Evolution API server we talk to (`GET /`: `version`, no key needed), and what its
version changes in what it stores.

A delete for everyone and an edit leave `MessageUpdate` rows that findMessages lists (the
only trace polling has of them), and which rows depends on the version
(`whatsapp.baileys.service.ts`, `messages.upsert` and `messages.update` handlers):

- 2.2.x: a delete leaves a `DELETED` row (only an update without a message falls back to
  it); an edit leaves nothing;
- 2.3.0-2.3.4: every statusless update falls back to `DELETED` (#2010): an edit, but also a
  star or a poll vote synced from the phone; from 2.3.1 a delete's REVOKE protocol message
  also takes the edit's path (an `EDITED` row): `DELETED` tells nothing there;
- 2.3.5-2.3.6: statusless updates that carry anything are skipped: `DELETED` is a delete
  (beside `EDITED`, as its REVOKE took the edit's path); an edit leaves `EDITED` only;
- 2.3.7 and later: the fallback became `SERVER_ACK`; a delete leaves nothing a delivery
  does not, so only its webhook (`messages.delete`) tells of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from wasync.errors import ProviderError
from wasync.providers.http import Http

Version = tuple[int, int, int]

DELETED_UNSURE: tuple[Version, Version] = ((2, 3, 0), (2, 3, 4))
DELETES_UNSTORED: Version = (2, 3, 7)

_VERSION = re.compile(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: object) -> Version | None:
    """`2.3.6`, `v2.3.7`, `2.4.0-rc2` as numbers; None for anything else."""
    found = _VERSION.match(text) if isinstance(text, str) else None
    if found is None:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def deleted_means_delete(version: Version | None) -> bool:
    """Whether a `DELETED` update row is a delete on this server: not on 2.3.0-2.3.4, nor
    where the version is unknown (hiding a message the customer did not delete is worse
    than keeping one they did)."""
    low, high = DELETED_UNSURE
    return version is not None and not low <= version <= high


def polling_misses_deletes(version: Version | None) -> bool:
    """Whether this server keeps no trace of a delete for everyone that polling can tell
    from something else (2.3.0-2.3.4: an edit; 2.3.7 on: a delivery)."""
    if version is None:
        return False
    return not deleted_means_delete(version) or version >= DELETES_UNSTORED


async def server_version(http: Http) -> Version | None:
    """The server's version from `GET /`; None when it does not say or cannot be asked."""
    try:
        data = await http.get("/")
    except ProviderError:
        return None
    return parse_version(data.get("version")) if isinstance(data, Mapping) else None
