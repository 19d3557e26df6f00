"""The examples in the weight modules' docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "fit",
    "kernels",
    "relation",
    "byte_ranges",
    "sampling",
    "keys",
    "layers",
    "safetensors_format",
    "gguf_format",
    "gguf_names",
    "reader",
    "sources",
    "opening",
    "buffers",
    "packed",
    "packed.compressed",
    "scale_fit",
    "rescaled",
    "header_cache",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(f"provbot.detectors.weights.{name}"))
    assert result.attempted > 0 and result.failed == 0
