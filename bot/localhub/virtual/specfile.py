"""Spec files of virtual repos: one TOML or JSON file per family (one layout, several repos).

Example (``qwen3-moe-400b.toml``)::

    layout = "qwen3_moe"
    shards = 94
    params = { moe_intermediate = 2560 }

    [repos."virtual/qwen3-moe-400b"]
    recipe = { kind = "base", seed = 1 }

    [repos."virtual/qwen3-moe-400b-tune"]
    recipe = { kind = "delta", base = "virtual/qwen3-moe-400b", seed = 2 }
    card = { license = "apache-2.0" }

A ``gguf`` recipe (``{ kind = "gguf", of = "org/name", quant = "Q4_K" }``, Llama layouts only) makes
a repo holding one llama.cpp GGUF file of another repo of the file.

Anything wrong raises :class:`SpecError` with one line naming the file and the field.

>>> FamilySpec.model_validate({"layout": "llama", "repos": {"a/b": {"recipe": {"kind": "base", "seed": 1}}}}).shards
1
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from provbot.bot.localhub.store import NAME_RE
from provbot.bot.localhub.virtual.layouts import LAYOUTS
from provbot.bot.localhub.virtual.spec import BlendRecipe, DeltaRecipe, GgufRecipe, Recipe
from provbot.detectors.errors import ConfigError

SPEC_SUFFIXES = (".toml", ".json")
MAX_SPEC_BYTES = 1 << 20
GGUF_LAYOUTS = frozenset({"llama"})  # layouts whose llama.cpp names and metadata are generated


class SpecError(ConfigError):
    """A spec file that cannot be served (unreadable, malformed, or inconsistent)."""


class RepoSpec(BaseModel):
    """One virtual repo: how its values are made and its card's front matter."""

    model_config = ConfigDict(extra="forbid")
    recipe: Recipe
    card: dict[str, Any] = Field(default_factory=dict)


class FamilySpec(BaseModel):
    """Repos sharing one layout (so blends and deltas line up tensor by tensor)."""

    model_config = ConfigDict(extra="forbid")
    layout: str
    params: dict[str, int] = Field(default_factory=dict)
    shards: int = Field(default=1, ge=1, le=10_000)
    repos: dict[str, RepoSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> FamilySpec:
        layout = LAYOUTS.get(self.layout)
        if layout is None:
            raise ValueError(f"layout: unknown layout {self.layout!r} (known: {', '.join(sorted(LAYOUTS))})")
        unknown = sorted(set(self.params) - set(layout.parameters()))
        if unknown:
            raise ValueError(f"params: {self.layout} has no parameter {unknown[0]!r}")
        for key, value in self.params.items():
            if not 0 < value <= 1_000_000:
                raise ValueError(f"params.{key}: must be between 1 and 1000000")
        for repo_id, repo in self.repos.items():
            parts = repo_id.split("/")
            if len(parts) != 2 or not all(NAME_RE.match(p) and ".." not in p for p in parts):
                raise ValueError(f"repos.{repo_id}: not a repo id (org/name)")
            refs = _refs(repo.recipe)
            missing = [r for r in refs if r not in self.repos]
            if missing:
                raise ValueError(f"repos.{repo_id}.recipe: {missing[0]!r} is not a repo of this file")
            ggufs = [r for r in refs if isinstance(self.repos[r].recipe, GgufRecipe)]
            if ggufs:
                raise ValueError(f"repos.{repo_id}.recipe: {ggufs[0]!r} is a GGUF repo, not a safetensors one")
            if isinstance(repo.recipe, GgufRecipe) and self.layout not in GGUF_LAYOUTS:
                raise ValueError(f"repos.{repo_id}.recipe: no GGUF of layout {self.layout!r} (only llama)")
        self._check_cycles()
        return self

    def _check_cycles(self) -> None:
        done: set[str] = set()

        def visit(repo_id: str, path: tuple[str, ...]) -> None:
            if repo_id in path:
                raise ValueError(f"repos.{repo_id}.recipe: refers back to itself ({' -> '.join((*path, repo_id))})")
            if repo_id in done:
                return
            for ref in _refs(self.repos[repo_id].recipe):
                visit(ref, (*path, repo_id))
            done.add(repo_id)

        for repo_id in self.repos:
            visit(repo_id, ())


def _refs(recipe: object) -> list[str]:
    if isinstance(recipe, GgufRecipe):
        return [recipe.of]
    if isinstance(recipe, DeltaRecipe):
        return [recipe.base]
    if isinstance(recipe, BlendRecipe):
        return list(recipe.parts)
    return []


def load_spec(path: Path) -> FamilySpec:
    """Read and validate one spec file; SpecError (one line: file, field, what is wrong) otherwise."""
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except SpecError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read: {exc.__class__.__name__}") from None
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise SpecError(f"{path}: not valid {path.suffix[1:].upper()}: {_one_line(str(exc))}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a table at the top")
    try:
        return FamilySpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise SpecError(f"{path}: {where + ': ' if where else ''}{_one_line(msg)}") from None


def load_folder(folder: Path) -> dict[Path, FamilySpec]:
    """Every ``*.toml`` / ``*.json`` spec directly in ``folder``, by path (sorted)."""
    if not folder.is_dir():
        raise SpecError(f"{folder}: not a folder of virtual repo specs")
    specs = {p: load_spec(p) for p in sorted(folder.iterdir()) if p.suffix in SPEC_SUFFIXES and p.is_file()}
    seen: dict[str, Path] = {}
    for path, spec in specs.items():
        for repo_id in spec.repos:
            if repo_id in seen:
                raise SpecError(f"{path}: repos.{repo_id}: also defined in {seen[repo_id].name}")
            seen[repo_id] = path
    return specs


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
