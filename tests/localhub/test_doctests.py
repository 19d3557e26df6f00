"""The examples in the localhub modules' docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "provbot.bot.localhub",
    "provbot.bot.localhub.store",
    "provbot.bot.localhub.server",
    "provbot.bot.localhub.faults",
    "provbot.bot.localhub.webhooks",
    "provbot.bot.localhub.listing",
    "provbot.bot.localhub.tree",
    "provbot.bot.localhub.ranges",
    "provbot.bot.localhub.models",
    "provbot.bot.localhub.quota",
    "provbot.bot.localhub.virtual.spec",
    "provbot.bot.localhub.virtual.specfile",
    "provbot.bot.localhub.virtual.layouts",
    "provbot.bot.localhub.virtual.repo",
    "provbot.bot.localhub.virtual.q4k",
    "provbot.bot.localhub.virtual.gguf_file",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
