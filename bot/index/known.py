"""The known-base list (``config/known_bases.toml``): major open base families and their Hub ids.

>>> fams = load_known_bases()
>>> "qwen" in {f.name for f in fams}
True
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator

from provbot.bot.index.errors import KnownBasesError
from provbot.bot.paths import CONFIG_DIR
from provbot.detectors.hub import is_repo_id


class KnownFamily(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    models: list[str] = Field(min_length=1)

    @field_validator("models")
    @classmethod
    def _repo_ids(cls, models: list[str]) -> list[str]:
        for m in models:
            if not is_repo_id(m):
                raise ValueError(f"{m!r} is not a Hub repo id (org/name)")
        return models


class KnownBases(BaseModel):
    family: list[KnownFamily] = Field(default_factory=list)


def known_bases_path(setting: str | None = None) -> Path:
    """Resolve the setting: a bare file name lives in config/, anything else is a path."""
    if setting is None:
        from provbot.bot.settings import get_settings

        setting = get_settings().index.known_bases
    path = Path(setting).expanduser()
    return path if path.is_absolute() or path.parent != Path(".") else CONFIG_DIR / path


def load_known_bases(path: str | Path | None = None) -> list[KnownFamily]:
    """Parse and validate the list; a bad file raises :class:`KnownBasesError` in one line."""
    file = Path(path) if path is not None else known_bases_path()
    try:
        data = tomllib.loads(file.read_text())
        return KnownBases.model_validate(data).family
    except FileNotFoundError:
        raise KnownBasesError(f"known-base list {file} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise KnownBasesError(f"known-base list {file} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise KnownBasesError(f"known-base list {file}: {where}: {first['msg']}") from None
