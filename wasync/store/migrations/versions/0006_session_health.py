"""session health from message flow

Revision ID: 0006_session_health
Revises: 0005_leases
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_session_health"
down_revision: str | None = "0005_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "session_health",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=True),
        _ts("state_at"),
        _ts("last_poll_at"),
        _ts("last_inbound_at"),
        _ts("last_webhook_at"),
        sa.Column("webhook_lag_s", sa.Float(), nullable=True),
        sa.Column("recovered_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("recovered_recent", sa.JSON(), nullable=True),
        _ts("suspect_at"),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.PrimaryKeyConstraint("session_id"),
    )


def downgrade() -> None:
    op.drop_table("session_health")
