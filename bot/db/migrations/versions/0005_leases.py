"""The poller lease (one process walks the Hub's listings at a time) and the fence on each cursor.

Revision ID: 0005_leases
Revises: 0004_console
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_leases"
down_revision = "0004_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bot_leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("fence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("expires_at", sa.DateTime, nullable=True),
        sa.Column("acquired_at", sa.DateTime, nullable=True),
        sa.Column("renewed_at", sa.DateTime, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_bot_leases"),
    )
    with op.batch_alter_table("bot_poll_cursors") as batch:
        batch.add_column(sa.Column("fence", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bot_poll_cursors") as batch:
        batch.drop_column("fence")
    op.drop_table("bot_leases")
