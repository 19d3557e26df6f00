"""Bot service tables: jobs, audit log, poll cursors, findings, posts, mentions.

Revision ID: 0002_bot
Revises: 0001_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_bot"
down_revision = "0001_index"
branch_labels = None
depends_on = None

# Naive UTC (bot.db.models_bot.UTCDateTime), the same on SQLite and PostgreSQL.
TS = sa.DateTime()


def upgrade() -> None:
    op.create_table(
        "bot_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("run_after", TS, nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("completions", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("result", sa.JSON),
        sa.PrimaryKeyConstraint("id", name="pk_bot_jobs"),
        sa.UniqueConstraint("key", name="uq_bot_jobs_key"),
    )
    op.create_index("ix_bot_jobs_state", "bot_jobs", ["state"])

    op.create_table(
        "bot_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("repo", sa.String(256)),
        sa.Column("revision", sa.String(128)),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bot_audit"),
    )
    for col in ("at", "kind", "actor", "repo"):
        op.create_index(f"ix_bot_audit_{col}", "bot_audit", [col])

    op.create_table(
        "bot_poll_cursors",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("position", TS),
        sa.Column("boundary_ids", sa.JSON, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_bot_poll_cursors"),
    )

    op.create_table(
        "bot_findings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("repo", sa.String(256), nullable=False),
        sa.Column("revision", sa.String(128), nullable=False),
        sa.Column("origin", sa.String(512), nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("relation", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("declared", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("reviewer", sa.String(128)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("decided_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_bot_findings"),
        sa.UniqueConstraint("repo", "revision", "origin", name="uq_bot_findings_target"),
    )
    op.create_index("ix_bot_findings_repo", "bot_findings", ["repo"])
    op.create_index("ix_bot_findings_status", "bot_findings", ["status"])

    op.create_table(
        "bot_posts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("marker", sa.String(512), nullable=False),
        sa.Column("finding_id", sa.Integer),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("repo", sa.String(256), nullable=False),
        sa.Column("discussion_num", sa.Integer),
        sa.Column("comment_id", sa.String(128)),
        sa.Column("url", sa.Text),
        sa.Column("approved_by", sa.String(128)),
        sa.Column("posted_at", TS, nullable=False),
        sa.Column("edits", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bot_posts"),
        sa.UniqueConstraint("marker", name="uq_bot_posts_marker"),
    )
    op.create_index("ix_bot_posts_finding_id", "bot_posts", ["finding_id"])

    op.create_table(
        "bot_mentions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("comment_id", sa.String(128), nullable=False),
        sa.Column("repo", sa.String(256), nullable=False),
        sa.Column("discussion_num", sa.Integer, nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("command", sa.JSON, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bot_mentions"),
        sa.UniqueConstraint("comment_id", name="uq_bot_mentions_comment_id"),
    )
    for col in ("repo", "author", "at"):
        op.create_index(f"ix_bot_mentions_{col}", "bot_mentions", [col])


def downgrade() -> None:
    for table in ("bot_mentions", "bot_posts", "bot_findings", "bot_poll_cursors", "bot_audit", "bot_jobs"):
        op.drop_table(table)
