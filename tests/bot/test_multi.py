"""Two `provbot run` processes on one database and the local Hub, then kill -9 of one of them.

One process walks the listings at a time (the poller lease); both run jobs. After the kill the
survivor polls (taking the lease over when the dead one held it): every upload gets exactly one
finding and one comment, no job completes twice, and only the jobs the dead process was running
run a second time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from provbot.bot.db.database import Database
from provbot.bot.db.jobs import JobQueue
from provbot.bot.db.leases import POLLER_LEASE, LeaseStore
from provbot.bot.db.models_bot import Finding, PollCursor
from provbot.bot.service.audit import AuditLog
from tests.bot.helpers import model_files, spawn_service, wait_until


def _pid(owner: str) -> int:
    return int(owner.split(":")[1])  # owners are host:pid:suffix


def _upload(hub, names: list[str], seed: int) -> None:  # noqa: ANN001
    for i, name in enumerate(names):
        hub.add_repo(name, model_files(seed=seed + i))
        time.sleep(0.3)  # a steady trickle across several polls


def _findings(db: Database) -> Counter[str]:
    with db.session() as s:
        return Counter(repo for (repo,) in s.query(Finding.repo))


@pytest.mark.parametrize("victim", ["poll_owner", "standby"])
def test_two_services_poll_once_and_lose_nothing_to_a_kill_9(hub, db_url: str, tmp_path: Path, victim: str) -> None:  # noqa: ANN001
    hub.add_repo("lab/base", model_files(seed=1), created_at=datetime.now(UTC) - timedelta(days=3))
    db = Database(db_url)
    db.migrate()
    cfg = {
        "hub_url": hub.url,
        "db_url": db_url,
        "candidates": ["lab/base"],
        "lease_seconds": 5.0,  # job leases: long enough that a loaded machine's late heartbeat loses none
        "schedule": True,
        "poll_minutes": 1 / 60,
        "poll_lease_seconds": 3.0,
        "workers": 2,
        "scan_delay": 0.3,
        "hang": False,
        "started_file": str(tmp_path / "started"),
        "calls_file": str(tmp_path / "calls"),
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name in ("a", "b"):
            procs[name] = spawn_service({**cfg, "ready_file": str(tmp_path / f"ready-{name}")})
        ready = {n: tmp_path / f"ready-{n}" for n in procs}
        wait_until(
            lambda: all(p.exists() and p.read_text() for p in ready.values()), 60, "both services", *procs.values()
        )
        owners = {n: json.loads(p.read_text())["owner"] for n, p in ready.items()}
        leases, queue = LeaseStore(db), JobQueue(db)

        def holder() -> str | None:
            view = leases.get(POLLER_LEASE)
            return next((n for n, o in owners.items() if view is not None and view.owner == o), None)

        wait_until(holder, 30, "one service to hold the poller lease", *procs.values())
        before = [f"early/m{i}" for i in range(3)]
        _upload(hub, before, seed=10)
        wait_until(lambda: set(before) <= set(_findings(db)), 60, "findings of the first uploads", *procs.values())

        during = [f"mid/m{i}" for i in range(3)]
        _upload(hub, during, seed=20)  # in flight when the kill comes
        polling = holder()
        dead = polling if victim == "poll_owner" else next(n for n in procs if n != polling)
        alive = next(n for n in procs if n != dead)
        procs[dead].send_signal(signal.SIGKILL)
        procs[dead].wait(10)
        dead_pid = _pid(owners[dead])
        in_flight = {j.id for j in queue.list(state="running") if f":{dead_pid}:" in (j.lease_owner or "")}

        after = [f"late/m{i}" for i in range(3)]  # only the survivor can see these
        _upload(hub, after, seed=30)
        uploads = before + during + after

        def settled() -> bool:
            jobs = queue.list(limit=1000)
            posts = [j for j in jobs if j.kind == "post"]
            return (
                set(uploads) <= set(_findings(db))
                and len(posts) == len(uploads)
                and all(j.state == "done" for j in jobs)
            )

        wait_until(settled, 90, "every upload found and posted", procs[alive])
        wait_until(lambda: holder() == alive, 10, "the survivor to hold the lease", procs[alive])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)

    # Every upload: exactly one finding, one discussion, one comment by the bot.
    assert _findings(db) == Counter(uploads)
    api = HfApi(endpoint=hub.url, token=False)
    for repo in uploads:
        discussions = list(api.get_repo_discussions(repo))
        assert [d.author for d in discussions] == ["provbot"], repo
        details = api.get_discussion_details(repo, discussions[0].num)
        assert [e.author for e in details.events if e.type == "comment"] == ["provbot"], repo

    # No job completed twice; only those the dead process was running ran a second time.
    jobs = queue.list(limit=1000)
    assert Counter(j.kind for j in jobs)["scan"] == len(uploads)
    assert all(j.state == "done" and j.completions == 1 for j in jobs)
    assert {j.id: j.attempts for j in jobs} == {j.id: 1 + (j.id in in_flight) for j in jobs}
    calls = Counter(line.split()[1] for line in (tmp_path / "calls").read_text().splitlines())
    for job in (j for j in jobs if j.kind == "scan"):
        assert 1 <= calls[f"{job.payload['repo']}@{job.payload['revision']}"] <= job.attempts

    # One poller at a time: the walks of the first holder, then (after a takeover) the survivor's, never mixed.
    audit = AuditLog(db)
    walks = [(e.data["owner"], e.data["enqueued"]) for e in audit.query(kind="poll", limit=10_000)]
    sequence = [owner for owner, _ in walks]
    blocks = [o for i, o in enumerate(sequence) if i == 0 or sequence[i - 1] != o]
    lease_log = [(e.data["owner"], e.message) for e in audit.query(kind="lease", limit=1000)]
    view = leases.get(POLLER_LEASE)
    assert view is not None
    if victim == "poll_owner":
        assert blocks == [owners[dead], owners[alive]]
        assert (owners[alive], f"poller lease taken over from {owners[dead]} after it expired") in lease_log
        assert view.fence == 2
    else:
        assert blocks == [owners[alive]] and view.fence == 1
    enqueued_by = {ref.split("@")[0]: owner for owner, refs in walks for ref in refs}
    assert {enqueued_by[r] for r in after} == {owners[alive]}
    with db.session() as s:
        assert {c.fence for c in s.query(PollCursor)} == {view.fence}
    db.dispose()
