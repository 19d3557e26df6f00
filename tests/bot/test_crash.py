"""A kill -9 of the service mid-scan, then a restart: the job completes once and is posted once."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from huggingface_hub import HfApi

from provbot.bot.db.database import Database
from provbot.bot.db.jobs import JobQueue
from provbot.bot.db.models_bot import Finding
from tests.bot.helpers import model_files, spawn_service, wait_until


def test_kill_9_mid_scan_then_restart_completes_once_and_posts_once(hub, db_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    # The candidate is old (outside the first walk's look-back): only the merge gets scanned.
    hub.add_repo("lab/base", model_files(seed=1), created_at=datetime.now(UTC) - timedelta(days=3))
    db = Database(db_url)
    db.migrate()
    hub.add_repo("sneaky/merge", model_files(seed=9))
    cfg = {
        "hub_url": hub.url,
        "db_url": db_url,
        "candidates": ["lab/base"],
        "lease_seconds": 2.0,
        "started_file": str(tmp_path / "started"),
        "ready_file": str(tmp_path / "ready"),
        "calls_file": str(tmp_path / "calls"),
        "hang": True,
    }
    first = spawn_service(cfg)
    try:
        wait_until(lambda: (tmp_path / "started").exists(), 60, "the first scan to start", first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    queue = JobQueue(db)
    running = [j for j in queue.list(kind="scan") if j.state == "running"]
    assert [j.payload["repo"] for j in running] == ["sneaky/merge"]  # killed mid-scan, lease still held

    second = spawn_service({**cfg, "hang": False})
    try:

        def settled() -> bool:
            jobs = queue.list()
            return bool(jobs) and all(j.state == "done" for j in jobs) and any(j.kind == "post" for j in jobs)

        wait_until(settled, 60, "the resumed scan and its post", second)
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait(10)

    merge_job = queue.get(running[0].id)
    assert merge_job.completions == 1 and merge_job.attempts == 2
    assert len(queue.list(kind="scan")) == 1
    assert (tmp_path / "calls").read_text().count("sneaky/merge@") == 2  # started twice, completed once
    posts = queue.list(kind="post")
    assert all(p.completions == 1 for p in posts)
    with db.session() as s:
        assert s.query(Finding).filter_by(repo="sneaky/merge").count() == 1
    discussions = list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("sneaky/merge"))
    assert len(discussions) == 1 and discussions[0].author == "provbot"
    db.dispose()
