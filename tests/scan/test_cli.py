"""``provbot scan`` as a user runs it: a subprocess, JSON on stdout, one-line errors on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os
    import tempfile

    # A scan without --parent consults the candidate index: keep its database out of the repo.
    db = f"sqlite:///{tempfile.mkdtemp(prefix='provbot-scan-cli-')}/index.db"
    env = dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1", PROVBOT_DATABASE_URL=db, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "provbot.bot.cli", "scan", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_json_is_exactly_one_object(model_zoo):
    child, a, b = (str(model_zoo.path(n)) for n in ("llama_linear", "llama_a", "llama_b"))
    proc = run_cli(child, "--parent", a, "--parent", b, "--json", "--budget-mb", "0.1")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)  # raises if anything else is on stdout
    assert proc.stdout.strip().count("\n") == 0
    assert obj["child"] == child and obj["relation"] == "merge" and obj["method"] == "linear"
    assert [p["ref"] for p in obj["parents"]] == [a, b]
    assert set(obj) >= {"child", "relation", "method", "parents", "fit_r2", "z", "bytes_read", "tensors", "layers"}
    assert obj["bytes_read"][child] <= 0.1 * 2**20 + 50_000  # budget plus headers


def test_max_requests_caps_the_requests_per_model(model_zoo):
    child, a, b = (str(model_zoo.path(n)) for n in ("llama_linear", "llama_a", "llama_b"))
    common = (child, "--parent", a, "--parent", b, "--json", "--budget-mb", "0.1")
    free, capped = (json.loads(run_cli(*common, "--max-requests", m).stdout) for m in ("0", "8"))
    assert capped["requests"][child] <= 8 + 1 < free["requests"][child]  # + the header read
    assert (capped["relation"], capped["method"]) == (free["relation"], free["method"]) == ("merge", "linear")
    assert [p["weight"] for p in capped["parents"]] == pytest.approx([0.6, 0.4], abs=0.01)


def test_readable_report(model_zoo):
    child, a, base = (str(model_zoo.path(n)) for n in ("llama_c", "llama_a", "llama_base"))
    proc = run_cli(child, "--parent", a, "--base", base)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "finetune" in out and "parents" in out and "per layer" in out and "bytes read" in out


def test_malformed_inputs_give_one_line_errors(tmp_path, model_zoo):
    a = str(model_zoo.path("llama_a"))
    assert_one_line_error(run_cli(str(tmp_path / "missing"), "--parent", a, "--json"), "not found")

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "model.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")  # header length past the end
    assert_one_line_error(run_cli(str(bad), "--parent", a, "--json"), "error: ")

    # No --parent: the candidate index is asked, and an unindexed family is inconclusive, not a guess.
    alone = run_cli(a, "--json")
    assert alone.returncode == 0, alone.stderr
    verdict = json.loads(alone.stdout)
    assert verdict["relation"] == "inconclusive" and "family not indexed" in verdict["notes"][0]
