"""Tables of the bot service: jobs, audit log, poll cursors, leases, findings, posts, mentions.

Every table name starts with ``bot_`` so that it never collides with the index tables. The schema is
created by the Alembic revision ``0002_bot``; tests may also call ``Base.metadata.create_all``.

Times are stored as naive UTC and come back timezone-aware (``UTCDateTime``) so that SQLite and
PostgreSQL behave the same.

>>> from provbot.bot.db.models_bot import Job, JobState
>>> Job.__tablename__, JobState.QUEUED.value
('bot_jobs', 'queued')
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from provbot.bot.db import Base


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: comparisons work the same on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # naive values are taken to be UTC already
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JobState(str, enum.Enum):  # noqa: UP042 - stored and compared as plain strings
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(Base):
    """One unit of durable work (a scan, a mention to handle, a post to make).

    ``key`` is unique: enqueueing the same key twice is a no-op, which is what makes polling and
    webhook replays idempotent. A running job holds a lease; when the lease expires (the worker
    crashed) any worker may claim it again.
    """

    __tablename__ = "bot_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(512), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=JobState.QUEUED.value, index=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=5)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completions: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AuditRecord(Base):
    """An append-only line of the audit log. Updates and deletes are refused at the ORM level."""

    __tablename__ = "bot_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    actor: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    repo: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    revision: Mapped[str | None] = mapped_column(String(128), nullable=True)
    message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


@event.listens_for(AuditRecord, "before_update")
def _refuse_audit_update(mapper: Any, connection: Any, target: AuditRecord) -> None:
    raise PermissionError("the audit log is append-only")


@event.listens_for(AuditRecord, "before_delete")
def _refuse_audit_delete(mapper: Any, connection: Any, target: AuditRecord) -> None:
    raise PermissionError("the audit log is append-only")


class PollCursor(Base):
    """How far a listing walk (``created_at`` or ``last_modified``) has got: newest time and the ids at it."""

    __tablename__ = "bot_poll_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    boundary_ids: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # The poller lease's fence under which the cursor was last written. Revision 0005_leases.
    fence: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Lease(Base):
    """A named lease that one process holds at a time (the poller's, ``name = "poller"``).

    ``fence`` goes up by one on every change of holder: a write made under an older fence comes
    from a process that lost the lease, and is refused (see ``bot.db.leases``). Revision 0005_leases.
    """

    __tablename__ = "bot_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    fence: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class FindingStatus(str, enum.Enum):  # noqa: UP042 - stored and compared as plain strings
    PENDING = "pending"  # waits for a moderator
    APPROVED = "approved"  # a post job is queued
    POSTED = "posted"
    REJECTED = "rejected"
    RECORDED = "recorded"  # kept, never posted (declared lineage, nothing found, dry run)
    HELD = "held"  # a moderator put it aside (console "hold"); it may still be approved or rejected


class Finding(Base):
    """The outcome of one scan of repo@revision, and its way through review."""

    __tablename__ = "bot_findings"
    __table_args__ = (UniqueConstraint("repo", "revision", "origin", name="uq_bot_findings_target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    revision: Mapped[str] = mapped_column(String(128), nullable=False)
    # "poll" or "mention:<repo>#<num>:<comment id>": a mention's result goes back to its thread.
    origin: Mapped[str] = mapped_column(String(512), nullable=False, default="poll")
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    relation: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    summary: Mapped[str] = mapped_column(Text, nullable=False, default="")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    declared: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # The identity (behaviour) check run with the scan (bot.service.identity_check.IdentityCheck as JSON),
    # kept so that approval re-renders exactly what the moderator saw. Revision 0003_identity.
    identity: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewer: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The moderator who has the finding open in the console (a soft lock). Revision 0004_console.
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Post(Base):
    """Where a finding or a reply was published, so that later updates edit instead of posting again."""

    __tablename__ = "bot_posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    marker: Mapped[str] = mapped_column(String(512), unique=True, nullable=False)
    finding_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    target: Mapped[str] = mapped_column(String(32), nullable=False)  # discussion | moderation | reply
    repo: Mapped[str] = mapped_column(String(256), nullable=False)
    discussion_num: Mapped[int | None] = mapped_column(Integer, nullable=True)
    comment_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    approved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    edits: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class Mention(Base):
    """A ``@provbot`` comment seen once (webhook or discussion poll); replays hit the unique comment id."""

    __tablename__ = "bot_mentions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    comment_id: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    repo: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    discussion_num: Mapped[int] = mapped_column(Integer, nullable=False)
    author: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    command: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)  # accepted | refused | limited | ignored
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, index=True)


BOT_TABLES = [t.__table__ for t in (Job, AuditRecord, PollCursor, Lease, Finding, Post, Mention)]
