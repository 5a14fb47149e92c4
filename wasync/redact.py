"""No secret in a log line: a logging filter that blanks tokens and configured secrets.

uvicorn logs every WebSocket handshake at INFO with its query string
(`'%s - "WebSocket %s" [accepted]'`, websockets_sansio_impl), and `/ws?token=<JWT>` is how
browsers authenticate; an error message may quote a URL or a header. `Redactor` rewrites
each record it sees (message, arguments, traceback text) before any handler formats it:

- a query parameter that carries a credential (`token`, `access_token`, `apikey`, `api_key`,
  `key`, `secret`, `password`, `jwt`): its value becomes `[redacted]`, the name stays;
- `Bearer <anything>` and anything shaped like a JWT (`eyJ...`.`...`.`...`);
- every secret the configuration holds (API keys, webhook secrets, the JWT secret), verbatim.

Installed where logging is set up: on the root handlers by `wasync.cli.base.setup_logging`,
and on uvicorn's loggers by `wasync.api.server.serve` (so a record is clean whatever handler,
pytest's included, receives it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 6  # shorter configured "secrets" would blank ordinary words

_QUERY = re.compile(
    r"([?&](?:token|access_token|apikey|api_key|key|secret|password|jwt)=)[^&\s\"'#]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(\bBearer\s+)[^\s\"',;]+", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with credentials blanked (see the module docstring)."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "=" in text:
        text = _QUERY.sub(rf"\1{REDACTED}", text)
    if "earer" in text:
        text = _BEARER.sub(rf"\1{REDACTED}", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    return text


class Redactor(logging.Filter):
    """Rewrites records so that no credential reaches a handler; never drops one."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also blank these values (longest first, so a secret inside another goes too)."""
        known = set(self.secrets) | {s for s in secrets if len(s) >= MIN_SECRET_CHARS}
        self.secrets = sorted(known, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the message (arguments merged in), the traceback and the stack."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself
            return True
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def install(target: logging.Logger | logging.Handler, secrets: Iterable[str] = ()) -> Redactor:
    """Put a Redactor on `target` (once; a second call adds `secrets` to the first)."""
    for existing in target.filters:
        if isinstance(existing, Redactor):
            existing.add(secrets)
            return existing
    redactor = Redactor(secrets)
    target.addFilter(redactor)
    return redactor
