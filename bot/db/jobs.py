"""A durable job queue in the database: queued -> running -> done/failed, with leases and retries.

Claims are optimistic conditional UPDATEs, so any number of workers (threads or processes, on
SQLite or PostgreSQL) can share one queue: exactly one wins each job. A worker that dies leaves its
lease to expire; the job is then claimed again (its ``attempts`` count goes up). Completion is
conditional on still holding the lease, so a job is completed at most once.

>>> from provbot.bot.db.database import Database
>>> db = Database("sqlite://"); db.migrate()
>>> q = JobQueue(db)
>>> q.enqueue("scan", "scan:org/m@abc", {"repo": "org/m"}) is not None
True
>>> q.enqueue("scan", "scan:org/m@abc", {"repo": "org/m"}) is None   # same key: ignored
True
>>> job = q.claim("worker-1")
>>> q.complete(job.id, "worker-1", {"ok": True})
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Update, and_, func, or_, select, update

from provbot.bot.db.database import Database
from provbot.bot.db.models_bot import Job, JobState, utcnow

Clock = Callable[[], datetime]


class JobView(BaseModel):
    """A detached, read-only copy of a job row."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int
    max_attempts: int
    run_after: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    completions: int
    last_error: str | None
    result: dict[str, Any] | None


class JobQueue:
    """Enqueue, claim, heartbeat, complete and fail jobs.

    ``clock`` is injectable so that tests can move time instead of sleeping.
    """

    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: float = 60.0,
        backoff_base: float = 2.0,
        backoff_max: float = 600.0,
        clock: Clock = utcnow,
    ) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.clock = clock

    # -- producing -------------------------------------------------------------------------------
    def enqueue(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        max_attempts: int = 5,
        delay_seconds: float = 0.0,
    ) -> int | None:
        """Add a job unless one with ``key`` exists; returns the new id, or None for a duplicate."""
        now = self.clock()
        values = {
            "key": key,
            "kind": kind,
            "payload": payload,
            "state": JobState.QUEUED.value,
            "attempts": 0,
            "max_attempts": max_attempts,
            "run_after": now + timedelta(seconds=delay_seconds),
            "created_at": now,
            "updated_at": now,
            "completions": 0,
        }
        stmt = self.db.insert_ignoring(Job, values, ["key"]).returning(Job.id)
        with self.db.session(write=True) as s:
            return s.execute(stmt).scalar_one_or_none()

    # -- consuming -------------------------------------------------------------------------------
    def _claimable(self, now: datetime) -> Any:
        return or_(
            and_(Job.state == JobState.QUEUED.value, Job.run_after <= now),
            and_(Job.state == JobState.RUNNING.value, Job.lease_expires_at < now),
        )

    def claim(self, owner: str, kinds: Sequence[str] | None = None) -> JobView | None:
        """Take the oldest runnable job (queued and due, or running with an expired lease)."""
        now = self.clock()
        self._fail_exhausted(now)
        cond = self._claimable(now)
        if kinds:
            cond = and_(cond, Job.kind.in_(list(kinds)))
        with self.db.session(write=True) as s:
            ids = s.scalars(select(Job.id).where(cond).order_by(Job.run_after, Job.id).limit(8)).all()
            for job_id in ids:
                # Re-check the condition in the UPDATE itself: the row may have been taken meanwhile.
                res = s.execute(
                    update(Job)
                    .where(Job.id == job_id, self._claimable(now))
                    .values(
                        state=JobState.RUNNING.value,
                        lease_owner=owner,
                        lease_expires_at=now + self.lease,
                        attempts=Job.attempts + 1,
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if res.rowcount == 1:
                    s.commit()
                    return self.get(job_id)
        return None

    def _fail_exhausted(self, now: datetime) -> None:
        # A job whose worker died on every attempt (a scan that crashes the process, say) must stop.
        with self.db.session(write=True) as s:
            s.execute(
                update(Job)
                .where(
                    Job.state == JobState.RUNNING.value,
                    Job.lease_expires_at < now,
                    Job.attempts >= Job.max_attempts,
                )
                .values(
                    state=JobState.FAILED.value,
                    last_error="lease expired on the last attempt",
                    finished_at=now,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )

    def heartbeat(self, job_id: int, owner: str) -> bool:
        """Extend the lease; False when the lease was lost (the job is someone else's now)."""
        now = self.clock()
        with self.db.session(write=True) as s:
            res = s.execute(
                _held(job_id, owner)
                .values(lease_expires_at=now + self.lease, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            return res.rowcount == 1

    def complete(self, job_id: int, owner: str, result: dict[str, Any] | None = None) -> bool:
        """Mark done if ``owner`` still holds the lease; False means the result must be dropped."""
        now = self.clock()
        with self.db.session(write=True) as s:
            res = s.execute(
                _held(job_id, owner)
                .values(
                    state=JobState.DONE.value,
                    result=result,
                    completions=Job.completions + 1,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    updated_at=now,
                    last_error=None,
                )
                .execution_options(synchronize_session=False)
            )
            return res.rowcount == 1

    def fail(
        self, job_id: int, owner: str, error: str, *, retry: bool = True, not_before: datetime | None = None
    ) -> str | None:
        """Record an error: requeue with exponential backoff (and not before ``not_before``), or fail for good.

        Returns the new state, or None when the lease had been lost.
        """
        now = self.clock()
        with self.db.session(write=True) as s:
            job = s.get(Job, job_id)
            if job is None or job.state != JobState.RUNNING.value or job.lease_owner != owner:
                return None
            attempts = job.attempts
            exhausted = attempts >= job.max_attempts
            if retry and not exhausted:
                delay = min(self.backoff_base * 2 ** max(attempts - 1, 0), self.backoff_max)
                run_after = now + timedelta(seconds=delay)
                if not_before is not None:
                    run_after = max(run_after, not_before)
                values: dict[str, Any] = {"state": JobState.QUEUED.value, "run_after": run_after}
            else:
                values = {"state": JobState.FAILED.value, "finished_at": now}
            res = s.execute(
                _held(job_id, owner)
                .values(last_error=error[:2000], lease_owner=None, lease_expires_at=None, updated_at=now, **values)
                .execution_options(synchronize_session=False)
            )
            return values["state"] if res.rowcount == 1 else None

    def defer(self, job_id: int, owner: str, not_before: datetime, reason: str) -> str | None:
        """Hand a claimed job back unrun until ``not_before``; the attempt is not counted (nothing failed).

        Returns the new state, or None when the lease had been lost.
        """
        now = self.clock()
        with self.db.session(write=True) as s:
            res = s.execute(
                _held(job_id, owner)
                .values(
                    state=JobState.QUEUED.value,
                    run_after=max(now, not_before),
                    attempts=Job.attempts - 1,
                    last_error=reason[:2000],
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            return JobState.QUEUED.value if res.rowcount == 1 else None

    # -- reading ---------------------------------------------------------------------------------
    def get(self, job_id: int) -> JobView | None:
        with self.db.session() as s:
            job = s.get(Job, job_id)
            return JobView.model_validate(job) if job is not None else None

    def by_key(self, key: str) -> JobView | None:
        with self.db.session() as s:
            job = s.scalars(select(Job).where(Job.key == key)).first()
            return JobView.model_validate(job) if job is not None else None

    def list(self, *, kind: str | None = None, state: str | None = None, limit: int = 200) -> list[JobView]:
        with self.db.session() as s:
            q = select(Job).order_by(Job.id)
            if kind:
                q = q.where(Job.kind == kind)
            if state:
                q = q.where(Job.state == state)
            return [JobView.model_validate(j) for j in s.scalars(q.limit(limit))]

    def retry(self, job_id: int) -> bool:
        """Queue a failed job again now, with its attempts reset; False when it is not failed."""
        with self.db.session(write=True) as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None or job.state != JobState.FAILED.value:
                return False
            now = utcnow()
            job.state, job.attempts, job.run_after, job.updated_at = JobState.QUEUED.value, 0, now, now
            job.lease_owner, job.lease_expires_at, job.finished_at = None, None, None
            return True

    def counts(self) -> dict[str, int]:
        """Jobs per state (every state present, zero when empty)."""
        with self.db.session() as s:
            rows = s.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        out = {st.value: 0 for st in JobState}
        out.update({state: n for state, n in rows})
        return out

    def idle(self) -> bool:
        """True when nothing is queued or running."""
        c = self.counts()
        return c[JobState.QUEUED.value] == 0 and c[JobState.RUNNING.value] == 0


def _held(job_id: int, owner: str) -> Update:
    """An update of job ``job_id`` that applies only while ``owner`` still holds its lease."""
    return update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.lease_owner == owner)
