"""What every generation backend offers the identity runner.

>>> isinstance(EchoBackend(), Backend)
True
>>> EchoBackend().generate([[{"role": "user", "content": "hi"}]], SamplingSettings(), seed=0)
['hi']
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field

from provbot.detectors.identity.prompts import SamplingSettings

Message = dict[str, str]


class BackendInfo(BaseModel):
    """Recorded in results: which backend answered and how."""

    kind: str = Field(description="'local' or 'openai'.")
    model: str = Field(description="Model reference (local path, repo id or the served model name).")
    revision: str | None = Field(None, description="Commit or content fingerprint of the weights, when known.")
    device: str | None = None
    dtype: str | None = None
    endpoint: str | None = None
    forced_template_default: bool = Field(
        False, description="Local only: the chat template inserts its own system prompt when none is given."
    )


@runtime_checkable
class Backend(Protocol):
    """Turns chats into answers. ``None`` marks a chat that failed (after the backend's own retries)."""

    def info(self) -> BackendInfo: ...

    def generate(
        self, conversations: list[list[Message]], sampling: SamplingSettings, seed: int
    ) -> list[str | None]: ...


class EchoBackend:
    """A trivial backend that answers with the last user message (documentation and unit tests only)."""

    def info(self) -> BackendInfo:
        return BackendInfo(kind="echo", model="echo")

    def generate(self, conversations: list[list[Message]], sampling: SamplingSettings, seed: int) -> list[str | None]:
        return [conv[-1]["content"] for conv in conversations]
