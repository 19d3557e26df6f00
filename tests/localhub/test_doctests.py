"""The examples in the localhub modules' docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["bot.localhub", "bot.localhub.store", "bot.localhub.server", "bot.localhub.faults",
           "bot.localhub.webhooks", "bot.localhub.listing", "bot.localhub.tree", "bot.localhub.ranges",
           "bot.localhub.models"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
