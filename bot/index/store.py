"""Persistence of the index through SQLAlchemy (SQLite by default, PostgreSQL in production).

Writes are single upserts keyed by the model reference (``INSERT ... ON CONFLICT DO UPDATE`` on
both backends), so re-adding a model at a new revision replaces its row, and two processes adding
models at once neither lose rows nor trip over each other's unique keys.

>>> store = IndexStore("sqlite://")
>>> store.count()
0
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from provbot.bot.db import make_engine, migrate, session_scope
from provbot.bot.db.models_index import CrawlState, IndexFailure, IndexModel, IndexSketch, utcnow
from provbot.bot.index.fingerprint import Fingerprint
from provbot.bot.index.sketch import SKETCH_VERSION, Sketch
from provbot.detectors.declared import Declared

Outcome = Literal["added", "updated", "unchanged"]


class IndexEntry(BaseModel):
    """Everything ``add`` writes for one model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ref: str
    source: Literal["hub", "local"]
    revision: str | None = None
    fingerprint: Fingerprint
    declared: Declared = Declared()
    is_base: bool = False
    family_name: str | None = None
    sketch: Sketch | None = None


class IndexRecord(BaseModel):
    """A stored model as listings show it (no sketch bytes)."""

    ref: str
    source: str
    revision: str | None
    family_key: str
    loose_key: str
    model_type: str | None
    family_name: str | None
    is_base: bool
    params: int
    dtype: str | None
    fingerprint: dict[str, Any]
    declared: Declared
    conclusion: dict[str, Any] | None = None
    conclusion_revision: str | None = None
    sketch_elements: int | None = None
    indexed_at: datetime
    updated_at: datetime


class Member(BaseModel):
    """One model of a family, as candidate selection needs it."""

    ref: str
    is_base: bool
    revision: str | None


class Failure(BaseModel):
    ref: str
    revision: str | None
    message: str
    at: datetime


