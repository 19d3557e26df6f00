"""Small repo builders for the local Hub tests: tiny safetensors files made with numpy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from safetensors.numpy import save

from provbot.bot.localhub.models import ServerOptions
from provbot.bot.localhub.server import LocalHub

CARD = """---
base_model:
- org/base-a
- org/base-b
base_model_relation: merge
tags: [mergekit, merge]
license: apache-2.0
---
# A merged model
"""


def tensors(seed: int = 0, layers: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"model.embed_tokens.weight": rng.standard_normal((16, 8)).astype(np.float32)}
    for i in range(layers):
        out[f"model.layers.{i}.mlp.up_proj.weight"] = rng.standard_normal((12, 8)).astype(np.float16)
    return out


def single_repo(seed: int = 0) -> dict[str, bytes | str]:
    """A one-file model: 16*8 F32 + 2*12*8 F16 parameters, a card and a config."""
    return {
        "model.safetensors": save(tensors(seed), metadata={"format": "pt"}),
        "config.json": json.dumps({"model_type": "llama", "hidden_size": 8}),
        "README.md": CARD,
    }


def sharded_repo(seed: int = 0) -> dict[str, bytes | str]:
    """The same tensors split over two shards with an index."""
    t = tensors(seed)
    names = sorted(t)
    first, second = names[:1], names[1:]
    files: dict[str, bytes | str] = {
        "model-00001-of-00002.safetensors": save({n: t[n] for n in first}),
        "model-00002-of-00002.safetensors": save({n: t[n] for n in second}),
        "config.json": json.dumps({"model_type": "llama"}),
    }
    weight_map = {n: "model-00001-of-00002.safetensors" for n in first}
    weight_map |= {n: "model-00002-of-00002.safetensors" for n in second}
    files["model.safetensors.index.json"] = json.dumps({"metadata": {"total_size": 123}, "weight_map": weight_map})
    return files


def llama_family(params: dict[str, int], shards: int, repos: str) -> str:
    """A spec file of virtual repos: the llama layout at ``params``, then ``repos`` (TOML tables)."""
    inline = ", ".join(f"{k} = {v}" for k, v in params.items())
    return f'layout = "llama"\nshards = {shards}\nparams = {{ {inline} }}\n{repos}'


@contextmanager
def serve_virtual(factory: pytest.TempPathFactory, spec: str) -> Iterator[LocalHub]:
    """A running local Hub serving the virtual repos of one spec file (redirecting resolves)."""
    folder = factory.mktemp("specs")
    (folder / "family.toml").write_text(spec)
    hub = LocalHub(factory.mktemp("hub"), ServerOptions(redirect_resolve=True))
    hub.add_virtual(folder)
    with hub:
        yield hub
