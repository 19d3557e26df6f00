"""``provbot identity`` as people run it: a real process, JSON on stdout, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from provbot.detectors.identity import IdentityResult


def _provbot(*args: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1", PROVBOT_IDENTITY__CACHE_DIR=str(cwd / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "provbot.bot.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=os.getcwd(),
    )


def test_identity_json(personas, tmp_path):
    proc = _provbot(
        "identity",
        str(personas["rio-merge"]),
        "--candidate",
        str(personas["nex-ft"]),
        "--samples",
        "1",
        "--limit",
        "8",
        "--device",
        "cpu",
        "--cpu-threads",
        "1",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = IdentityResult.model_validate(json.loads(proc.stdout))
    assert result.system_prompt == "You are Rio." and result.prompts == 8
    assert result.condition("without_system").dominant_family == "nex"
    assert result.condition("without_system").persona.name.label == "Nex"
    assert result.condition("with_system").persona.name.declared == ["system_prompt", "repo_name"]
    assert result.condition("without_system").answers == []  # answers only with --answers


def test_identity_errors_are_one_line(tmp_path):
    proc = _provbot("identity", str(tmp_path / "no-such-model"), cwd=tmp_path)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "no-such-model" in last and "Traceback" not in proc.stderr
    proc = _provbot("identity", "x/y", "--system-prompt", "You are X.", "--no-system-prompt", cwd=tmp_path)
    assert proc.returncode == 2 and "exclude each other" in proc.stderr
