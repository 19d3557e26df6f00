"""Errors that provbot reports to people as one clear line.

Every failure a user can cause (bad files, missing repos, network faults) raises a subclass of
:class:`ProvbotError`; the CLI prints ``error: <message>`` and exits non-zero, never a traceback.
"""

from __future__ import annotations


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
