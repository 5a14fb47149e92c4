"""quarantine: dead_letters kinds, session and provider id, indexed body hash

Revision ID: 0004_quarantine
Revises: 0003_media
Create Date: 2026-12-02
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_quarantine"
down_revision: str | None = "0003_media"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="unparsed")
        )
        batch.add_column(sa.Column("session_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("provider_message_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("body_sha256", sa.String(length=64), nullable=True))
    _hash_existing_bodies()
    op.create_index("ix_dead_letters_body_sha256", "dead_letters", ["body_sha256", "kind"])
    op.create_index("ix_dead_letters_kind_id", "dead_letters", ["kind", "id"])


def _hash_existing_bodies() -> None:
    """Rows kept before this revision get their hash (the duplicate check probes it)."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("UPDATE dead_letters SET body_sha256 = encode(sha256(body), 'hex')")
        return
    after = 0
    while True:
        rows = bind.execute(
            sa.text("SELECT id, body FROM dead_letters WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": BATCH},
        ).all()
        if not rows:
            return
        bind.execute(
            sa.text("UPDATE dead_letters SET body_sha256 = :h WHERE id = :id"),
            [{"id": r.id, "h": hashlib.sha256(bytes(r.body)).hexdigest()} for r in rows],
        )
        after = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_dead_letters_kind_id", table_name="dead_letters")
    op.drop_index("ix_dead_letters_body_sha256", table_name="dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("body_sha256")
        batch.drop_column("provider_message_id")
        batch.drop_column("session_id")
        batch.drop_column("kind")
