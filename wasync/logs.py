"""Logging set up once: text or JSON lines on stderr, redacted, with who a line is about.

`log_format = "json"` writes one JSON object per line through python-json-logger (a
`logging.Formatter`, so every stdlib logger, uvicorn's and Alembic's included, goes through
it unchanged; structlog would bring a second logging API for the same lines): `timestamp`,
`level`, `logger`, `message`, and `session`, `tenant`, `event` where known. `session` and
`tenant` come from `scope()` (a context variable: a poll job, a webhook once its session is
known); `event` is what a call passes as `extra={"event": ...}`.

Every value of a JSON line is redacted (`wasync.redact`) after the record is turned into
fields, tracebacks included (the formatter formats `exc_info` itself), so nothing bypasses
the text path's filter.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

from wasync import redact

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SCOPE_FIELDS = ("session", "tenant")
# uvicorn adds an ANSI-coloured copy of its message to every record.
DROPPED_FIELDS = ("color_message",)

# A context variable, not shared state: each task sees the scope of the code that started it.
_scope: ContextVar[Mapping[str, str] | None] = ContextVar("wasync_log_scope", default=None)


class _Scope:
    """`scope()`'s context manager: a class, not a generator, for it is entered by every poll
    cycle (a thousand sessions, each every 5 s) and every webhook."""

    __slots__ = ("_fields", "_token")

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        outer = _scope.get()
        self._token = _scope.set({**outer, **self._fields} if outer else self._fields)

    def __exit__(self, *exc: object) -> None:
        _scope.reset(self._token)


def scope(**fields: str) -> _Scope:
    """Lines logged inside (this task and the tasks it starts) carry these fields."""
    return _Scope(fields)


def scoped(job: Callable[[], Awaitable[Any]], **fields: str) -> Callable[[], Awaitable[Any]]:
    """`job` run inside `scope(**fields)` (a scheduler job of one session)."""

    async def run() -> Any:
        with scope(**fields):
            return await job()

    return run


class ScopeFilter(logging.Filter):
    """Puts the current `scope()` fields on each record (a field given by the call wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record."""
        for key, value in (_scope.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class RedactedJson(JsonFormatter):
    """One JSON object per record, every string in it redacted."""

    def __init__(self, redactor: redact.Redactor) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
            json_ensure_ascii=False,
        )
        self.redactor = redactor

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Drop uvicorn's coloured copy; redact what is left."""
        for key in DROPPED_FIELDS:
            log_data.pop(key, None)
        return {key: self._clean(value) for key, value in log_data.items()}

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact.redact(value, self.redactor.secrets)
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        return value


class _AlembicPreamble(logging.Filter):
    """Alembic's two lines at every start ("Context impl SQLiteImpl.", "Will assume
    transactional DDL."), migration or not; the "Running upgrade" lines stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the preamble."""
        return not str(record.msg).startswith(("Context impl ", "Will assume "))


def setup(level: str, secrets: Iterable[str] = (), fmt: LogFormat = "text") -> None:
    """The root handler on stderr, in `fmt`, with tokens and `secrets` blanked."""
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        redactor = redact.install(handler, secrets)
        if not any(isinstance(f, ScopeFilter) for f in handler.filters):
            handler.addFilter(ScopeFilter())
        if fmt == "json":
            handler.setFormatter(RedactedJson(redactor))
    # alembic.runtime.plugins: seven "setup plugin ..." INFO lines at every start.
    for noisy in ("httpx", "httpcore", "uvicorn.access", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    migration = logging.getLogger("alembic.runtime.migration")
    if not any(isinstance(f, _AlembicPreamble) for f in migration.filters):
        migration.addFilter(_AlembicPreamble())
    # "skipped: maximum number of running instances reached" is the designed behaviour
    # (max_instances=1) while a long first sync runs; not worth a line every interval.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
