"""`provbot index ...`: add, seed, list, show, remove, crawl, with and without --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from provbot.bot.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_add_list_show_remove(family_paths, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    res = run("index", "add", family_paths["base"], family_paths["a"], "--base", "--database", db, "--json")
    assert res.exit_code == 0, res.output
    outcomes = json.loads(res.output)
    assert [o["status"] for o in outcomes] == ["added", "added"]

    listed = json.loads(run("index", "list", "--database", db, "--json").output)
    assert {Path(r["ref"]).name for r in listed} == {"llama_base", "llama_a"}
    assert all(r["is_base"] and r["sketch_elements"] > 0 for r in listed)
    family = listed[0]["family_key"]
    assert len(json.loads(run("index", "list", "--family", family[:8], "--database", db, "--json").output)) == 2

    shown = json.loads(run("index", "show", family_paths["a"], "--database", db, "--json").output)
    assert shown["family_size"] == 2 and shown["fingerprint"]["arch"]["hidden_size"] == 64
    text = run("index", "show", family_paths["a"], "--database", db).output
    assert "family" in text and "hidden_size" in text

    removed = json.loads(run("index", "remove", family_paths["a"], "nope/nope", "--database", db, "--json").output)
    assert removed == {"removed": [family_paths["a"]], "missing": ["nope/nope"]}


def test_a_failed_model_sets_exit_1_but_the_rest_is_added(family_paths, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    res = run("index", "add", str(tmp_path / "missing"), family_paths["b"], "--database", db)
    assert res.exit_code == 1
    assert "failed" in res.output and "added" in res.output
    failures = json.loads(run("index", "list", "--failures", "--database", db, "--json").output)
    assert len(failures) == 1 and "missing" in failures[0]["message"]


def test_seed_and_crawl_against_the_local_hub(localhub, family_paths, tmp_path: Path) -> None:
    localhub.add_repo("acme/base", family_paths["base"], config={"downloads": 10})
    localhub.add_repo("acme/ft", family_paths["a"], config={"downloads": 5})
    bases = tmp_path / "bases.toml"
    bases.write_text('[[family]]\nname = "tiny"\nmodels = ["acme/base", "acme/gone"]\n')
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    res = run("index", "seed", "--file", str(bases), "--endpoint", localhub.url, "--database", db, "--json")
    assert res.exit_code == 1  # acme/gone is missing; acme/base is seeded anyway
    assert [o["status"] for o in json.loads(res.output)] == ["added", "failed"]
    shown = json.loads(run("index", "show", "acme/base", "--database", db, "--json").output)
    assert shown["is_base"] and shown["family_name"] == "tiny"

    res = run(
        "index", "crawl", "--sort", "downloads", "--limit", "5", "--endpoint", localhub.url, "--database", db, "--json"
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["added"] == 1 and report["unchanged"] == 1


def test_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PROVBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "HF_HUB_DISABLE_TELEMETRY": "1"}
    bases = tmp_path / "bad.toml"
    bases.write_text('[[family]]\nname = "x"\nmodels = ["not a repo id"]\n')
    for args in (["index", "show", "org/absent"], ["index", "seed", "--file", str(bases)]):
        proc = subprocess.run(
            [sys.executable, "-m", "provbot.bot.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_the_shipped_known_base_list_covers_the_major_families() -> None:
    from provbot.bot.index.known import load_known_bases

    families = {f.name: f.models for f in load_known_bases()}
    assert {"llama", "qwen", "mistral", "gemma", "deepseek", "phi"} <= set(families)
    assert "Qwen/Qwen3.5-397B-A17B" in families["qwen"]
    assert all(m.count("/") == 1 for ms in families.values() for m in ms)


def test_candidates_command(model_zoo, family_paths, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run("index", "add", *(family_paths[n] for n in ("base", "a", "b")), "--database", db).exit_code == 0
    child = str(model_zoo.path("llama_linear"))
    report = json.loads(run("index", "candidates", child, "--database", db, "--json").output)
    assert {Path(r).name for r in report["chosen"]} == {"llama_a", "llama_b", "llama_base"}
    text = run("index", "candidates", child, "--database", db).output
    assert "exact family" in text and "* candidate" in text
    unknown = run("index", "candidates", str(model_zoo.path("minilm")), "--database", db).output
    assert "inconclusive: family not indexed" in unknown
