"""The CLI as people meet it: readable help, refused choices, empty states, no dependency noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from provbot.bot.cli import app

REPO_ROOT = Path(__file__).resolve().parents[2]


def _paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:  # noqa: ANN001
    out = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        out += _paths(sub, (*prefix, name))
    return out


COMMANDS = _paths(get_command(app))


def _provbot(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "provbot.bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
    )


def test_every_command_is_walked() -> None:
    assert {("scan",), ("index", "add"), ("review", "list"), ("localhub", "serve"), ("demo",)} <= set(COMMANDS)


def test_help_shows_metavars_people_type() -> None:
    # One process renders every command's help (a subprocess each would take half a minute); the
    # rendering is the one `provbot ... --help` prints, patched at import of provbot.bot.cli.
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from provbot.bot.cli import app\n"
        f"for path in {COMMANDS!r}:\n"
        "    out = CliRunner().invoke(app, [*path, '--help'], terminal_width=160)\n"
        "    assert out.exit_code == 0, (path, out.output)\n"
        "    print('=== ' + ' '.join(path)); print(out.output)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    pages = proc.stdout.split("=== ")[1:]
    assert len(pages) == len(COMMANDS)
    for page in pages:
        for bad in ("<bool>", "<list[", "<str>", "<int", "<float", "<path>", "{child}", "{"):
            assert bad not in page, f"{bad!r} in the help of {page.splitlines()[0]!r}:\n{page}"
    scan = next(p for p in pages if p.startswith("scan\n"))
    assert "scan [OPTIONS] CHILD" in scan and "REF" in scan and " N " in scan
    add = next(p for p in pages if p.startswith("index add\n"))
    assert "REF..." in add


def test_help_of_a_real_process() -> None:
    proc = _provbot("scan", "--help")
    assert proc.returncode == 0 and "CHILD" in proc.stdout and "<bool>" not in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["review", "list", "--status", "bogus"],
        ["audit", "--kind", "bogus"],
        ["run", "--mode", "bogus"],
        ["index", "crawl", "--sort", "bogus"],
        ["identity", "x", "--backend", "bogus"],
        ["identity", "x", "--device", "bogus"],
    ],
)
def test_invalid_choices_are_refused_before_the_database_opens(args: list[str], tmp_path: Path) -> None:
    proc = _provbot(*args, env={"PROVBOT_DATA_DIR": str(tmp_path / "data")})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for"), proc.stderr
    assert args[-1] in lines[0]
    assert not (tmp_path / "data").exists()


def test_choice_lists_match_the_service() -> None:
    from provbot.bot.commands import identity, index, service
    from provbot.bot.db.models_bot import FindingStatus
    from provbot.bot.index.crawl import SORTS
    from provbot.bot.service.audit import AuditKind
    from provbot.bot.settings import BotSettings
    from provbot.detectors.options import IdentityOptions

    assert service.STATUSES == (*(s.value for s in FindingStatus), "all")
    assert service.AUDIT_KINDS == get_args(AuditKind)
    assert service.MODES == get_args(BotSettings.model_fields["mode"].annotation)
    assert index.CRAWL_SORTS == SORTS
    assert all(IdentityOptions(backend=b).backend == b for b in identity.BACKENDS)


def test_empty_states_say_so_and_what_next(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    runner = CliRunner()
    audit = runner.invoke(app, ["audit", "--database", url])
    assert audit.exit_code == 0 and "audit log is empty" in audit.output and "provbot run" in audit.output
    filtered = runner.invoke(app, ["audit", "--kind", "scan", "--database", url])
    assert "no audit entries match" in filtered.output
    listed = runner.invoke(app, ["index", "list", "--database", url])
    assert listed.exit_code == 0 and "index is empty" in listed.output and "provbot index add" in listed.output
    failures = runner.invoke(app, ["index", "list", "--failures", "--database", url])
    assert "no indexing failures" in failures.output
    review = runner.invoke(app, ["review", "list", "--database", url])
    assert review.exit_code == 0 and "no pending findings" in review.output and "--status all" in review.output
    assert runner.invoke(app, ["audit", "--json", "--database", url]).output.strip() == "[]"


def test_an_unindexed_family_suggests_index_add(model_zoo, tmp_path: Path) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    proc = _provbot("scan", str(model_zoo.path("llama_a")), env={"PROVBOT_DATABASE_URL": url})
    assert proc.returncode == 0, proc.stderr
    assert "inconclusive" in proc.stdout and "provbot index add" in proc.stdout


def test_the_first_run_says_where_the_database_is(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"PROVBOT_DATA_DIR": str(data)}
    first = _provbot("index", "list", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"created the database {data / 'provbot.db'}" in first.stderr
    assert (data / "provbot.db").is_file() and not (tmp_path / "var").exists()
    again = _provbot("index", "list", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "created" not in again.stderr


def test_demo_and_localhub_need_the_demo_extra() -> None:
    code = (
        "import sys; sys.modules['httptools'] = None; sys.argv = ['provbot', *sys.argv[1:]]\n"
        "from provbot.bot.cli import main; main()"
    )
    for args in (["demo"], ["localhub", "serve", "--root", "."]):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == f"error: provbot {args[0]} needs the demo extra: pip install 'provbot[demo]'"


def test_ordinary_commands_import_no_optional_packers(model_zoo) -> None:  # noqa: ANN001
    a, b, merge = (str(model_zoo.path(n)) for n in ("llama_a", "llama_b", "llama_linear"))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "provbot.bot.cli", "scan", merge, "-p", a, "-p", b, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert not imported & {"awq", "auto_gptq", "bitsandbytes", "mergekit", "compressed_tensors", "ray", "httptools"}
    noise = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert noise == [], noise


def test_identity_prints_no_dependency_noise() -> None:
    fixture = REPO_ROOT / "tests" / "identity" / "fixtures" / "rio-merge"
    proc = _provbot("identity", str(fixture), "--limit", "1", "--samples", "1", "--cpu-threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""  # no "Loading weights" bar, no deprecation notices
    assert proc.stdout.lstrip().startswith("{")
