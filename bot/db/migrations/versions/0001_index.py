"""Candidate-parent index tables: models, sketches, crawl state, failures.

Revision ID: 0001_index
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_index"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "index_models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ref", sa.String(512), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("revision", sa.String(128)),
        sa.Column("family_key", sa.String(64), nullable=False),
        sa.Column("loose_key", sa.String(64), nullable=False),
        sa.Column("model_type", sa.String(64)),
        sa.Column("family_name", sa.String(64)),
        sa.Column("is_base", sa.Boolean, nullable=False),
        sa.Column("params", sa.BigInteger, nullable=False),
        sa.Column("dtype", sa.String(16)),
        sa.Column("fingerprint", sa.JSON, nullable=False),
        sa.Column("base_models", sa.JSON, nullable=False),
        sa.Column("base_model_relation", sa.String(32)),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("conclusion", sa.JSON),
        sa.Column("conclusion_revision", sa.String(128)),
        sa.Column("concluded_at", TZ),
        sa.Column("indexed_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_index_models"),
        sa.UniqueConstraint("ref", name="uq_index_models_ref"),
    )
    op.create_index("ix_index_models_family_key", "index_models", ["family_key"])
    op.create_index("ix_index_models_loose_key", "index_models", ["loose_key"])
    op.create_index("ix_index_models_model_type", "index_models", ["model_type"])

    op.create_table(
        "index_sketches",
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("elements", sa.Integer, nullable=False),
        sa.Column("screen", sa.LargeBinary, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("model_id", name="pk_index_sketches"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["index_models.id"], ondelete="CASCADE", name="fk_index_sketches_model_id_index_models"
        ),
    )

    op.create_table(
        "index_crawl_state",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_index_crawl_state"),
    )

    op.create_table(
        "index_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ref", sa.String(512), nullable=False),
        sa.Column("revision", sa.String(128)),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_index_failures"),
    )
    op.create_index("ix_index_failures_ref", "index_failures", ["ref"])


def downgrade() -> None:
    op.drop_index("ix_index_failures_ref", "index_failures")
    op.drop_table("index_failures")
    op.drop_table("index_crawl_state")
    op.drop_table("index_sketches")
    op.drop_index("ix_index_models_model_type", "index_models")
    op.drop_index("ix_index_models_loose_key", "index_models")
    op.drop_index("ix_index_models_family_key", "index_models")
    op.drop_table("index_models")
