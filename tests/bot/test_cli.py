"""The CLI: review list/show/approve/reject, audit filters and --json, and `provbot run` as a process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from provbot.bot.cli import app
from provbot.bot.db.database import Database
from provbot.bot.db.models_bot import Finding, utcnow
from provbot.bot.service.audit import AuditLog
from tests.bot.helpers import merge_result

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def seeded(sqlite_url: str) -> str:
    db = Database(sqlite_url)
    db.migrate()
    result = merge_result("org/m@abc", ["org/a", "org/b"])
    with db.session() as s:
        for repo in ("org/m", "org/n"):
            s.add(
                Finding(
                    repo=repo,
                    revision="abc",
                    origin="poll",
                    relation="merge",
                    status="pending",
                    summary="merge: org/a 0.60",
                    result=result.model_dump(mode="json"),
                    declared={},
                    created_at=utcnow(),
                )
            )
    AuditLog(db).record("poll", message="walked")
    return sqlite_url


def test_review_flow_and_audit(seeded: str) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["review", "list", "--database", seeded])
    assert out.exit_code == 0 and "#1" in out.output and "org/n" in out.output
    shown = runner.invoke(app, ["review", "show", "1", "--database", seeded])
    assert shown.exit_code == 0 and "weighted merge" in shown.output and "Fitted weight" in shown.output
    ok = runner.invoke(app, ["review", "approve", "1", "--as", "alice", "--database", seeded])
    assert ok.exit_code == 0 and "post job is queued" in ok.output
    no_reason = runner.invoke(app, ["review", "reject", "2", "--as", "alice", "--reason", " ", "--database", seeded])
    assert no_reason.exit_code != 0
    rej = runner.invoke(
        app, ["review", "reject", "2", "--as", "bob", "--reason", "declared in paper", "--database", seeded]
    )
    assert rej.exit_code == 0
    again = runner.invoke(app, ["review", "approve", "2", "--as", "alice", "--database", seeded])
    assert again.exit_code != 0  # no longer pending
    listed = json.loads(
        runner.invoke(app, ["review", "list", "--status", "all", "--json", "--database", seeded]).output
    )
    assert [f["status"] for f in listed] == ["approved", "rejected"]
    audit = json.loads(runner.invoke(app, ["audit", "--json", "--kind", "review", "--database", seeded]).output)
    assert [(e["actor"], e["data"]["decision"]) for e in audit] == [("alice", "approved"), ("bob", "rejected")]
    by_actor = json.loads(runner.invoke(app, ["audit", "--json", "--actor", "bob", "--database", seeded]).output)
    assert len(by_actor) == 1 and by_actor[0]["data"]["reason"] == "declared in paper"
    recent = runner.invoke(app, ["audit", "--since", "1h", "--database", seeded])
    assert "walked" in recent.output
    assert (
        runner.invoke(app, ["audit", "--since", "1h", "--until", "2h", "--json", "--database", seeded]).output.strip()
        == "[]"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_provbot_run_serves_health_and_metrics_and_stops_on_sigterm(hub, tmp_path: Path) -> None:  # noqa: ANN001
    port = _free_port()
    env = {
        **os.environ,
        "PROVBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "PROVBOT_HUB_ENDPOINT": hub.url,
        "PROVBOT_HUB_TOKEN": "hf_RunTokenShouldNotLeak12345",
        "PROVBOT_BOT__WEBHOOK_SECRET": "s3cret-hook",
        "PROVBOT_BOT__WEBHOOK_PORT": str(port),
        "PROVBOT_LOG_LEVEL": "INFO",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "provbot.bot.cli", "run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 60
        health = None
        while time.time() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
                break
            except httpx.HTTPError:
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
        assert health is not None and health["status"] == "ok" and health["mode"] == "review"
        assert "provbot_jobs_enqueued_total" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert (
            httpx.post(
                f"http://127.0.0.1:{port}/webhook", content=b"{}", headers={"X-Webhook-Secret": "nope"}
            ).status_code
            == 403
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "provbot running in review mode" in output
    assert "hf_RunTokenShouldNotLeak12345" not in output and "s3cret-hook" not in output


def test_provbot_run_stops_within_five_seconds_of_sigterm_while_retrying(hub, tmp_path: Path) -> None:  # noqa: ANN001
    """The Hub answers every listing with 503: the first poll is backing off between retries."""
    port = _free_port()
    hub.inject("/api/models", status=503, count=1000)
    env = {
        **os.environ,
        "PROVBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "PROVBOT_HUB_ENDPOINT": hub.url,
        "PROVBOT_BOT__WEBHOOK_SECRET": "s3cret-hook",
        "PROVBOT_BOT__WEBHOOK_PORT": str(port),
        "PROVBOT_BOT__BACKOFF_MAX_SECONDS": "120",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "provbot.bot.cli", "run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and hub.faults.fired < 4:  # a few retries in
            time.sleep(0.1)
        assert proc.poll() is None
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        output = proc.communicate(timeout=30)[0].decode()
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert took < 5.0, f"stopped after {took:.1f} s"
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["scan"], "Missing argument 'CHILD'"),
        (["scan", "x", "--bogus"], "No such option: --bogus"),
        (["scan", "x", "--parent", "y", "--budget-mb", "0"], "Invalid value for '--budget-mb'"),
        (["scan", "x", "--parent", "y", "--max-requests", "-1"], "Invalid value for '--max-requests'"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], needle: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "provbot.bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1"),
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert proc.stdout == ""


def test_no_command_prints_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "provbot.bot.cli"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout + proc.stderr and "scan" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
