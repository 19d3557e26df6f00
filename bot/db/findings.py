"""Findings: one per repo@revision and origin, with their review status.

>>> from provbot.bot.db.database import Database
>>> db = Database("sqlite://"); db.migrate()
>>> store = FindingStore(db)
>>> row = {"repo": "org/m", "revision": "abc", "origin": "poll", "relation": "merge", "status": "pending",
...        "summary": "merge", "result": {}, "declared": {}}
>>> first, again = store.add_once(row), store.add_once({**row, "status": "recorded"})
>>> first == again, store.get(first[0]).status
(True, 'pending')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from provbot.bot.db.database import Database
from provbot.bot.db.models_bot import Finding, utcnow


class FindingView(BaseModel):
    """A detached copy of a finding row."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    repo: str
    revision: str
    origin: str
    job_id: int | None = None
    relation: str
    status: str
    summary: str
    result: dict[str, Any]
    declared: dict[str, Any]
    reason: str | None
    reviewer: str | None
    created_at: datetime
    decided_at: datetime | None
    identity: dict[str, Any] | None = None  # the behaviour check run with the scan (IdentityCheck JSON)
    claimed_by: str | None = None  # the moderator who has it open in the console
    claimed_at: datetime | None = None

    @property
    def version(self) -> str:
        """A digest of what a moderator decides on (status, revision, evidence, declared lineage):
        a decision made on a page showing another version is stale."""
        state = [self.status, self.revision, self.result, self.identity, self.declared, self.reason]
        return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


OPEN_STATUSES = ("pending", "held")


class FindingQuery(BaseModel):
    """Filters and order of a page of findings (the console's queue)."""

    status: str = "open"  # "open" (pending or held), "all", or one status
    kind: str = ""  # the verdict's relation
    org: str = ""  # the repo's namespace, any case
    since: date | None = None  # found on or after this day (UTC)
    sort: str = "newest"  # or "confidence": the evidence against independence (z), then delta R²


class FindingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_once(self, values: dict[str, Any]) -> tuple[int, str]:
        """Insert unless this repo@revision and origin has a finding; (id, status) of the stored one."""
        row = {"created_at": utcnow(), **values}
        with self.db.session(write=True) as s:
            s.execute(self.db.insert_ignoring(Finding, row, ["repo", "revision", "origin"]))
            found = s.scalars(select(Finding).where(*self._key(values["repo"], values["revision"], values["origin"])))
            finding = found.one()
            return finding.id, finding.status

    @staticmethod
    def _key(repo: str, revision: str, origin: str) -> tuple[Any, ...]:
        return Finding.repo == repo, Finding.revision == revision, Finding.origin == origin

    def exists(self, repo: str, revision: str, origin: str) -> bool:
        with self.db.session() as s:
            return s.scalars(select(Finding.id).where(*self._key(repo, revision, origin))).first() is not None

    def get(self, finding_id: int) -> FindingView | None:
        with self.db.session() as s:
            f = s.get(Finding, finding_id)
            return FindingView.model_validate(f) if f is not None else None

    def list(self, status: str | None = None, limit: int = 100) -> list[FindingView]:
        """Findings oldest first, of one status (None or "all": every status)."""
        with self.db.session() as s:
            q = select(Finding).order_by(Finding.id)
            if status and status != "all":
                q = q.where(Finding.status == status)
            return [FindingView.model_validate(f) for f in s.scalars(q.limit(limit))]

    def search(self, query: FindingQuery, *, limit: int = 50, offset: int = 0) -> tuple[list[FindingView], int]:
        """One page of the findings matching ``query``, filtered and ordered in SQL, and how many match."""
        conditions: list[Any] = []
        if query.status == "open":
            conditions.append(Finding.status.in_(OPEN_STATUSES))
        elif query.status and query.status != "all":
            conditions.append(Finding.status == query.status)
        if query.kind:
            conditions.append(Finding.relation == query.kind)
        if query.org:
            # The namespace is compared literally: LIKE's wildcards in it are escaped.
            org = query.org.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(func.lower(Finding.repo).like(f"{org}/%", escape="\\"))
        if query.since is not None:
            conditions.append(Finding.created_at >= datetime.combine(query.since, time.min))
        if query.sort == "confidence":
            score = func.coalesce(Finding.result["z"].as_float(), 0.0) + func.coalesce(
                Finding.result["fit_r2"].as_float(), 0.0
            )
            order = [score.desc(), Finding.id.desc()]
        else:
            order = [Finding.created_at.desc(), Finding.id.desc()]
        with self.db.session() as s:
            total = s.scalar(select(func.count(Finding.id)).where(*conditions)) or 0
            rows = s.scalars(select(Finding).where(*conditions).order_by(*order).limit(limit).offset(offset))
            return [FindingView.model_validate(f) for f in rows], total

    def count_open(self) -> int:
        with self.db.session() as s:
            return s.scalar(select(func.count(Finding.id)).where(Finding.status.in_(OPEN_STATUSES))) or 0

    def decisions(self, statuses: Collection[str]) -> list[tuple[str, datetime, datetime]]:
        """(status, found, decided) of every finding a moderator decided: the queue's review figures.
        Three columns per row, never the evidence."""
        with self.db.session() as s:
            q = select(Finding.status, Finding.created_at, Finding.decided_at).where(
                Finding.status.in_(list(statuses)), Finding.reviewer.is_not(None), Finding.decided_at.is_not(None)
            )
            return [(st, created, decided) for st, created, decided in s.execute(q)]

    def relations(self) -> list[str]:
        """The verdict kinds present, for the queue's filter."""
        with self.db.session() as s:
            return sorted(s.scalars(select(Finding.relation).distinct()))

    def transition(
        self, finding_id: int, expect: str | Collection[str], values: dict[str, Any], *, version: str | None = None
    ) -> tuple[FindingView | None, str | None]:
        """Set ``values`` if the finding's status is ``expect`` (one or several) and, when ``version`` is
        given, the finding is still that version: (the updated finding, None) on success, (None, its
        current status, or "stale") otherwise, (None, None) when there is none."""
        allowed = {expect} if isinstance(expect, str) else set(expect)
        with self.db.session(write=True) as s:
            f = s.get(Finding, finding_id, with_for_update=True)
            if f is None:
                return None, None
            if f.status not in allowed:
                return None, f.status
            if version is not None and FindingView.model_validate(f).version != version:
                return None, "stale"
            for name, value in values.items():
                setattr(f, name, value)
            return FindingView.model_validate(f), None

    def claim(self, finding_id: int, who: str, ttl: timedelta, *, force: bool = False) -> FindingView | None:
        """Claim the finding for ``who`` unless another moderator's claim is younger than ``ttl`` (or
        ``force``); the finding as stored afterwards (its claimer says who won), None when there is none."""
        with self.db.session(write=True) as s:
            f = s.get(Finding, finding_id, with_for_update=True)
            if f is None:
                return None
            now = utcnow()
            free = f.claimed_by is None or f.claimed_at is None or now - f.claimed_at > ttl
            if force or free or f.claimed_by == who:
                f.claimed_by, f.claimed_at = who, now
            return FindingView.model_validate(f)

    def release(self, finding_id: int, who: str) -> None:
        """Drop ``who``'s claim (a decision was made)."""
        with self.db.session(write=True) as s:
            f = s.get(Finding, finding_id)
            if f is not None and f.claimed_by == who:
                f.claimed_by, f.claimed_at = None, None
