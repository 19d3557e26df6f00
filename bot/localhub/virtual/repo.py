"""Virtual repos built from a spec: generated shards, index, config.json and card, no disk.

Headers, the index and the small files are built once per repo and kept; tensor bytes are
computed per range by :class:`~provbot.bot.localhub.virtual.safetensors_file.VirtualSafetensors`.

>>> spec = FamilySpec.model_validate({"layout": "llama", "params": {"layers": 1, "hidden": 8, "heads": 2,
...     "kv_heads": 1, "intermediate": 16, "vocab": 32}, "shards": 2,
...     "repos": {"v/a": {"recipe": {"kind": "base", "seed": 1}}}})
>>> repo = build_family(spec)["v/a"]
>>> sorted(repo.files)[:2]
['README.md', 'config.json']
>>> repo.parameters
1112
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from provbot.bot.localhub.virtual.gguf_file import VirtualGguf
from provbot.bot.localhub.virtual.layouts import LAYOUTS, Tensor, shard
from provbot.bot.localhub.virtual.safetensors_file import VirtualSafetensors
from provbot.bot.localhub.virtual.spec import BlendRecipe, DeltaRecipe, GgufRecipe
from provbot.bot.localhub.virtual.specfile import FamilySpec
from provbot.bot.localhub.virtual.values import Recipes

INDEX = "model.safetensors.index.json"


class BytesFile:
    """A small generated file held in memory (config, index, card)."""

    header: dict[str, Any] | None = None

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.fingerprint = hashlib.sha256(data).hexdigest()

    def read(self, start: int, stop: int) -> bytes:
        return self.data[start:stop]


class ComputedFile:
    """A generated weights file (safetensors shard or GGUF); its ETag stands for the spec that computes it."""

    def __init__(
        self, body: VirtualSafetensors | VirtualGguf, fingerprint: str, header: dict[str, Any] | None = None
    ) -> None:
        self.body = body
        self.header = header  # the safetensors header; None for a GGUF
        self.size = body.size
        self.fingerprint = fingerprint

    def read(self, start: int, stop: int) -> bytes:
        return self.body.read(start, stop)


VirtualFile = BytesFile | ComputedFile


@dataclass
class VirtualRepo:
    """A repo's files by name, its commit sha and its safetensors parameter count."""

    repo_id: str
    sha: str
    files: dict[str, VirtualFile] = field(default_factory=dict)
    parameters: int = 0


def build_family(spec: FamilySpec) -> dict[str, VirtualRepo]:
    """Every repo of a spec, sharing one list of tensors and one sharding."""
    layout = LAYOUTS[spec.layout]
    tensors = list(layout.tensors(**spec.params))
    shards = shard(tensors, spec.shards)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    total = sum(2 * math.prod(shape) for _, shape in tensors)
    index = {
        "metadata": {"total_size": total},
        "weight_map": {t: name for name, part in zip(names, shards, strict=True) for t, _ in part},
    }
    index_file = BytesFile(json.dumps(index, indent=2).encode())
    config_file = BytesFile(json.dumps(layout.config(**spec.params), indent=2).encode())
    recipes: Recipes = {repo_id: repo.recipe for repo_id, repo in spec.repos.items()}
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    # One header per shard for the whole family: the repos differ only in the values.
    first = next(iter(spec.repos))
    bodies = [VirtualSafetensors(first, recipes, part) for part in shards]
    out: dict[str, VirtualRepo] = {}
    for repo_id, repo in spec.repos.items():
        # The commit sha and ETags stand for everything the bytes are computed from.
        digest = hashlib.sha256(f"{canonical}\0{repo_id}".encode()).hexdigest()
        if isinstance(repo.recipe, GgufRecipe):
            out[repo_id] = _gguf_repo(repo_id, digest, repo.card, repo.recipe, recipes, tensors, spec)
            continue
        files: dict[str, VirtualFile] = {
            "README.md": BytesFile(_card(repo_id, repo.card, repo.recipe)),
            "config.json": config_file,
            INDEX: index_file,
        }
        for name, shared in zip(names, bodies, strict=True):
            body = copy.copy(shared)
            body.repo = repo_id
            fingerprint = hashlib.sha256(f"{digest}\0{name}".encode()).hexdigest()
            files[name] = ComputedFile(body, fingerprint, shared.header)
        out[repo_id] = VirtualRepo(repo_id, digest[:40], files, total // 2)
    return out


def _gguf_repo(
    repo_id: str,
    digest: str,
    card: dict[str, Any],
    recipe: GgufRecipe,
    recipes: Recipes,
    tensors: list[Tensor],
    spec: FamilySpec,
) -> VirtualRepo:
    """A GGUF repo as llama.cpp users publish them: a card and one ``<model>-<quant>.gguf``, no config."""
    config = LAYOUTS[spec.layout].config(**spec.params)
    arch_keys = {
        "block_count": config["num_hidden_layers"],
        "context_length": 8192,  # Llama 3's; the layouts do not model it
        "embedding_length": config["hidden_size"],
        "feed_forward_length": config["intermediate_size"],
        "attention.head_count": config["num_attention_heads"],
        "attention.head_count_kv": config["num_key_value_heads"],
        "rope.dimension_count": config["hidden_size"] // config["num_attention_heads"],
        "vocab_size": config["vocab_size"],
    }
    model = recipe.of.split("/")[1]
    body = VirtualGguf(recipe.of, recipes, tensors, arch_keys, model)
    name = f"{model}-{recipe.quant}.gguf"
    files: dict[str, VirtualFile] = {
        "README.md": BytesFile(_card(repo_id, card, recipe)),
        name: ComputedFile(body, hashlib.sha256(f"{digest}\0{name}".encode()).hexdigest()),
    }
    return VirtualRepo(repo_id, digest[:40], files, body.parameters)


_KINDS = {BlendRecipe: "merge", DeltaRecipe: "fine-tune", GgufRecipe: "GGUF quantization"}


def _card(repo_id: str, card: dict[str, Any], recipe: object) -> bytes:
    """A model card: the spec's front matter (nothing disclosed unless the spec says so)."""
    front = yaml.safe_dump(card, sort_keys=True).strip() if card else ""
    kind = _KINDS.get(type(recipe), "model")
    body = f"# {repo_id.split('/')[1]}\n\nA virtual {kind} served by the local Hub.\n"
    return (f"---\n{front}\n---\n\n{body}" if front else body).encode()
