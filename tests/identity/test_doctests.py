"""The examples in the identity modules' docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["detectors.identity", "detectors.identity.names", "detectors.identity.selfclaims",
           "detectors.identity.persona", "detectors.identity.card", "detectors.identity.aliases",
           "detectors.identity.stats", "detectors.identity.overlap", "detectors.identity.prompts",
           "detectors.identity.declared", "detectors.identity.resolve", "bot.service.reporting"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
