"""Findings keep the identity (behaviour) check that ran with their scan.

Revision ID: 0003_identity
Revises: 0002_bot
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_identity"
down_revision = "0002_bot"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: findings from before this revision, and scans without a behaviour check, have none.
    with op.batch_alter_table("bot_findings") as batch:
        batch.add_column(sa.Column("identity", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bot_findings") as batch:
        batch.drop_column("identity")
