"""The examples in the Hub client's docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["card", "client", "error_map", "models", "redirects", "repo_ids", "retry", "transport", "windows"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(f"provbot.detectors.hub.{name}"))
    assert result.failed == 0 and result.attempted > 0
