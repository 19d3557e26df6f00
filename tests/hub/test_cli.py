"""Hub faults as a user meets them in the CLI: one line, exit 2, quickly; 'unreachable' never reads 'not found'."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.hub.scripted import Answer, ScriptedServer, closed_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a failing command may take: mostly interpreter start and imports (torch) on a busy machine.
PROMPT_S = 30.0


def run_cli(endpoint: str, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    db = f"sqlite:///{tempfile.mkdtemp(prefix='provbot-hub-cli-')}/index.db"
    env = dict(
        os.environ,
        HF_HUB_DISABLE_TELEMETRY="1",
        PROVBOT_DATABASE_URL=db,
        PROVBOT_HUB_ENDPOINT=endpoint,
        HF_HOME=tempfile.mkdtemp(prefix="provbot-hub-cli-home-"),
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "provbot.bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    return proc, time.monotonic() - start


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.mark.parametrize("command", [["scan", "org/x"], ["identity", "org/x"], ["index", "add", "org/x"]])
def test_an_unreachable_hub_fails_fast_and_says_so(command: list[str]) -> None:
    proc, took = run_cli(f"http://127.0.0.1:{closed_port()}", *command)
    line = one_error_line(proc)
    assert "cannot reach" in line and "not found" not in line
    assert took < PROMPT_S


def test_an_unknown_hub_host_is_not_retried() -> None:
    proc, took = run_cli("http://no-such-hub.invalid", "scan", "org/x", "--parent", "org/y")
    line = one_error_line(proc)
    assert "cannot reach http://no-such-hub.invalid" in line and took < PROMPT_S


def test_a_rate_limit_an_hour_away_stops_scan_with_the_time() -> None:
    with ScriptedServer() as hub:
        hub.script("/api/models/org/x", Answer(429, b"{}", {"RateLimit": '"api";r=0;t=3600'}))
        before = datetime.now(UTC)
        proc, took = run_cli(hub.url, "scan", "org/x", "--parent", "org/y")
        line = one_error_line(proc)
        assert took < PROMPT_S and sum(r.path.startswith("/api/models/org/x") for r in hub.requests) == 1
    shown = {f"{t:%H:%M}" for t in (before + timedelta(seconds=3600 + d) for d in (0, 60, 120))}
    assert "rate limited until" in line and any(f"until {hhmm} UTC" in line for hhmm in shown), line


def test_run_once_with_the_hub_unreachable_ends_fast_saying_it_once() -> None:
    proc, took = run_cli(f"http://127.0.0.1:{closed_port()}", "run", "--once")
    line = one_error_line(proc)
    assert "cannot reach" in line and took < PROMPT_S
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == len(set(lines)), proc.stderr  # no failure logged twice


def test_index_add_of_a_missing_repo_exits_non_zero(localhub) -> None:  # noqa: ANN001
    proc, _ = run_cli(localhub.url, "index", "add", "org/missing")
    assert proc.returncode == 1, proc.stderr  # one model of the batch failed; the Hub itself answered
    assert "repo org/missing not found" in proc.stderr and "Traceback" not in proc.stderr
