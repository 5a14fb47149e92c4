"""Column types: `UTCDateTime`, the one place where stored times become aware UTC.

SQLite keeps no zone (SQLAlchemy writes `YYYY-MM-DD HH:MM:SS.ffffff` from the datetime's own
fields, so an aware non-UTC value would be stored in its local time) and hands back naive
values; Postgres `timestamptz` hands back aware ones. Every time column of the schema is a
`UTCDateTime`: values are converted to UTC on the way in and come back aware UTC on both
backends, so no caller normalizes what it reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_ZERO = timedelta(0)


def as_utc(value: datetime) -> datetime:
    """`value` as aware UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.utcoffset() == _ZERO and value.tzinfo is UTC else value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that stores UTC and always reads back aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Aware values in UTC (naive ones are UTC); anything else passes through."""
        if value.__class__ is datetime and value.tzinfo is UTC:
            return value  # the common case (every time wasync makes), without a call
        return as_utc(value) if isinstance(value, datetime) else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """SQLite's naive values, and Postgres' aware ones, as aware UTC."""
        return as_utc(value) if isinstance(value, datetime) else value
