"""Decoding packed int4 weights against the real tools' own packers and decoders.

GPTQ is packed by AutoGPTQ and checked against its own CPU forward pass; AWQ is packed by AutoAWQ
and checked against AutoAWQ's ``dequantize_gemm``; compressed-tensors against its ``decompress``;
bitsandbytes 4-bit against its ``dequantize_4bit``.
"""

from __future__ import annotations

import pytest
import torch

from provbot.detectors.errors import WeightFormatError
from provbot.detectors.weights.packed import PackedMeta, decode, with_packed
from provbot.detectors.weights.safetensors_format import TensorMeta
from provbot.detectors.weights.sampling import packed_weights
from tests.support import packing

_DTYPES = {
    torch.uint8: "U8",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.float16: "F16",
    torch.float32: "F32",
    torch.bfloat16: "BF16",
}


def _table(state: dict[str, torch.Tensor]) -> dict[str, TensorMeta]:
    """Metas for ``state`` as if stored one after another in one file (only the shapes matter here)."""
    out, at = {}, 8
    for k, v in state.items():
        n = v.numel() * v.element_size()
        out[k] = TensorMeta(k, _DTYPES[v.dtype], tuple(v.shape), "model.safetensors", at, at + n)
        at += n
    return out


def _read(state: dict[str, torch.Tensor]):  # noqa: ANN202
    """What ``with_packed`` reads small tensors with (a source's ``read_ranges`` in a scan)."""
    return lambda metas: [state[m.name].contiguous().view(torch.uint8).numpy().tobytes() for m in metas]


def _decode_all(state: dict[str, torch.Tensor], qconfig: dict) -> dict[str, torch.Tensor]:
    table = with_packed(_table(state), {"quantization_config": qconfig}, _read(state))
    return {
        name: decode(
            m, {role: state[p.name].contiguous().view(torch.uint8).numpy().tobytes() for role, p in m.parts.items()}
        )
        for name, m in table.items()
        if isinstance(m, PackedMeta)
    }


def _weight(out: int = 64, inp: int = 96, seed: int = 0) -> torch.Tensor:
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed)) * 0.05


def test_gptq_decodes_as_autogptq_computes() -> None:
    w = _weight()
    ql = packing.gptq_linear(w)
    state = {"m.qweight": ql.qweight, "m.qzeros": ql.qzeros, "m.scales": ql.scales, "m.g_idx": ql.g_idx.to(torch.int32)}
    got = _decode_all(state, {"quant_method": "gptq", "bits": 4, "group_size": 32})["m.weight"]
    assert got.shape == (64, 96)
    x = torch.randn(5, 96, generator=torch.Generator().manual_seed(1)).half()
    want = ql(x).float()  # AutoGPTQ's own CPU path unpacks qweight/qzeros itself
    assert torch.allclose(x.float() @ got.T, want, atol=2e-3, rtol=1e-2)
    rel = ((got - w).norm() / w.norm()).item()
    assert 0.01 < rel < 0.15  # int4 noise: close to w, never w itself


def test_gptq_shapes_alone_are_enough_and_v2_zeros_are_not_offset() -> None:
    w = _weight()
    ql = packing.gptq_linear(w)
    state = {"m.qweight": ql.qweight, "m.qzeros": ql.qzeros, "m.scales": ql.scales}
    v1 = _decode_all(state, {})["m.weight"]  # no config, no g_idx: groups of in / groups
    v2 = _decode_all(state, {"quant_method": "gptq", "checkpoint_format": "gptq_v2"})["m.weight"]
    x = torch.randn(3, 96).half()
    assert torch.allclose(x.float() @ v1.T, ql(x).float(), atol=2e-3, rtol=1e-2)
    # v2 stores zeros as they are: read as v2, every zero is one lower, every weight one scale higher
    scales = ql.scales.float().repeat_interleave(32, dim=0).T
    assert torch.allclose(v2 - v1, scales, atol=1e-3)


def test_gptq_act_order_groups_follow_g_idx() -> None:
    # 8 inputs, 2 groups assigned alternately; every code 3, zeros stored as 0 (1 in v1): w = s_g * 2
    qweight = torch.full((1, 8), 0x33333333, dtype=torch.int32)
    qzeros = torch.zeros(2, 1, dtype=torch.int32)
    scales = torch.stack([torch.full((8,), 1.0), torch.full((8,), 10.0)]).half()
    g_idx = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1], dtype=torch.int32)
    got = _decode_all({"m.qweight": qweight, "m.qzeros": qzeros, "m.scales": scales, "m.g_idx": g_idx}, {})["m.weight"]
    assert got[0].tolist() == [2.0, 20.0] * 4


def test_awq_decodes_as_autoawq_does() -> None:
    w = _weight()
    state, qconfig = packing.awq_state({"layers.0.mlp.up_proj.weight": w})
    got = _decode_all(state, qconfig)["layers.0.mlp.up_proj.weight"]
    want = packing.awq_dequantized(
        state["layers.0.mlp.up_proj.qweight"],
        state["layers.0.mlp.up_proj.qzeros"],
        state["layers.0.mlp.up_proj.scales"],
    )
    assert torch.allclose(got, want, rtol=2e-3, atol=1e-5)  # AutoAWQ multiplies in fp16, provbot in fp32
    assert ((got - w).norm() / w.norm()).item() < 0.15


