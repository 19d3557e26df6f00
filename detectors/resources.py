"""The packaged data files: ``config/`` (default settings, prompt sets, alias tables, known bases).

They are found through :mod:`importlib.resources`, in a source checkout and in an installed wheel
alike, never relative to the working directory.

>>> (CONFIG_DIR / "default.toml").is_file()
True
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from provbot.detectors.errors import ConfigError

#: The ``config/`` folder, installed as the package data ``provbot.config``.
CONFIG_DIR = Path(str(files("provbot.config")))


def load_toml(path: Path, what: str) -> dict[str, Any]:
    """Read a TOML file of settings; ConfigError naming ``what`` when it is missing or malformed."""
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None
