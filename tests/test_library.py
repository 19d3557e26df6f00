"""provbot.detectors is a library: typed options in, no settings read, no process state changed."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from provbot.detectors import IdentityOptions, ScanOptions, run_identity, scan
from provbot.detectors.errors import ProvbotError

SCRIPT = """
import gc, json, os, sys, threading
before = dict(os.environ)
import provbot.detectors as d
after_import = dict(os.environ)
modules = sorted(m for m in sys.modules if m.startswith("provbot.bot"))
heavy = [m for m in ("torch", "huggingface_hub") if m in sys.modules]
seen = []
stop = threading.Event()
def watch():
    while not stop.wait(0.005):
        seen.append(gc.isenabled())
t = threading.Thread(target=watch); t.start()
r = d.scan(sys.argv[1], [sys.argv[2], sys.argv[3]], options=d.ScanOptions(budget_mb=0.05))
stop.set(); t.join()
after_scan = dict(os.environ)
print(json.dumps({"import_changed": sorted(set(after_import.items()) ^ set(before.items())),
                  "scan_changed": sorted(set(after_scan.items()) ^ set(after_import.items())),
                  "bot_modules": modules, "heavy_on_import": heavy, "gc_always_on": all(seen),
                  "relation": r.relation}))
"""


def test_importing_and_scanning_changes_no_process_state(model_zoo, tmp_path) -> None:
    paths = [str(model_zoo.path(n)) for n in ("llama_linear", "llama_a", "llama_b")]
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("HF_", "PROVBOT_"))}
    env["HF_HOME"] = str(tmp_path / "hf")
    env["PROVBOT_SCAN__BUDGET_MB"] = "0.0001"  # the library must not read provbot's settings
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *paths], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["import_changed"] == [] and out["scan_changed"] == []
    assert out["bot_modules"] == [] and out["heavy_on_import"] == []
    assert out["gc_always_on"] and out["relation"] == "merge"


def test_the_public_api_has_real_signatures() -> None:
    for fn in (scan, run_identity):
        params = inspect.signature(fn).parameters
        assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values())
        assert all(p.annotation is not inspect.Parameter.empty for p in params.values())
        assert "Example" in (fn.__doc__ or "")
    assert inspect.signature(scan).return_annotation == "ScanResult"


def test_options_are_validated_with_clear_errors() -> None:
    assert ScanOptions().budget_mb == 4.0 and ScanOptions().max_requests == 256
    assert IdentityOptions().cache_dir is None  # the library caches nothing unless asked
    with pytest.raises(ValidationError, match="budget_mb"):
        ScanOptions(budget_mb=0)
    with pytest.raises(ValidationError, match="extra"):
        ScanOptions(budjet_mb=1)  # a typo is an error, not a silently ignored option
    with pytest.raises(ProvbotError, match="budget_mb must be more than 0"):
        scan("x", ["y"], budget_mb=0)


def test_the_bots_settings_are_the_librarys_options() -> None:
    from provbot.bot.settings import Settings

    s = Settings()
    assert isinstance(s.scan, ScanOptions) and isinstance(s.identity, IdentityOptions)