@pytest.mark.parametrize(
    ("bits", "symmetric", "group"),
    [(4, True, 32), (4, False, 32), (8, True, None), (3, False, 32), (2, False, 32), (1, False, 32)],
    ids=["w4-sym-group", "w4-asym-group", "w8-channel", "w3-asym-straddling-words", "w2-asym", "w1-asym"],
)
def test_compressed_tensors_decodes_as_decompress_does(bits: int, symmetric: bool, group: int | None) -> None:
    w = _weight()
    state, qconfig = packing.compressed_state({"layers.0.mlp.up_proj.weight": w}, bits, symmetric, group)
    got = _decode_all(state, qconfig)["layers.0.mlp.up_proj.weight"]
    parts = {k.removeprefix("layers.0.mlp.up_proj."): v for k, v in state.items()}
    want = packing.compressed_decompressed(parts, bits, symmetric, group)
    assert torch.equal(got, want)


def test_formats_are_told_apart_and_undecodable_layouts_stay_listed() -> None:
    w = _weight()
    gptq, _ = packing.gptq_state({"layers.0.a_proj.weight": w})
    awq, _ = packing.awq_state({"layers.0.b_proj.weight": w})
    ct, ct_config = packing.compressed_state({"layers.0.c_proj.weight": w})
    table = with_packed(_table({**gptq, **awq, **ct}), {})
    found = {n: m.format for n, m in table.items() if isinstance(m, PackedMeta)}
    # compressed-tensors needs its config for the bits: without it the weight stays raw, and listed
    assert found == {"layers.0.a_proj.weight": "gptq", "layers.0.b_proj.weight": "awq"}
    assert "layers.0.c_proj.weight_packed" in packed_weights(table)
    assert "layers.0.a_proj.qweight" not in table and "layers.0.b_proj.scales" not in table
    # a config naming another format, or a repacked layout (Marlin), decodes nothing
    assert not any(
        isinstance(m, PackedMeta)
        for m in with_packed(_table(gptq), {"quantization_config": {"quant_method": "awq"}}).values()
    )
    marlin = {"quantization_config": {"quant_method": "gptq", "checkpoint_format": "marlin"}}
    assert not any(isinstance(m, PackedMeta) for m in with_packed(_table(gptq), marlin).values())
    # and a bits count the shapes deny
    bad_bits = {"quantization_config": {"quant_method": "gptq", "bits": 8}}
    assert not any(isinstance(m, PackedMeta) for m in with_packed(_table(gptq), bad_bits).values())
    assert isinstance(with_packed(_table(ct), {"quantization_config": ct_config})["layers.0.c_proj.weight"], PackedMeta)


def test_hostile_parts_are_format_errors() -> None:
    w = _weight()
    ql = packing.gptq_linear(w)
    state = {
        "m.qweight": ql.qweight,
        "m.qzeros": ql.qzeros,
        "m.scales": ql.scales,
        "m.g_idx": torch.full((96,), 7, dtype=torch.int32),
    }  # 3 groups: 7 is none of them
    with pytest.raises(WeightFormatError, match="group index outside 0..2"):
        _decode_all(state, {})
    ct, config = packing.compressed_state({"layers.0.c_proj.weight": w})
    ct["layers.0.c_proj.weight_shape"] = torch.tensor([64, 95])
    with pytest.raises(WeightFormatError, match=r"says \[64, 95\]"):
        _decode_all(ct, config)
    table = with_packed(_table(ct), {"quantization_config": config})
    meta = table["layers.0.c_proj.weight"]
    blobs = {role: b"\0" * (p.nbytes - 4) for role, p in meta.parts.items()}
    with pytest.raises(WeightFormatError, match="expected"):
        decode(meta, blobs)


@pytest.mark.parametrize(("quant_type", "nested"), [("nf4", True), ("nf4", False), ("fp4", True)])
def test_bitsandbytes_4bit_decodes_as_bitsandbytes_does(quant_type: str, nested: bool) -> None:
    w = _weight()
    state, qconfig = packing.bnb_state({"layers.0.mlp.up_proj.weight": w}, quant_type, nested)
    got = _decode_all(state, qconfig)["layers.0.mlp.up_proj.weight"]
    assert torch.equal(got, packing.bnb_dequantized(state, "layers.0.mlp.up_proj.weight"))
    assert ((got - w).norm() / w.norm()).item() < 0.15


def test_bitsandbytes_needs_its_state_read_and_a_broken_one_is_an_error() -> None:
    state, qconfig = packing.bnb_state({"layers.0.mlp.up_proj.weight": _weight()})
    unread = with_packed(_table(state), {"quantization_config": qconfig})  # nothing to read the state with
    assert not any(isinstance(m, PackedMeta) for m in unread.values())
    assert packed_weights(unread) == ["layers.0.mlp.up_proj.weight"]
    key = "layers.0.mlp.up_proj.weight.quant_state.bitsandbytes__nf4"
    broken = {**state, key: torch.frombuffer(bytearray(b'{"shape": [64, 95], "blocksize": 64}'), dtype=torch.uint8)}
    with pytest.raises(WeightFormatError, match="do not hold a 64x95 weight"):
        _decode_all(broken, qconfig)
    broken[key] = torch.frombuffer(bytearray(b"\xff\xfe not json"), dtype=torch.uint8)
    with pytest.raises(WeightFormatError, match="not a bitsandbytes quant_state"):
        _decode_all(broken, qconfig)
