"""A claimed media job (one message's file to fetch), and the files providers sent inline."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wasync.events import Event, Message
from wasync.providers.base import MediaSource


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaJob:
    """A message whose file this worker holds a lease on (`attempts` fences its outcome)."""

    id: int
    tenant_id: str
    chat_id: int
    chat_jid: str
    session_id: int
    provider_message_id: str
    from_me: bool
    type: str
    source: str
    created_at: datetime
    attempts: int
    url: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    size: int | None = None
    voice: bool = False
    ref: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None  # the last attempt's `media_reason` (None on the first)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> MediaJob:
        """From a `MediaClaim` answer row (`wasync.ingest.media.JOB_COLUMNS`)."""
        return cls(
            id=int(row["id"]),
            tenant_id=row["tenant_id"],
            chat_id=int(row["chat_id"]),
            chat_jid=row["chat_jid"],
            session_id=int(row["session_id"]),
            provider_message_id=row["provider_message_id"],
            from_me=bool(row["from_me"]),
            type=row["type"],
            source=row["source"],
            created_at=row["created_at"],
            attempts=int(row["media_attempts"]),
            url=row["media_url"],
            mimetype=row["media_mimetype"],
            filename=row["media_filename"],
            size=row["media_size"],
            voice=bool(row["media_voice"]),
            ref=dict(row["media_ref"] or {}),
            reason=row.get("media_reason"),
        )

    @property
    def key(self) -> tuple[int, str]:
        """The message key: (session id, provider message id)."""
        return (self.session_id, self.provider_message_id)

    def source_for(self, *, url_fresh: bool) -> MediaSource:
        """What the provider adapter needs; the URL only while it may still be alive."""
        return MediaSource(
            provider_message_id=self.provider_message_id,
            chat_jid=self.chat_jid,
            from_me=self.from_me,
            url=self.url if url_fresh else None,
            ref=self.ref,
            voice=self.voice,
        )


class InlineFiles:
    """Files a webhook carried itself (Evolution `webhookBase64`), kept until the worker takes
    them: bounded in bytes and age, oldest dropped first (the worker then asks the provider)."""

    def __init__(
        self,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes, self.ttl_s, self.clock = max_bytes, ttl_s, clock
        self._files: OrderedDict[tuple[int, str], tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def offer(self, events: Iterable[Event]) -> None:
        """Keep the inline files of these events (before they are ingested)."""
        for ev in events:
            if isinstance(ev, Message) and ev.media is not None and ev.media.data:
                self._add((ev.session_id, ev.provider_message_id), ev.media.data)

    def _add(self, key: tuple[int, str], data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        self._drop(key)
        self._files[key] = (self.clock(), data)
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._files)))

    def _drop(self, key: tuple[int, str]) -> None:
        found = self._files.pop(key, None)
        if found is not None:
            self._bytes -= len(found[1])

    def take(self, key: tuple[int, str]) -> bytes | None:
        """The file of a message key, if still kept (and forget it)."""
        found = self._files.get(key)
        self._drop(key)
        if found is None or self.clock() - found[0] > self.ttl_s:
            return None
        return found[1]
