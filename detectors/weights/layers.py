"""Passthrough ("frankenmerge") detection: match each child layer to a (candidate, layer) it copies.

The main sample only covers tensors every model has, so a depth-upscaled child's extra layers are
never compared there. Here each model gets its own small plan over all its per-layer matrices;
element positions depend only on the tensor's shape and count (``sampling.element_ranges``), so
layer ``L`` of the child and layer ``M`` of a parent are sampled at the same positions.

>>> from provbot.detectors.weights.layers import suffix_of
>>> suffix_of("layers.3.self_attn.q_proj.weight")
(3, 'self_attn.q_proj.weight')
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from provbot.detectors.weights.keys import classify, kind_columns
from provbot.detectors.weights.safetensors_format import TensorMeta
from provbot.detectors.weights.sampling import Meta, SamplePlan, TensorPlan, element_ranges

_LAYER = re.compile(r"^(.*?(?:layers|layer|h|blocks|block))\.(\d+)\.(.+)$")
# A copied layer matches to float rounding; a fine-tuned one is ~1e-3 or more away in relative L2.
COPY_TOLERANCE = 1e-4
PER_TENSOR_ELEMENTS = 512


def suffix_of(name: str) -> tuple[int, str] | None:
    """``(layer, name within the layer)`` for per-layer tensors, else None."""
    m = _LAYER.match(name)
    return (int(m.group(2)), m.group(3)) if m else None


def layer_count(metas: Mapping[str, object]) -> int:
    """Number of layer blocks (highest layer index + 1) among canonical tensor names.

    >>> layer_count({"layers.0.mlp.up_proj.weight": None, "layers.11.input_layernorm.weight": None, "norm.weight": None})
    12
    """
    # In bulk, and cached by name list: planning has numbered these names already.
    layers = kind_columns(tuple(metas)).layer
    return int(layers.max()) + 1 if layers.size and layers.max() >= 0 else 0


def layer_plans(
    models: Mapping[str, Mapping[str, Meta]], per_tensor: int = PER_TENSOR_ELEMENTS
) -> dict[str, SamplePlan]:
    """One plan per model over its per-layer 2-D float tensors (routed experts excluded: cost)."""
    plans: dict[str, SamplePlan] = {}
    for ref, metas in models.items():
        tensors = []
        for name, meta in sorted(metas.items()):
            kind = classify(name)
            if suffix_of(name) is None or len(meta.shape) < 2 or kind.expert is not None:
                continue
            if not isinstance(meta, TensorMeta) or meta.dtype not in ("F32", "F16", "BF16", "F64"):
                continue  # packed weights are not matched layer by layer
            n = min(per_tensor, math.prod(meta.shape))
            tensors.append(TensorPlan(name, kind, tuple(meta.shape), tuple(element_ranges(meta.shape, n)), {ref: meta}))
        plans[ref] = SamplePlan(tensors, [ref], None)
    return plans


@dataclass
class LayerSource:
    layer: int  # child layer
    ref: str | None  # candidate it was copied from (None: no exact match)
    source_layer: int | None
    distance: float  # median relative L2 distance of the best match


def match_layers(child: dict[str, torch.Tensor], candidates: dict[str, dict[str, torch.Tensor]]) -> list[LayerSource]:
    """For each child layer, the (candidate, layer) whose tensors it equals, by median distance."""
    by_layer: dict[int, dict[str, torch.Tensor]] = {}
    for name, v in child.items():
        s = suffix_of(name)
        if s:
            by_layer.setdefault(s[0], {})[s[1]] = v
    index: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    for ref, tensors in candidates.items():
        for name, v in tensors.items():
            s = suffix_of(name)
            if s:
                index.setdefault((ref, s[1]), {})[s[0]] = v
    out = []
    for layer in sorted(by_layer):
        scores: dict[tuple[str, int], list[float]] = {}
        for suffix, cv in by_layer[layer].items():
            for ref in candidates:
                for m, pv in index.get((ref, suffix), {}).items():
                    if pv.numel() != cv.numel():
                        continue
                    d = float(torch.linalg.vector_norm(cv - pv) / torch.linalg.vector_norm(pv).clamp_min(1e-30))
                    scores.setdefault((ref, m), []).append(d)
        if not scores:
            out.append(LayerSource(layer, None, None, math.inf))
            continue
        best = min(scores, key=lambda key: sorted(scores[key])[len(scores[key]) // 2])
        dist = sorted(scores[best])[len(scores[best]) // 2]
        if dist <= COPY_TOLERANCE:
            out.append(LayerSource(layer, best[0], best[1], dist))
        else:
            out.append(LayerSource(layer, None, None, dist))
    return out


def is_passthrough(matches: list[LayerSource], parent_layers: dict[str, int]) -> bool:
    """Every child layer is an exact copy, and not simply all layers of one parent in order."""
    if not matches or any(m.ref is None for m in matches):
        return False
    refs = Counter(m.ref for m in matches)
    identity = (
        len(refs) == 1
        and all(m.source_layer == m.layer for m in matches)
        and matches[0].ref is not None
        and parent_layers.get(matches[0].ref) == len(matches)
    )
    return not identity
