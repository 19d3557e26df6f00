"""Tables of the candidate-parent index (Alembic revision ``0001_index``).

- ``index_models``: one row per model (Hub repo id or local folder), its architecture fingerprint,
  family keys, declared lineage and what provbot concluded about it.
- ``index_sketches``: the model's weight sketch (versioned binary) and its short screening vector,
  kept apart so listings never load the blobs.
- ``index_crawl_state``: resumable crawl bookkeeping, one JSON document per crawl name.
- ``index_failures``: per-model indexing errors (corrupt headers, missing repos), so a batch goes on
  and nothing is silently lost.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from provbot.bot.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class IndexModel(Base):
    __tablename__ = "index_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(512), unique=True, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # "hub" or "local"
    revision: Mapped[str | None] = mapped_column(String(128))
    family_key: Mapped[str] = mapped_column(String(64), index=True, nullable=False)
    loose_key: Mapped[str] = mapped_column(String(64), index=True, nullable=False)
    model_type: Mapped[str | None] = mapped_column(String(64), index=True)
    family_name: Mapped[str | None] = mapped_column(String(64))
    is_base: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    params: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    dtype: Mapped[str | None] = mapped_column(String(16))
    fingerprint: Mapped[dict] = mapped_column(JSON, nullable=False)
    base_models: Mapped[list] = mapped_column(JSON, default=list, nullable=False)
    base_model_relation: Mapped[str | None] = mapped_column(String(32))
    tags: Mapped[list] = mapped_column(JSON, default=list, nullable=False)
    conclusion: Mapped[dict | None] = mapped_column(JSON)
    conclusion_revision: Mapped[str | None] = mapped_column(String(128))
    concluded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    sketch: Mapped[IndexSketch | None] = relationship(
        back_populates="model", cascade="all, delete-orphan", passive_deletes=True
    )


class IndexSketch(Base):
    __tablename__ = "index_sketches"

    model_id: Mapped[int] = mapped_column(ForeignKey("index_models.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    elements: Mapped[int] = mapped_column(Integer, nullable=False)
    screen: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    model: Mapped[IndexModel] = relationship(back_populates="sketch")


class CrawlState(Base):
    __tablename__ = "index_crawl_state"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[dict] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class IndexFailure(Base):
    __tablename__ = "index_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(512), index=True, nullable=False)
    revision: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
