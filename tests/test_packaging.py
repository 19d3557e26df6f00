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
    # Every folder: setuptools treats data folders (config/prompts) as packages too.
    folders = {
        ".".join([name, *d.relative_to(ROOT / folder).parts])
        for name, folder in mapping.items()
        for d in [ROOT / folder, *(ROOT / folder).rglob("*")]
        if d.is_dir() and d.name != "__pycache__" and any(f.is_file() for f in d.iterdir())
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
