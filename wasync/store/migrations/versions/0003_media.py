"""media worker columns on messages

Revision ID: 0003_media
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_media"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    sa.Column("media_status", sa.String(length=20), nullable=False, server_default="NONE"),
    sa.Column("media_reason", sa.Text(), nullable=True),
    sa.Column("media_attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("media_key", sa.String(length=64), nullable=True),
    sa.Column("media_ref", sa.JSON(), nullable=True),
    sa.Column("media_stored_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("media_next_at", sa.DateTime(timezone=True), nullable=True),
)


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        for column in _COLUMNS:
            batch.add_column(column)
    op.create_index(
        "ix_messages_media_status", "messages", ["media_status", "media_next_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_messages_media_status", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        for column in reversed(_COLUMNS):
            batch.drop_column(column.name)
