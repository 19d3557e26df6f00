"""Typed Hub answers: every JSON the client reads is validated into one of these, or refused.

Field names follow huggingface_hub's own classes (``ModelInfo.card_data``, ``Sibling.rfilename``);
the Hub's camelCase keys are aliases. Unknown keys are ignored; a known key of the wrong type makes
the whole answer a :class:`~provbot.detectors.errors.BadAnswerError`.

>>> info = ModelInfo.model_validate({"id": "org/x", "sha": "ab" * 20, "siblings": [{"rfilename": "config.json"}],
...                                  "createdAt": "2026-01-02T03:04:05.000Z", "cardData": {"base_model": "org/base"}})
>>> info.created_at.year, info.filenames, info.declared.base_models
(2026, {'config.json'}, ['org/base'])
>>> try:
...     Sibling.model_validate({"rfilename": "../../etc/passwd"})
... except ValueError:
...     print("refused")
refused
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from provbot.detectors.hub.card import Declared, declared_from_hub
from provbot.detectors.hub.repo_ids import is_repo_id


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def _safe_path(name: str) -> bool:
    parts = name.split("/")
    return (
        0 < len(name) <= 1000
        and not name.startswith("/")
        and "\\" not in name
        and "\x00" not in name
        and all(p not in ("", ".", "..") for p in parts)
    )


class Sibling(_Answer):
    """One file of a repo; paths that could leave a folder (``..``, absolute) are refused."""

    rfilename: str
    size: int | None = Field(None, ge=0)

    @field_validator("rfilename")
    @classmethod
    def _safe(cls, value: str) -> str:
        if not _safe_path(value):
            raise ValueError(f"unsafe file name {value[:200]!r}")
        return value


class SafetensorsCounts(_Answer):
    """Parameter counts the Hub read from the safetensors headers: ``{dtype: count}`` and the total."""

    parameters: dict[str, int] = Field(default_factory=dict)
    total: int | None = Field(None, ge=0)


class GgufSummary(_Answer):
    """What the Hub read from a repo's GGUF file: total parameters, architecture, context length."""

    total: int | None = Field(None, ge=0)
    architecture: str | None = None
    context_length: int | None = Field(None, ge=0)


class ModelInfo(_Answer):
    """A model repo as ``GET /api/models/{repo}[/revision/{rev}]`` or a listing entry describes it."""

    id: str
    sha: str | None = Field(None, pattern=r"^[0-9a-f]{40}$")
    siblings: list[Sibling] | None = None
    created_at: datetime | None = Field(None, alias="createdAt")
    last_modified: datetime | None = Field(None, alias="lastModified")
    private: bool | None = None
    gated: bool | Literal["auto", "manual"] | None = None
    safetensors: SafetensorsCounts | None = None
    gguf: GgufSummary | None = None
    card_data: dict[str, Any] | None = Field(None, alias="cardData")
    tags: list[str] = Field(default_factory=list)
    config: dict[str, Any] | None = None
    base_models: dict[str, Any] | None = Field(None, alias="baseModels")
    downloads: int | None = None
    likes: int | None = None

    @field_validator("id")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        if not is_repo_id(value):
            raise ValueError(f"not a repo id: {value[:200]!r}")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def filenames(self) -> set[str]:
        """Paths of the repo's files (empty when the answer did not list them)."""
        return {s.rfilename for s in self.siblings or []}

    @property
    def declared(self) -> Declared:
        """Lineage the card (or the Hub's model tree) declares."""
        return declared_from_hub(self.card_data, self.tags, self.base_models)

    @property
    def parameter_total(self) -> int | None:
        """Parameters the Hub counted in the safetensors weights, else in the GGUF model (GGUF-only repos)."""
        if self.safetensors is not None and self.safetensors.total is not None:
            return self.safetensors.total
        return self.gguf.total if self.gguf is not None else None


def _author_name(value: Any) -> Any:
    # The Hub gives {"name": ..., "fullname": ...} (or an id for deleted users).
    return value.get("name") if isinstance(value, dict) else value


class Discussion(_Answer):
    """One entry of a repo's discussion list."""

    num: int = Field(ge=0)
    title: str = ""
    status: str = "open"
    author: str | None = None
    is_pull_request: bool = Field(False, alias="isPullRequest")
    created_at: datetime | None = Field(None, alias="createdAt")

    @field_validator("author", mode="before")
    @classmethod
    def _author(cls, value: Any) -> Any:
        return _author_name(value)


class DiscussionEvent(_Answer):
    """One event of a discussion: a comment (``content`` is its raw markdown), a status change, ..."""

    id: str
    type: str
    created_at: datetime | None = Field(None, alias="createdAt")
    author: str | None = None
    content: str | None = None
    hidden: bool = False
    edited: bool = False

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = dict(value)
        out["author"] = _author_name(value.get("author"))
        data = value.get("data")
        if isinstance(data, dict):
            latest = data.get("latest")
            if isinstance(latest, dict):
                out.setdefault("content", latest.get("raw"))
            out.setdefault("hidden", bool(data.get("hidden", False)))
            out.setdefault("edited", bool(data.get("edited", False)))
        return out


class DiscussionDetails(Discussion):
    """A discussion with its events (``GET .../discussions/{num}``)."""

    events: list[DiscussionEvent] = Field(default_factory=list)


class DiscussionPage(_Answer):
    discussions: list[Discussion]
    count: int = Field(0, ge=0)
    start: int = Field(0, ge=0)


class OrgMember(_Answer):
    user: str | None = None
    name: str | None = None
