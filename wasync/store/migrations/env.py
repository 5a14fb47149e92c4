"""Alembic environment: always run with a connection handed in by `wasync.store.migrate`."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import wasync.store.models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `wasync db upgrade`, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
