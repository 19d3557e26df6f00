"""Errors of the candidate-parent index, each a one-line :class:`~provbot.detectors.errors.ProvbotError`."""

from __future__ import annotations

from provbot.detectors.errors import ProvbotError


class IndexError_(ProvbotError):
    """Base of index errors (named with a trailing underscore so it never shadows the builtin)."""


class SketchFormatError(IndexError_):
    """A stored sketch is malformed or of a version this code cannot read."""


class NotIndexedError(IndexError_):
    """The model asked for is not in the index."""


class KnownBasesError(IndexError_):
    """The known-base list (config/known_bases.toml) is missing or invalid."""
