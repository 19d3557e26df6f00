"""A tiny registry of detectors, so the bot can run them by name.

>>> @register_detector("example")
... def example(child: str, **kwargs):
...     return child
>>> get_detector("example")("org/model"), "example" in available()
('org/model', True)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from provbot.detectors.errors import ConfigError

_DETECTORS: dict[str, Callable[..., Any]] = {}
# Modules that register detectors when imported; get_detector imports them on first use.
_PROVIDERS = ("provbot.detectors.weights", "provbot.detectors.identity")


def register_detector(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` under ``name`` (a second registration of the same name replaces it)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _DETECTORS[name] = fn
        return fn

    return deco


def _load_providers() -> None:
    for module in _PROVIDERS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a detector package not built yet must not break the others
            if exc.name != module:
                raise


def get_detector(name: str) -> Callable[..., Any]:
    """The detector registered as ``name``; ConfigError if there is none."""
    if name not in _DETECTORS:
        _load_providers()
    try:
        return _DETECTORS[name]
    except KeyError:
        raise ConfigError(f"unknown detector {name!r} (available: {', '.join(available()) or 'none'})") from None


def available() -> list[str]:
    """Names of the registered detectors, sorted."""
    _load_providers()
    return sorted(_DETECTORS)
