"""Errors of the identity detector, all one-line :class:`~provbot.detectors.errors.ProvbotError` subclasses."""

from __future__ import annotations

from provbot.detectors.errors import ProvbotError


class IdentityError(ProvbotError):
    """The identity test could not run: a model that does not load, an endpoint that misbehaves."""


class ModelLoadError(IdentityError):
    """Weights or tokenizer could not be loaded (no safetensors, a broken config, an unknown architecture)."""


class EndpointError(IdentityError):
    """A chat-completions endpoint kept failing or answered with something that is not chat-completions."""


class RequestBudgetError(EndpointError):
    """The run reached its request budget before every prompt was answered.

    ``partial`` holds the answers of the interrupted call (None where a chat got no answer), so that
    nothing already paid for is lost.
    """

    def __init__(self, message: str, partial: list[str | None] | None = None) -> None:
        super().__init__(message)
        self.partial = partial
