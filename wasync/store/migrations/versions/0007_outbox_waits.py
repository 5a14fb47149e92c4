"""outbox: when a send's outcome became unknown, when its session was first found down

Revision ID: 0007_outbox_waits
Revises: 0006_session_health
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_outbox_waits"
down_revision: str | None = "0006_session_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("unknown_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("session_down_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("session_down_since")
        batch.drop_column("unknown_since")
