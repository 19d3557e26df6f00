"""Findings carry a console claim (who has the finding open, since when); "held" is a new status value.

Revision ID: 0004_console
Revises: 0003_identity
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_console"
down_revision = "0003_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bot_findings") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bot_findings") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
