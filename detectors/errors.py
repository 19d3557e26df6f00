"""Errors that provbot reports to people as one clear line.

Every failure a user can cause (bad files, missing repos, network faults) raises a subclass of
:class:`ProvbotError`; the CLI prints ``error: <message>`` and exits non-zero, never a traceback.
"""

from __future__ import annotations

from datetime import datetime


class ProvbotError(Exception):
    """Base class: the message is shown to the user as is, so make it one self-explanatory line."""

    exit_code: int = 2


class WeightFormatError(ProvbotError):
    """A safetensors file or index is malformed (bad header, bad JSON, offsets past the end, ...)."""


class ShapeMismatchError(ProvbotError):
    """Models cannot be compared: no tensor in common, or incompatible shapes."""


class SourceError(ProvbotError):
    """A model could not be reached or read (local path or Hub repo)."""


class NotFoundError(SourceError):
    """The repo, revision, directory or file does not exist (HTTP 404)."""


class AccessDeniedError(SourceError):
    """The Hub refused access (HTTP 401/403: gated, private, or a bad token)."""


class RemoteError(SourceError):
    """Network fault or server error that persisted after retries."""


class ConfigError(ProvbotError):
    """Settings or a configuration file are invalid."""


class UnreachableError(RemoteError):
    """The Hub could not be reached at all (connection refused, unknown host, offline mode); not retried."""


class RateLimitedError(RemoteError):
    """The Hub's rate limit resets later than the command's deadline allows waiting.

    ``reset_at`` (a UTC datetime) says when asking again is worthwhile; ``retry_after`` is the same
    in seconds from when the error was raised. Picklable, so it survives a trip through Ray.
    """

    def __init__(self, message: str, retry_after: float = 0.0, reset_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reset_at = reset_at

    def __reduce__(self) -> tuple[type[RateLimitedError], tuple[str, float, datetime | None]]:
        return (type(self), (str(self), self.retry_after, self.reset_at))


class BadAnswerError(RemoteError):
    """The Hub answered something provbot cannot use: not JSON, the wrong shape, too big, a redirect loop."""
