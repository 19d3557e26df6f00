"""What an install needs: declared dependencies, package data, pinned install lines, Docker files.

The wheel itself is built, installed into a fresh venv and run by ``.ci/wheel-check`` (CI runs it
after the tests); these checks read the files that decide what it holds.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TOOL = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


RUNTIME = {_name(r) for r in PROJECT["dependencies"]}
EXTRAS = {extra: {_name(r) for r in reqs} for extra, reqs in PROJECT["optional-dependencies"].items()}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level) for every absolute import in ``path``."""
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    guarded = {id(n) for node in tree.body if isinstance(node, ast.Try) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        eager = id(node) in top_level and id(node) not in guarded
        out += [(n.split(".")[0], eager) for n in names]
    return out


def _sources() -> list[Path]:
    return [p for folder in ("bot", "detectors") for p in sorted((ROOT / folder).rglob("*.py"))]


def test_every_import_is_a_declared_dependency() -> None:
    dists = packages_distributions()
    optional = set().union(*EXTRAS.values()) - RUNTIME
    problems = []
    for path in _sources():
        for module, eager in _imports(path):
            if module in sys.stdlib_module_names or module in ("__future__", "provbot"):
                continue
            names = {d.lower().replace("_", "-") for d in dists.get(module, [])}
            where = path.relative_to(ROOT)
            if names & RUNTIME:
                continue
            if names & optional:
                if eager:  # an extra's package is imported where it is used, never at import time
                    problems.append(f"{where}: {module} (an extra) imported at module level")
                continue
            problems.append(f"{where}: {module} ({sorted(names) or 'not installed'}) is not declared")
    assert not problems, "\n".join(problems)


def test_demo_only_dependencies_are_an_extra() -> None:
    assert "httptools" not in RUNTIME
    assert "httptools" in EXTRAS["demo"]
    assert "provbot[demo,ray]" in PROJECT["optional-dependencies"]["test"]
    # The bot's own web server (webhook, /healthz, /metrics) stays in the runtime.
    assert {"uvicorn", "starlette", "pyyaml", "platformdirs"} <= RUNTIME


def test_torch_is_a_range_and_every_install_line_pins_the_cpu_wheel() -> None:
    (torch,) = [r for r in PROJECT["dependencies"] if _name(r) == "torch"]
    assert "==" not in torch and "<" in torch and ">=" in torch
    files = [
        "Makefile",
        ".ci/wheel-check",
        "Dockerfile",
        "README.md",
        *[f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")],
    ]
    lines = [
        (f, line.strip())
        for f in files
        for line in (ROOT / f).read_text().splitlines()
        if re.search(r"pip install\b", line) and re.search(r"provbot|-e\s+\.|\.whl|WHEEL", line)
    ]
    assert any(f == "Dockerfile" for f, _ in lines) and any(f == ".ci/wheel-check" for f, _ in lines)
    unpinned = [f"{f}: {line}" for f, line in lines if "torch==2.13.0" not in line]
    assert not unpinned, "\n".join(unpinned)


def test_every_data_file_matches_a_package_data_pattern() -> None:
    patterns = TOOL["package-data"]
    dirs = {package: ROOT / folder for package, folder in TOOL["package-dir"].items()}
    missing = []
    for folder in ("config", "templates", "bot/db/migrations"):
        for path in (ROOT / folder).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            rel = path.relative_to(ROOT)
            top = rel.parts[0]
            package = next(p for p, d in dirs.items() if d.name == top)
            package = ".".join([package, *rel.parts[1:-1]])
            if not any(fnmatch.fnmatch(path.name, pat) for pat in patterns.get(package, [])):
                missing.append(f"{rel} (package {package})")
    assert not missing, "not in the wheel: " + ", ".join(missing)


def test_dockerfile_builds_the_wheel_and_runs_it_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in text.splitlines() if line and not line[0].isspace() and line[0] != "#"]
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) == 2 and " AS build" in froms[0] and "-slim" in froms[1]
    assert "pip wheel" in text and "COPY --from=build" in text
    assert "-e ." not in text and "pip install -e" not in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in instructions and "/healthz" in text
    assert "PROVBOT_DATA_DIR=/data" in text and "VOLUME /data" in text
    assert instructions[-1] == "CMD"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_compose_file_names_real_settings_and_requires_its_secrets() -> None:
    from provbot.bot.settings import Settings

    text = (ROOT / "deploy" / "compose.yaml").read_text()
    compose = yaml.safe_load(text)
    env = compose["services"]["bot"]["environment"]
    for key in env:
        assert key.startswith("PROVBOT_"), key
        path = key.removeprefix("PROVBOT_").lower().split("__")
        model: type = Settings
        for part in path:
            assert part in model.model_fields, f"{key}: no setting {part!r}"
            model = model.model_fields[part].annotation  # type: ignore[assignment]
    for secret in ("PROVBOT_HUB_TOKEN", "PROVBOT_BOT__WEBHOOK_SECRET", "POSTGRES_PASSWORD"):
        assert re.search(r"\$\{" + secret + r":\?", text), f"{secret} is not required"
    assert env["PROVBOT_DATABASE_URL"].startswith("postgresql+psycopg://")


@pytest.mark.parametrize("name", ["bot", "detectors", "config", "templates"])
def test_no_generic_top_level_name_is_packaged(name: str) -> None:
    assert all(p == "provbot" or p.startswith("provbot.") for p in TOOL["packages"])
    assert all(k.startswith("provbot.") for k in TOOL["package-dir"])


def test_readme_and_docs_links_resolve() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
    readme = (ROOT / "README.md").read_text()
    assert "docs/benchmarks.md" in readme and "docs/deploy.md" in readme
    assert "PROVBOT_HUB_ENDPOINT" in readme and "HF_ENDPOINT" in readme and "PROVBOT_DATA_DIR" in readme
