"""No secret in a log line: a logging filter that blanks tokens and configured secrets.

uvicorn logs every WebSocket handshake at INFO with its query string
(`'%s - "WebSocket %s" [accepted]'`, websockets_sansio_impl), and `/ws?token=<JWT>` is how
browsers authenticate; an error message may quote a URL or a header. `Redactor` rewrites
each record it sees (message, arguments, traceback text) before any handler formats it:

- a query parameter that carries a credential (`token`, `access_token`, `apikey`, `api_key`,
  `key`, `secret`, `password`, `jwt`): its value becomes `[redacted]`, the name stays;
- `Bearer <anything>` and anything shaped like a JWT (`eyJ...`.`...`.`...`);
- every secret the configuration holds (API keys, webhook secrets, the JWT secret), verbatim;
- the values Postgres quotes in a constraint violation's DETAIL (`Key (phone)=(...) already
  exists`, `Failing row contains (...)`), which a logged traceback carries: customers'
  numbers, names and texts, not secrets, but nothing a log needs (SQLAlchemy's own list of
  a statement's parameters is kept out by `hide_parameters`, `wasync.store.db`).

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
# Postgres' DETAIL lines (errdetail of unique, foreign-key, exclusion and check violations).
_PG_KEY = re.compile(
    r"(\bKey \([^)\n]*\)=\().*?(\) (?:already exists|is not present in table|conflicts with))"
)
_PG_ROW = re.compile(r"(\bFailing row contains \().*(\))")


def redact(text: str, secrets: Iterable[str] | Secrets = ()) -> str:
    """`text` with credentials blanked (see the module docstring)."""
    known = secrets if isinstance(secrets, Secrets) else Secrets(secrets)
    text = known.blank(text)
    if "=" in text:
        text = _QUERY.sub(rf"\1{REDACTED}", text)
    if "earer" in text:
        text = _BEARER.sub(rf"\1{REDACTED}", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "Key (" in text:
        text = _PG_KEY.sub(rf"\1{REDACTED}\2", text)
    if "Failing row contains (" in text:
        text = _PG_ROW.sub(rf"\1{REDACTED}\2", text)
    return text


# Past this many secrets, a text is searched for their first characters in one pass instead
# of once per secret: a thousand sessions, each with its key and webhook secret, made every
# log line two thousand substring searches (92 us a line).
INDEX_FROM = 16


class Secrets:
    """Configured secret values (`MIN_SECRET_CHARS` or longer), ready to be blanked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = {s for s in secrets if len(s) >= MIN_SECRET_CHARS}
        self.values = sorted(known, key=len, reverse=True)  # a secret inside another goes too
        self._heads: dict[str, list[str]] = {}  # first MIN_SECRET_CHARS characters -> values
        if len(self.values) >= INDEX_FROM:
            for value in self.values:
                self._heads.setdefault(value[:MIN_SECRET_CHARS], []).append(value)

    def blank(self, text: str) -> str:
        """`text` with every secret it holds replaced by `REDACTED`."""
        candidates = self.values
        if self._heads:  # only the secrets whose first characters occur in the text
            n = MIN_SECRET_CHARS
            found = {text[i : i + n] for i in range(len(text) - n + 1)} & self._heads.keys()
            if not found:
                return text
            candidates = sorted((v for h in found for v in self._heads[h]), key=len, reverse=True)
        for secret in candidates:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class Redactor(logging.Filter):
    """Rewrites records so that no credential reaches a handler; never drops one."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = Secrets()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also blank these values."""
        self.secrets = Secrets([*self.secrets.values, *secrets])

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
