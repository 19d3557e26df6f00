"""Packed int4 checkpoints made by the real tools' own packers (AutoGPTQ, AutoAWQ, compressed-tensors,
bitsandbytes).

Each function takes a float state dict and returns ``(tensors, quantization_config)``: the linear
projections inside the layers quantized (min-max round-to-nearest per group, the scales and zeros
a calibration would also produce) and packed by the tool, every other tensor as it was. The tools
need CUDA only for their kernels and calibration, not for packing, which is why they can run here.

* AutoGPTQ 0.7.1: ``QuantLinear.pack`` of its ``qlinear_cuda_old`` module. The package's
  ``__init__`` imports transformers-4 APIs, so the module file is loaded on its own.
* AutoAWQ 0.2.9: ``WQLinear_GEMM.from_linear`` (and ``dequantize_gemm`` as its reference decoder).
* compressed-tensors: ``PackedQuantizationCompressor.compress`` (and ``decompress``).
* bitsandbytes: ``quantize_4bit`` and ``QuantState.as_dict(packed=True)``, the tensors transformers
  saves for a ``Linear4bit`` (and ``dequantize_4bit``); its CPU backend does both.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType

import torch

GROUP = 32


def _is_projection(name: str, w: torch.Tensor) -> bool:
    return w.dim() == 2 and name.endswith("_proj.weight") and ".layers." in f".{name}"


def _minmax(w: torch.Tensor, group: int, bits: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric per-group scale and zero ``[out, groups]``: ``w ~ scale * (q - zero)``, q in 0..2^bits-1."""
    g = w.reshape(w.shape[0], -1, group)
    lo, hi = g.amin(-1).clamp(max=0), g.amax(-1).clamp(min=0)
    scale = ((hi - lo) / (2**bits - 1)).clamp(min=1e-8)
    return scale, torch.round(-lo / scale).clamp(0, 2**bits - 1)


def int4_round_trip(w: torch.Tensor, group: int = GROUP) -> torch.Tensor:
    """``w`` quantized to asymmetric int4 per group of ``group`` inputs (the scales and zeros the
    packers here get) and decoded again: the values an int4 checkpoint of ``w`` holds."""
    scale, zero = _minmax(w.to(torch.float32), group)
    g = w.to(torch.float32).reshape(w.shape[0], -1, group)
    q = torch.clamp(torch.round(g / scale[..., None]) + zero[..., None], 0, 15)
    return ((q - zero[..., None]) * scale[..., None]).reshape(w.shape)


@cache
def _autogptq_qlinear() -> ModuleType:
    spec = importlib.util.find_spec("auto_gptq")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("auto-gptq is not installed (make install puts it in .venv)")
    path = Path(next(iter(spec.submodule_search_locations))) / "nn_modules" / "qlinear" / "qlinear_cuda_old.py"
    mod_spec = importlib.util.spec_from_file_location("autogptq_qlinear_cuda_old", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def _linear(w: torch.Tensor) -> torch.nn.Linear:
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight.data = w.detach().to(torch.float32).clone()
    return lin


def gptq_linear(w: torch.Tensor, group: int = GROUP, bits: int = 4):  # noqa: ANN201
    """AutoGPTQ's ``QuantLinear`` holding ``w`` packed (fp16 scales, as its checkpoints store them)."""
    lin = _linear(w)
    scale, zero = _minmax(lin.weight.data, group, bits)
    ql = _autogptq_qlinear().QuantLinear(bits, group, w.shape[1], w.shape[0], bias=False)
    ql.pack(lin, scale, zero, torch.arange(w.shape[1]) // group)
    return ql.half()


def _pack_state(
    state: dict[str, torch.Tensor], pack: Callable[[torch.Tensor], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    out = {}
    for name, w in state.items():
        if _is_projection(name, w):
            stem = name.removesuffix(".weight")
            out.update({f"{stem}.{k}": v.contiguous() for k, v in pack(w).items()})
        else:
            out[name] = w
    return out


def gptq_state(
    state: dict[str, torch.Tensor], group: int = GROUP, bits: int = 4
) -> tuple[dict[str, torch.Tensor], dict]:
    """GPTQ (v1 format) checkpoint tensors of ``state`` and their ``quantization_config``."""

    def pack(w: torch.Tensor) -> dict[str, torch.Tensor]:
        ql = gptq_linear(w, group, bits)
        return {"qweight": ql.qweight, "qzeros": ql.qzeros, "scales": ql.scales, "g_idx": ql.g_idx.to(torch.int32)}

    return _pack_state(state, pack), {
        "quant_method": "gptq",
        "bits": bits,
        "group_size": group,
        "desc_act": False,
        "sym": False,
        "checkpoint_format": "gptq",
    }


def awq_state(state: dict[str, torch.Tensor], group: int = GROUP) -> tuple[dict[str, torch.Tensor], dict]:
    """AWQ (GEMM) checkpoint tensors of ``state`` and their ``quantization_config``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AutoAWQ announces its deprecation on import
        from awq.modules.linear.gemm import WQLinear_GEMM

    def pack(w: torch.Tensor) -> dict[str, torch.Tensor]:
        lin = _linear(w)
        scale, zero = _minmax(lin.weight.data, group)
        q = WQLinear_GEMM.from_linear(lin, 4, group, scales=scale.T.contiguous(), zeros=zero.T.contiguous())
        return {"qweight": q.qweight, "qzeros": q.qzeros, "scales": q.scales}

    return _pack_state(state, pack), {
        "quant_method": "awq",
        "bits": 4,
        "group_size": group,
        "version": "gemm",
        "zero_point": True,
    }


def awq_rescale(model: torch.nn.Module, seed: int, sigma: float = 0.4, fold: bool = True) -> torch.nn.Module:
    """``model`` (a transformers Llama) with AWQ's per-channel input scaling applied in place, as
    AutoAWQ applies its searched scales: for each group AutoAWQ's Llama model names (the norm
    before q/k/v, v_proj before o_proj when their shapes allow, the norm before gate/up, up_proj
    before down_proj), its ``apply_scale`` multiplies the inputs of the group's linears by ``s``
    and divides the feeding norm or rows by ``s``. The scales are ``exp(N(0, sigma))`` drawn from
    ``seed`` instead of searched on calibration data (which needs a GPU and a dataset).

    ``fold=False`` keeps the feeding norms and rows as they were: the same scales, not folded,
    which changes what the network computes (a learned per-channel scaling, not AWQ).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AutoAWQ announces its deprecation on import
        from awq.models.llama import LlamaAWQForCausalLM
        from awq.quantize.scale import apply_scale
        from awq.utils.module import get_op_name

    g = torch.Generator().manual_seed(seed)
    for layer in model.model.layers:
        feats = {k: None for k in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj")}
        for group in LlamaAWQForCausalLM.get_layers_for_scaling(layer, feats, {}):
            prev, linears = group["prev_op"], group["layers"]
            scales = torch.exp(sigma * torch.randn(linears[0].in_features, generator=g))
            kept = {k: v.clone() for k, v in prev.state_dict().items()}
            apply_scale(layer, [(get_op_name(layer, prev), [get_op_name(layer, m) for m in linears], scales)])
            if not fold:
                prev.load_state_dict(kept)
    return model


def awq_dequantized(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group: int = GROUP
) -> torch.Tensor:
    """AutoAWQ's own decoding of a packed AWQ weight, as ``[out, in]`` float32."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from awq.utils.packing_utils import dequantize_gemm
    return dequantize_gemm(qweight, qzeros, scales, 4, group).to(torch.float32).T.contiguous()


def _ct_scheme(bits: int, symmetric: bool, group: int | None):  # noqa: ANN202
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    args = QuantizationArgs(
        num_bits=bits, type="int", symmetric=symmetric, strategy="group" if group else "channel", group_size=group
    )
    return QuantizationScheme(targets=["Linear"], weights=args)


def compressed_state(
    state: dict[str, torch.Tensor], bits: int = 4, symmetric: bool = True, group: int | None = GROUP
) -> tuple[dict[str, torch.Tensor], dict]:
    """compressed-tensors ``pack-quantized`` checkpoint tensors of ``state`` and their config."""
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.quantization.utils import calculate_qparams

    scheme = _ct_scheme(bits, symmetric, group)

    def pack(w: torch.Tensor) -> dict[str, torch.Tensor]:
        w = w.to(torch.float32)
        g = w.reshape(w.shape[0], -1, group or w.shape[1])
        scale, zero = calculate_qparams(g.amin(-1), g.amax(-1), scheme.weights)
        sd = PackedQuantizationCompressor.compress(
            {"weight": w, "weight_scale": scale, "weight_zero_point": zero}, scheme
        )
        return dict(sd)

    config = QuantizationConfig(config_groups={"group_0": scheme}, format="pack-quantized").model_dump(mode="json")
    return _pack_state(state, pack), config


def compressed_decompressed(
    parts: dict[str, torch.Tensor], bits: int = 4, symmetric: bool = True, group: int | None = GROUP
) -> torch.Tensor:
    """compressed-tensors' own decoding of one packed weight (``parts`` keyed ``weight_packed`` ...)."""
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor

    return PackedQuantizationCompressor.decompress(dict(parts), _ct_scheme(bits, symmetric, group))["weight"].to(
        torch.float32
    )


def bnb_state(
    state: dict[str, torch.Tensor], quant_type: str = "nf4", nested: bool = True
) -> tuple[dict[str, torch.Tensor], dict]:
    """bitsandbytes 4-bit checkpoint tensors of ``state`` (as transformers saves ``Linear4bit``) and
    their ``quantization_config``: ``quantize_4bit`` and ``QuantState.as_dict(packed=True)``."""
    import bitsandbytes.functional as bnb

    out = {}
    for name, w in state.items():
        if _is_projection(name, w):
            q, qs = bnb.quantize_4bit(
                w.to(torch.float32).contiguous(), blocksize=64, quant_type=quant_type, compress_statistics=nested
            )
            out[name] = q
            out.update({f"{name}.{k}": v.contiguous() for k, v in qs.as_dict(packed=True).items()})
        else:
            out[name] = w
    return out, {
        "quant_method": "bitsandbytes",
        "load_in_4bit": True,
        "bnb_4bit_quant_type": quant_type,
        "bnb_4bit_use_double_quant": nested,
    }


def bnb_dequantized(tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """bitsandbytes' own decoding of weight ``name`` from checkpoint ``tensors``."""
    import bitsandbytes.functional as bnb

    qs = bnb.QuantState.from_dict(
        {k.removeprefix(name + "."): v for k, v in tensors.items() if k.startswith(name + ".")},
        device=torch.device("cpu"),
    )
    return bnb.dequantize_4bit(tensors[name], qs).to(torch.float32)
