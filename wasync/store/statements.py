"""Statement helpers shared by the writers: key lists bound as one parameter, dialect inserts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite


def in_list(col: Any, name: str, *, pg: bool) -> Any:
    """`col IN <list>` with the whole list bound as one parameter `name`: an array on Postgres
    (`= ANY(:name)`), a JSON array read by `json_each` on SQLite.

    An expanding `IN (:a, :b, ...)` costs a parameter per key to process, and gives every
    batch size its own SQL text (on Postgres, its own prepared statement); measured at
    0.07 ms per statement on SQLite and 0.3-0.45 ms on Postgres for 100 keys.
    """
    if pg:
        return col == func.any(bindparam(name, type_=postgresql.ARRAY(col.type)))
    values = func.json_each(bindparam(name, type_=JSON())).table_valued("value")
    return col.in_(select(values.c.value))


def upsert(table: Any, *, pg: bool) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_nothing/update`."""
    return (postgresql.insert if pg else sqlite.insert)(table)
