"""Where the packaged data folders live (config/, templates/), in a checkout or an installed wheel."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from provbot.detectors.resources import CONFIG_DIR, load_toml

#: The ``templates/`` folder, installed as the package data ``provbot.templates``.
TEMPLATES_DIR = Path(str(files("provbot.templates")))

__all__ = ["CONFIG_DIR", "TEMPLATES_DIR", "load_toml"]
