"""Architecture fingerprint: the config fields and tensor shapes that fix a model's weight layout.

Two keys come out of it:

- ``family_key``: hash of every canonical tensor name with its shape. Models with the same key can
  be compared tensor by tensor (copies, fine-tunes, most merges). The dtype and ``model_type`` are
  left out on purpose: a BF16 re-save of an F32 model, or a Mistral checkpoint relabelled as Llama,
  is still the same family.
- ``loose_key``: hash of the per-layer body with the layer and expert indices removed and only the
  hidden width of vocabulary tensors kept. It matches pruned or depth-upscaled models (same width,
  other depth) and vocabulary expansions (same body, larger vocabulary).

>>> from provbot.detectors.weights.safetensors_format import TensorMeta
>>> t = {"model.layers.0.mlp.up_proj.weight": TensorMeta("model.layers.0.mlp.up_proj.weight", "BF16", (8, 4), "m", 0, 64),
...      "model.embed_tokens.weight": TensorMeta("model.embed_tokens.weight", "BF16", (10, 4), "m", 64, 144)}
>>> fp = fingerprint({"model_type": "llama", "hidden_size": 4}, t)
>>> fp.layers, fp.vocab, len(fp.family_key)
(1, 10, 32)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from provbot.detectors.weights.keys import canonical_tensors, classify, is_scale_companion
from provbot.detectors.weights.safetensors_format import FLOAT_DTYPES

if TYPE_CHECKING:  # torch stays out of processes that only read the index
    from provbot.detectors.weights.safetensors_format import TensorMeta

#: Config fields that fix weight shapes (any that are present are kept, for display and checks).
ARCH_FIELDS = (
    "model_type",
    "architectures",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "moe_intermediate_size",
    "shared_expert_intermediate_size",
    "num_experts",
    "num_local_experts",
    "n_routed_experts",
    "n_shared_experts",
    "num_experts_per_tok",
    "vocab_size",
    "tie_word_embeddings",
    "max_position_embeddings",
    "n_embd",
    "n_layer",
    "n_head",
)

# Integer path segments (layer and expert indices) vanish from loose templates.
_INDEX_SEGMENT = re.compile(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)")


class Fingerprint(BaseModel):
    """What the index keeps about a model's architecture (small: no per-tensor list)."""

    family_key: str = Field(description="Exact-shape family: sha256 of canonical names and shapes (32 hex).")
    loose_key: str = Field(description="Partial-match family: width and body without depth or vocabulary.")
    arch: dict[str, Any] = Field(default_factory=dict, description="The shape-fixing config fields present.")
    tensors: int = Field(description="Number of tensors (quantization scales excluded).")
    params: int = Field(description="Number of parameters counted from the headers.")
    dtype: str | None = Field(None, description="The most common dtype by parameter count.")
    layers: int = Field(0, description="Number of distinct layer indices.")
    hidden: int | None = None
    vocab: int | None = Field(None, description="Rows of the input embedding.")
    quantized: bool = Field(False, description="Integer-packed weights (shapes are not the float shapes).")


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's config: multimodal wrappers nest it under ``text_config``."""
    inner = config.get("text_config")
    if isinstance(inner, dict):
        return {**{k: v for k, v in config.items() if k != "text_config"}, **inner}
    return config


def fingerprint(config: dict[str, Any], tensors: dict[str, TensorMeta], source: str = "model") -> Fingerprint:
    """Compute the fingerprint of a model from its config and its (raw-named) tensor headers."""
    canon = canonical_tensors(tensors, source)
    canon = {n: m for n, m in canon.items() if not is_scale_companion(n, canon)}
    cfg = text_config(config if isinstance(config, dict) else {})
    arch = {k: cfg[k] for k in ARCH_FIELDS if k in cfg and _jsonable(cfg[k])}

    exact = sorted((name, list(meta.shape)) for name, meta in canon.items())
    loose: set[tuple[str, tuple[int, ...]]] = set()
    layers: set[int] = set()
    vocab: int | None = None
    by_dtype: Counter[str] = Counter()
    for name, meta in canon.items():
        kind = classify(name)
        by_dtype[meta.dtype] += meta.numel
        if kind.layer is not None:
            layers.add(kind.layer)
        if kind.component in ("embedding", "head") and len(meta.shape) == 2:
            if kind.component == "embedding" and (vocab is None or meta.shape[0] > vocab):
                vocab = meta.shape[0]
            # Vocabulary size may change (expansion); the width may not.
            loose.add((kind.component, tuple(meta.shape[1:])))
        else:
            loose.add((_INDEX_SEGMENT.sub("*", name), tuple(meta.shape)))

    dtype = by_dtype.most_common(1)[0][0] if by_dtype else None
    hidden = cfg.get("hidden_size") or cfg.get("n_embd")
    return Fingerprint(
        family_key=_digest(exact),
        loose_key=_digest(sorted(loose)),
        arch=arch,
        tensors=len(canon),
        params=sum(by_dtype.values()),
        dtype=dtype,
        layers=len(layers),
        hidden=hidden if isinstance(hidden, int) else None,
        vocab=vocab
        if vocab is not None
        else (cfg.get("vocab_size") if isinstance(cfg.get("vocab_size"), int) else None),
        quantized=bool(dtype) and dtype not in FLOAT_DTYPES,
    )


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()[:32]


def _jsonable(value: object) -> bool:
    return isinstance(value, (str, int, float, bool)) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )
