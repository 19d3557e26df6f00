"""Real GGUF files for tests, written with llama.cpp's own ``gguf`` package the way its converter does.

Names come from ``gguf``'s TensorNameMap, q/k rows of Llama-family models are permuted as
``convert_hf_to_gguf.py`` permutes them, norms stay F32, and matrices are stored as the asked type:
F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 through ``gguf.quants.quantize``, Q4_K through the local Hub's
:func:`~provbot.bot.localhub.virtual.q4k.q4_k_blocks`
(the package decodes K-quants but does not write them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import gguf
import numpy as np

from provbot.bot.localhub.virtual.q4k import q4_k_blocks

PERMUTED = {"llama"}
# llama-quantize's per-tensor fallback when a row is not a whole number of 256-value K blocks.
_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter's q/k row order: each head's two rotary halves interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _merged_experts(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Routed experts stacked into one tensor per layer and projection, as llama.cpp stores them
    (``...experts.3.w1.weight`` of every expert -> ``...experts.w1.weight`` of shape (experts, rows, cols))."""
    import re

    out: dict[str, np.ndarray] = {}
    groups: dict[str, dict[int, np.ndarray]] = {}
    for name, value in tensors.items():
        m = re.match(r"^(.*\.experts)\.(\d+)\.(\w+)\.weight$", name)
        if m is None:
            out[name] = value
        else:
            groups.setdefault(f"{m[1]}.{m[3]}.weight", {})[int(m[2])] = value
    for name, by_id in groups.items():
        out[name] = np.stack([by_id[i] for i in sorted(by_id)])
    return out


def write_gguf(
    path: str | Path,
    tensors: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
    config: dict[str, int],
    arch: str = "llama",
    qtype: str = "Q8_0",
    raw_types: Mapping[str, str] | None = None,
) -> Path:
    """Write ``tensors`` (Hugging Face names, float arrays; a mapping, or pairs made one at a time so
    that only the stored blocks stay in memory) to one GGUF file as llama.cpp would.

    ``config`` holds ``num_hidden_layers``, ``num_attention_heads``, ``num_key_value_heads``,
    ``hidden_size``, ``intermediate_size``. ``raw_types`` stores the named tensors as zero blocks of
    another ggml type (one this package cannot quantize to, such as IQ4_NL).
    """
    path = Path(path)
    n_layers = config["num_hidden_layers"]
    names = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), n_layers)
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(n_layers)
    w.add_context_length(config.get("max_position_embeddings", 256))
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(config["num_attention_heads"])
    w.add_head_count_kv(config.get("num_key_value_heads", config["num_attention_heads"]))
    w.add_file_type(0)
    n_head, n_kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    experts = config.get("num_local_experts") or config.get("num_experts")
    if experts:
        w.add_expert_count(experts)
        w.add_expert_used_count(config.get("num_experts_per_tok", 2))
    pairs = _merged_experts(tensors).items() if isinstance(tensors, Mapping) else tensors
    for hf, value in pairs:
        name = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf
        x = np.ascontiguousarray(value, dtype=np.float32)
        if arch in PERMUTED and hf.endswith("q_proj.weight"):
            x = llama_permute(x, n_head)
        elif arch in PERMUTED and hf.endswith("k_proj.weight"):
            x = llama_permute(x, n_kv)
        t = qtype
        if qtype in _FALLBACK and x.shape[-1] % 256:  # as llama-quantize does for rows that fill no K block
            t = _FALLBACK[qtype]
        if raw_types and hf in raw_types:
            q = gguf.GGMLQuantizationType[raw_types[hf]]
            size, nbytes = gguf.GGML_QUANT_SIZES[q]
            w.add_tensor(name, np.zeros((x.shape[0], x.shape[1] // size * nbytes), np.uint8), raw_dtype=q)
        elif x.ndim == 1 or t == "F32":
            w.add_tensor(name, x)
        elif t == "F16":
            w.add_tensor(name, x.astype(np.float16))
        elif t == "Q4_K":
            blocks = q4_k_blocks(x).reshape(x.shape[0], -1)
            w.add_tensor(name, blocks, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
        else:
            q = gguf.GGMLQuantizationType[t]
            w.add_tensor(name, gguf.quants.quantize(x, q), raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def gguf_of(
    model_dir: Path, out_dir: Path, qtype: str, arch: str | None = None, raw_types: Mapping[str, str] | None = None
) -> Path:
    """A folder holding the GGUF of a safetensors model folder (``<name>-<qtype>.gguf``), as a Hub
    GGUF repo holds it: no safetensors, no config.json."""
    import json

    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    tensors: dict[str, np.ndarray] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors |= {k: v.astype(np.float32) for k, v in load_file(f).items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    arch = arch or {"mixtral": "llama"}.get(config["model_type"], config["model_type"])  # as convert_hf_to_gguf does
    write_gguf(out_dir / f"{model_dir.name}-{qtype}.gguf", tensors, config, arch, qtype, raw_types)
    return out_dir