class IndexStore:
    """The index database. Pass a URL (migrated on open) or an engine."""

    def __init__(self, target: str | Engine) -> None:
        self.engine = make_engine(target) if isinstance(target, str) else target
        migrate(self.engine)
        self._screen_cache: dict[str, tuple[tuple, list[Member], np.ndarray]] = {}
        # One store serves every worker thread of a process (the service keeps one per context).
        self._cache_lock = threading.Lock()

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, entry: IndexEntry) -> Outcome:
        """Insert or replace the model's row (and sketch); ``unchanged`` when revision and sketch match."""
        fp = entry.fingerprint
        now = utcnow()
        values = dict(
            ref=entry.ref,
            source=entry.source,
            revision=entry.revision,
            family_key=fp.family_key,
            loose_key=fp.loose_key,
            model_type=_str(fp.arch.get("model_type")),
            family_name=entry.family_name,
            is_base=entry.is_base,
            params=fp.params,
            dtype=fp.dtype,
            fingerprint=fp.model_dump(mode="json"),
            base_models=entry.declared.base_models,
            base_model_relation=entry.declared.relation,
            tags=entry.declared.tags,
            indexed_at=now,
            updated_at=now,
        )
        with session_scope(self.engine, write=True) as session:
            old = session.execute(
                select(
                    IndexModel.id,
                    IndexModel.revision,
                    IndexModel.family_key,
                    IndexModel.is_base,
                    IndexModel.family_name,
                ).where(IndexModel.ref == entry.ref)
            ).first()
            if old is not None:
                # A seeded base stays a base when a crawl meets it again.
                values["is_base"] = entry.is_base or old.is_base
                values["family_name"] = entry.family_name or old.family_name
            update = {k: v for k, v in values.items() if k not in ("ref", "indexed_at")}
            stmt = _insert(self.engine)(IndexModel).values(**values)
            stmt = stmt.on_conflict_do_update(index_elements=[IndexModel.ref], set_=update).returning(IndexModel.id)
            model_id = session.execute(stmt).scalar_one()
            if entry.sketch is not None:
                sk = dict(
                    model_id=model_id,
                    version=SKETCH_VERSION,
                    elements=len(entry.sketch.values),
                    screen=encode_screen(entry.sketch.screen()),
                    data=entry.sketch.to_bytes(),
                )
                ins = _insert(self.engine)(IndexSketch).values(**sk)
                session.execute(
                    ins.on_conflict_do_update(
                        index_elements=[IndexSketch.model_id], set_={k: v for k, v in sk.items() if k != "model_id"}
                    )
                )
            else:
                session.execute(delete(IndexSketch).where(IndexSketch.model_id == model_id))
        if old is None:
            return "added"
        if old.revision == entry.revision and old.family_key == fp.family_key:
            return "unchanged"
        return "updated"

    def remove(self, ref: str) -> bool:
        with session_scope(self.engine, write=True) as session:
            model_id = session.execute(select(IndexModel.id).where(IndexModel.ref == ref)).scalar_one_or_none()
            if model_id is None:
                return False
            session.execute(delete(IndexSketch).where(IndexSketch.model_id == model_id))
            session.execute(delete(IndexModel).where(IndexModel.id == model_id))
            return True

    def record_conclusion(self, ref: str, revision: str | None, conclusion: dict[str, Any]) -> bool:
        """Store what provbot concluded about ``ref`` (e.g. a ScanResult summary) at ``revision``."""
        with session_scope(self.engine, write=True) as session:
            row = session.execute(select(IndexModel).where(IndexModel.ref == ref)).scalar_one_or_none()
            if row is None:
                return False
            row.conclusion, row.conclusion_revision, row.concluded_at = conclusion, revision, utcnow()
            return True

    def record_failure(self, ref: str, revision: str | None, message: str) -> None:
        with session_scope(self.engine, write=True) as session:
            session.add(IndexFailure(ref=ref, revision=revision, message=message[:2000]))

    # -- reads ---------------------------------------------------------------------------------

    def get(self, ref: str) -> IndexRecord | None:
        rows = self._records(select(IndexModel).where(IndexModel.ref == ref))
        return rows[0] if rows else None

    def revision_of(self, ref: str) -> str | None:
        with session_scope(self.engine) as session:
            return session.execute(select(IndexModel.revision).where(IndexModel.ref == ref)).scalar_one_or_none()

    def list(self, *, family_key: str | None = None, limit: int | None = None, offset: int = 0) -> list[IndexRecord]:
        query = select(IndexModel).order_by(IndexModel.ref).offset(offset)
        if family_key:
            query = query.where(IndexModel.family_key == family_key)
        if limit is not None:
            query = query.limit(limit)
        return self._records(query)

    def count(self) -> int:
        with session_scope(self.engine) as session:
            return int(session.execute(select(func.count()).select_from(IndexModel)).scalar_one())

    def family(self, family_key: str) -> list[IndexRecord]:
        """Every model of one exact-shape family (an indexed lookup; no sketch bytes)."""
        return self._records(select(IndexModel).where(IndexModel.family_key == family_key).order_by(IndexModel.ref))

    def loose_family(self, loose_key: str) -> list[IndexRecord]:
        return self._records(select(IndexModel).where(IndexModel.loose_key == loose_key).order_by(IndexModel.ref))

    def members(self, family_key: str) -> list[Member]:
        """The refs of one exact-shape family, light (one indexed query, no JSON, no blobs)."""
        query = (
            select(IndexModel.ref, IndexModel.is_base, IndexModel.revision)
            .where(IndexModel.family_key == family_key)
            .order_by(IndexModel.ref)
        )
        with session_scope(self.engine) as session:
            return [Member(ref=r.ref, is_base=r.is_base, revision=r.revision) for r in session.execute(query)]

    def screens(self, family_key: str) -> tuple[list[Member], np.ndarray]:
        """Members of a family that have a current sketch, and their screening vectors (rows).

        Cached per family in this process and revalidated by one cheap indexed query (count and
        latest update), so a service ranking many children of one family loads the matrix once.
        """
        stamp_query = select(func.count(), func.max(IndexModel.updated_at), func.max(IndexModel.id)).where(
            IndexModel.family_key == family_key
        )
        with session_scope(self.engine) as session:
            stamp = tuple(session.execute(stamp_query).one())
            with self._cache_lock:
                cached = self._screen_cache.get(family_key)
            if cached is not None and cached[0] == stamp:
                return cached[1], cached[2]
            query = (
                select(IndexModel.ref, IndexModel.is_base, IndexModel.revision, IndexSketch.screen)
                .join(IndexSketch, IndexSketch.model_id == IndexModel.id)
                .where(IndexModel.family_key == family_key, IndexSketch.version == SKETCH_VERSION)
                .order_by(IndexModel.ref)
            )
            rows = session.execute(query).all()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        length = min(len(r.screen) for r in rows) // 2
        matrix = np.empty((len(rows), length), dtype=np.float32)
        for i, r in enumerate(rows):
            matrix[i] = np.frombuffer(r.screen, dtype="<f2", count=length)
        members = [Member(ref=r.ref, is_base=r.is_base, revision=r.revision) for r in rows]
        with self._cache_lock:
            if len(self._screen_cache) >= 64:  # a few families at a time are plenty
                self._screen_cache.pop(next(iter(self._screen_cache)))
            self._screen_cache[family_key] = (stamp, members, matrix)
        return members, matrix

    def sketches(self, refs: list[str]) -> dict[str, Sketch]:
        """Full sketches of the given models (those that have one of the current version)."""
        if not refs:
            return {}
        query = (
            select(IndexModel.ref, IndexSketch.data)
            .join(IndexSketch, IndexSketch.model_id == IndexModel.id)
            .where(IndexModel.ref.in_(refs), IndexSketch.version == SKETCH_VERSION)
        )
        with session_scope(self.engine) as session:
            rows = session.execute(query).all()
        return {r.ref: Sketch.from_bytes(r.data) for r in rows}

    def failures(self, limit: int = 100) -> list[Failure]:
        with session_scope(self.engine) as session:
            rows = session.execute(select(IndexFailure).order_by(IndexFailure.id.desc()).limit(limit)).scalars().all()
            return [Failure(ref=r.ref, revision=r.revision, message=r.message, at=r.at) for r in rows]

    # -- crawl bookkeeping ---------------------------------------------------------------------

    def crawl_state(self, name: str) -> dict[str, Any]:
        with session_scope(self.engine) as session:
            state = session.execute(select(CrawlState.state).where(CrawlState.name == name)).scalar_one_or_none()
        return dict(state or {})

    def save_crawl_state(self, name: str, state: dict[str, Any]) -> None:
        with session_scope(self.engine, write=True) as session:
            stmt = _insert(self.engine)(CrawlState).values(name=name, state=state, updated_at=utcnow())
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[CrawlState.name], set_={"state": state, "updated_at": utcnow()}
                )
            )

    # -- helpers -------------------------------------------------------------------------------

    def _records(self, query) -> list[IndexRecord]:
        with session_scope(self.engine) as session:
            models = session.execute(query).scalars().all()
            ids = [m.id for m in models]
            elements = (
                dict(
                    session.execute(
                        select(IndexSketch.model_id, IndexSketch.elements).where(IndexSketch.model_id.in_(ids))
                    ).all()
                )
                if ids
                else {}
            )
            return [_record(m, elements.get(m.id)) for m in models]


def encode_screen(screen: np.ndarray) -> bytes:
    """Screening vectors are stored as float16: they only shortlist (the fit uses the float32
    sketch), and float16 keeps more mantissa than the BF16 most checkpoints are stored in."""
    return np.clip(screen, -65000, 65000).astype("<f2").tobytes()


def _record(m: IndexModel, elements: int | None) -> IndexRecord:
    return IndexRecord(
        ref=m.ref,
        source=m.source,
        revision=m.revision,
        family_key=m.family_key,
        loose_key=m.loose_key,
        model_type=m.model_type,
        family_name=m.family_name,
        is_base=m.is_base,
        params=m.params,
        dtype=m.dtype,
        fingerprint=m.fingerprint,
        declared=Declared(base_models=m.base_models or [], relation=m.base_model_relation, tags=m.tags or []),
        conclusion=m.conclusion,
        conclusion_revision=m.conclusion_revision,
        sketch_elements=elements,
        indexed_at=m.indexed_at,
        updated_at=m.updated_at,
    )


def _insert(engine: Engine):
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def _str(value: object) -> str | None:
    return value[:64] if isinstance(value, str) else None
