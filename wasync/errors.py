"""The exception tree: what is transient, what is rate limited, what is fatal."""

from __future__ import annotations

from typing import Any


class WasyncError(Exception):
    """Base of every error wasync raises on purpose."""


class ConfigError(WasyncError):
    """The configuration is invalid; the message names the key and the problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class Refused(WasyncError):
    """A request refused before anything was done; `status` is the HTTP answer it maps to
    (422 by default: a value that is not acceptable). The CLI exits 2 for it (bad input),
    or 1 when `status` is 5xx or `from_world` says the world, not the input, refused."""

    status = 422
    from_world = False


class StoreRefused(Refused):
    """The database refused the values of one change (a command): nothing was written."""


class Quarantined(WasyncError):
    """Some events of one `Pipeline.ingest()` could not be stored: each was kept in
    `dead_letters` with its reason, and everything else of the call (the other events, the
    cursor) committed. Raised after that commit; `result` holds the call's counts
    (`IngestResult`, `quarantined` among them) and `reasons` one line per kept event."""

    def __init__(self, result: Any, reasons: list[str]) -> None:
        first = reasons[0] if reasons else "refused by the store"
        super().__init__(f"{len(reasons)} event(s) quarantined in dead_letters: {first}")
        self.result = result
        self.reasons = reasons


class StoreUnavailable(WasyncError):
    """The database cannot be reached right now; callers answer 503 or retry later."""


class AlreadyRunning(WasyncError):
    """Another `wasync run` holds this SQLite database (one node per file): exit 1."""


class ListenError(WasyncError):
    """An HTTP port cannot be opened (already in use, not permitted): a failure of the world."""


class ProviderError(WasyncError):
    """A provider (WAHA, Evolution) request failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientProviderError(ProviderError):
    """Connect errors, timeouts and 5xx: safe to retry with backoff."""


class RateLimited(TransientProviderError):
    """HTTP 429; wait `retry_after_s` before trying again."""

    def __init__(self, message: str, *, retry_after_s: float, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class Unauthorized(ProviderError):
    """401/403: the API key is wrong; retrying will not help."""


class SessionNotWorking(ProviderError):
    """WAHA 422 'Session status is not as expected': skip this cycle, record the status."""

    def __init__(self, message: str, *, status_name: str | None = None) -> None:
        super().__init__(message, status=422)
        self.status_name = status_name


class SessionBlocked(ProviderError):
    """The session is up but cannot be polled until its configuration changes; the message
    says how (WAHA NOWEB without `config.noweb.store.enabled` answers 400 to every read)."""


class FatalProviderError(ProviderError):
    """A provider answer that will not change on retry (404 instance, license gate, 4xx)."""


class PayloadError(WasyncError):
    """A provider body that can never be parsed; it belongs in `dead_letters`."""


class SendOutcomeUnknown(ProviderError):
    """A send that may have reached the provider (timeout after the request was written, 5xx,
    a cut answer): reconcile against the chat before any resend, never retry blindly."""


class MediaGone(ProviderError):
    """The provider says for sure a message's file is not to be had (WAHA has no such
    message, or no file for it; Evolution 'Message not found', not a media message): the
    media is EXPIRED at once, retrying will not help."""


class MediaMaybeGone(TransientProviderError):
    """A download failure that looks the same whether WhatsApp lost the file or a network or
    storage hiccup hit (Evolution's 400 `Failed to fetch stream from ...`, WAHA's
    `media.error`): retried like any transient error, EXPIRED once the attempts are spent."""


class MediaStoreUnavailable(WasyncError):
    """The media store (a directory, an S3 bucket) cannot be read or written right now."""


def about_one_read(exc: ProviderError) -> bool:
    """A refusal of one read, not of us nor of the session: a 500 (the provider crashed on
    what was asked) or a 4xx other than 401/403/429 and WAHA's 422 for a session down."""
    if isinstance(exc, RateLimited | Unauthorized | SessionNotWorking | SessionBlocked):
        return False
    if isinstance(exc, TransientProviderError):
        return exc.status == 500
    return exc.status is not None and 400 <= exc.status < 500
