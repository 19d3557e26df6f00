"""The installed layout: every package folder is mapped under the one ``provbot`` namespace."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_installed_under_provbot() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = tool["package-dir"]
    assert mapping == {
        "provbot.bot": "bot",
        "provbot.detectors": "detectors",
        "provbot.config": "config",
        "provbot.templates": "templates",
    }
    folders = {
        f"{name}{'.' + '.'.join(p.parent.relative_to(ROOT / folder).parts) if p.parent != ROOT / folder else ''}"
        for name, folder in mapping.items()
        for p in (ROOT / folder).rglob("__init__.py")
    }
    assert set(tool["packages"]) == folders


def test_no_generic_top_level_names_are_importable_from_elsewhere(tmp_path) -> None:
    import subprocess
    import sys

    code = (
        "import importlib.util as u, provbot.detectors, provbot.bot.cli; "
        "print(u.find_spec('bot'), u.find_spec('detectors'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None"]
