"""GGUF tensor names as Hugging Face names, and llama.cpp's rotary row order undone.

llama.cpp's converter renames every tensor (``blk.0.attn_q.weight`` for
``model.layers.0.self_attn.q_proj.weight``) with the ``gguf`` package's ``TensorNameMap``; this
module inverts that map for the file's own architecture. For Llama-family architectures the
converter also reorders the rows of the query and key projections (rotary halves interleaved per
head); :func:`gguf_row` says which GGUF row holds a given Hugging Face row, so samples are taken at
the same positions as in the safetensors original.

>>> hf_name("blk.3.attn_q.weight", "llama", 4)
'model.layers.3.self_attn.q_proj.weight'
>>> [gguf_row(r, head_dim=4) for r in range(8)]   # two heads of 4 rows
[0, 2, 1, 3, 4, 6, 5, 7]
"""

from __future__ import annotations

import re
from functools import lru_cache

#: Architectures whose q/k rows llama.cpp permutes (``LlamaModel.permute`` in convert_hf_to_gguf.py);
#: others (Qwen2/3, ...) keep the Hugging Face row order.
PERMUTED_ARCHITECTURES = frozenset({"llama", "llama4", "deci", "granite", "granitemoe"})

# The Hugging Face spellings preferred among the map's aliases: decoder-only checkpoints as
# transformers saves them.
_HF_STYLE = re.compile(r"^(model\.(layers\.\d+\.|embed_tokens$|norm$)|lm_head$)")


#: Module spellings preferred where several transformers models share one GGUF architecture:
#: llama.cpp converts Mixtral as ``llama`` with experts, and Mixtral names them ``block_sparse_moe``.
_PREFER = {("llama", True): ("block_sparse_moe.experts.", "block_sparse_moe.gate")}


@lru_cache(maxsize=64)
def _inverse(arch: str, n_blocks: int, moe: bool = False) -> dict[str, str]:
    import gguf

    by_name = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in by_name:
        return {}
    mapping = gguf.get_tensor_name_map(by_name[arch], n_blocks).mapping
    prefer = _PREFER.get((arch, moe), ())

    def preferred(key: str) -> bool:
        return any(p in key for p in prefer)

    out: dict[str, str] = {}
    for key, (_, gguf_name) in mapping.items():
        if not _HF_STYLE.match(key) or key.endswith("_no_perm"):
            continue
        if gguf_name not in out or (preferred(key) and not preferred(out[gguf_name])):
            out[gguf_name] = key
    return out


def hf_name(name: str, arch: str, n_blocks: int, moe: bool = False) -> str | None:
    """The Hugging Face name of GGUF tensor ``name``, or None when the map has none for ``arch``
    (``moe``: the model has routed experts)."""
    base, dot, suffix = name.rpartition(".")
    if not dot or suffix not in ("weight", "bias"):
        base, suffix = name, ""
    hf = _inverse(arch, n_blocks, moe).get(base)
    if hf is None:
        return None
    return f"{hf}.{suffix}" if suffix else hf


def rotary_heads(name: str, arch: str, n_head: int | None, n_head_kv: int | None) -> int | None:
    """Heads whose rows llama.cpp permuted in tensor ``name`` (a GGUF name), or None if not permuted."""
    if arch not in PERMUTED_ARCHITECTURES:
        return None
    if re.search(r"(^|\.)attn_q\.(weight|bias)$", name):
        return n_head
    if re.search(r"(^|\.)attn_k\.(weight|bias)$", name):
        return n_head_kv or n_head
    return None


def gguf_row(row: int, head_dim: int) -> int:
    """The GGUF row holding Hugging Face row ``row`` of a permuted q/k projection.

    The converter views each head's ``head_dim`` rows as (2, head_dim/2) and transposes them, so
    the two rotary halves interleave.
    """
    half = head_dim // 2
    head, rem = divmod(row, head_dim)
    i, j = divmod(rem, half)
    return head * head_dim + 2 * j + i
