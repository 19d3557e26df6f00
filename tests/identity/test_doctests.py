"""The examples in the identity modules' docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "provbot.detectors.identity",
    "provbot.detectors.identity.names",
    "provbot.detectors.identity.selfclaims",
    "provbot.detectors.identity.persona",
    "provbot.detectors.identity.card",
    "provbot.detectors.identity.aliases",
    "provbot.detectors.identity.stats",
    "provbot.detectors.identity.overlap",
    "provbot.detectors.identity.prompts",
    "provbot.detectors.identity.declared",
    "provbot.detectors.identity.resolve",
    "provbot.bot.service.publish.render",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
