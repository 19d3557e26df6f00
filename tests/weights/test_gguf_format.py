"""GGUF files written by llama.cpp's own package: header, names, rotary order and block decoding."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from provbot.detectors.errors import WeightFormatError
from provbot.detectors.weights.gguf_format import (
    MAX_HEADER_BYTES,
    ArraySummary,
    block_span,
    decode_blocks,
    parse_header,
)
from provbot.detectors.weights.gguf_names import gguf_row, hf_name, rotary_heads
from tests.support.gguf_files import llama_permute, q4_k_blocks, write_gguf

CONFIG = {
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_size": 256,
    "intermediate_size": 512,
}


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, f, kv = CONFIG["hidden_size"], CONFIG["intermediate_size"], 2 * 64
    out = {"model.embed_tokens.weight": rng.normal(size=(300, h)), "model.norm.weight": rng.normal(size=h)}
    for i in range(CONFIG["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {
            p + "self_attn.q_proj.weight": rng.normal(size=(h, h)),
            p + "self_attn.k_proj.weight": rng.normal(size=(kv, h)),
            p + "self_attn.v_proj.weight": rng.normal(size=(kv, h)),
            p + "self_attn.o_proj.weight": rng.normal(size=(h, h)),
            p + "mlp.gate_proj.weight": rng.normal(size=(f, h)),
            p + "mlp.up_proj.weight": rng.normal(size=(f, h)),
            p + "mlp.down_proj.weight": rng.normal(size=(h, f)),
            p + "input_layernorm.weight": rng.normal(size=h),
            p + "post_attention_layernorm.weight": rng.normal(size=h),
        }
    out["lm_head.weight"] = rng.normal(size=(300, h))
    return {k: v.astype(np.float32) for k, v in out.items()}


def _open(path: Path) -> tuple[bytes, object]:
    raw = path.read_bytes()
    return raw, parse_header(lambda s, e: raw[s:e], path.name, len(raw))


@pytest.mark.parametrize("qtype", ["F32", "F16", "Q8_0", "Q4_0", "Q5_1", "Q4_K"])
def test_header_matches_llama_cpp_reader(tmp_path: Path, qtype: str) -> None:
    path = write_gguf(tmp_path / f"m-{qtype}.gguf", _tensors(), CONFIG, qtype=qtype)
    raw, h = _open(path)
    ref = gguf.GGUFReader(path)
    assert h.metadata["general.architecture"] == "llama"
    assert h.get_int("llama.block_count") == 2 and h.get_int("llama.attention.head_count_kv") == 2
    assert [t.name for t in h.tensors] == [t.name for t in ref.tensors]
    for ours, theirs in zip(h.tensors, ref.tensors):
        assert ours.ggml_type == theirs.tensor_type.name
        assert ours.dims == tuple(int(d) for d in theirs.shape)
        assert ours.start == theirs.data_offset and ours.end - ours.start == theirs.n_bytes
    matrices = {t.ggml_type for t in h.tensors if len(t.dims) == 2}
    assert matrices == {qtype}


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K"])
def test_block_reads_decode_like_the_whole_tensor(tmp_path: Path, qtype: str) -> None:
    path = write_gguf(tmp_path / "m.gguf", _tensors(1), CONFIG, qtype=qtype)
    raw, h = _open(path)
    rng = np.random.default_rng(3)
    for t in h.tensors:
        whole = decode_blocks(raw[t.start : t.end], t.ggml_type)
        assert whole.size == t.numel
        for _ in range(20):
            a = int(rng.integers(0, t.numel - 1))
            b = int(rng.integers(a + 1, min(t.numel, a + 700) + 1))
            start, end, skip = block_span(t, a, b)
            got = decode_blocks(raw[start:end], t.ggml_type)[skip : skip + b - a]
            np.testing.assert_array_equal(got, whole[a:b])


@pytest.mark.parametrize(("qtype", "tolerance"), [("F16", 1e-3), ("Q8_0", 0.01), ("Q4_K", 0.12), ("Q4_0", 0.15)])
def test_decoded_values_are_the_original_weights(tmp_path: Path, qtype: str, tolerance: float) -> None:
    """Names mapped back, rotary rows put back in place: the decoded GGUF is the original, within the
    quantization's error (relative L2)."""
    tensors = _tensors(2)
    path = write_gguf(tmp_path / "m.gguf", tensors, CONFIG, qtype=qtype)
    raw, h = _open(path)
    n_head, n_kv = h.get_int("llama.attention.head_count"), h.get_int("llama.attention.head_count_kv")
    seen = set()
    for t in h.tensors:
        name = hf_name(t.name, "llama", 2)
        assert name in tensors, t.name
        seen.add(name)
        values = decode_blocks(raw[t.start : t.end], t.ggml_type).reshape(t.shape)
        heads = rotary_heads(t.name, "llama", n_head, n_kv)
        if heads:
            rows = values.shape[0]
            values = values[[gguf_row(r, rows // heads) for r in range(rows)]]
        want = tensors[name]
        err = np.linalg.norm(values - want) / np.linalg.norm(want)
        assert err < tolerance, (name, err)
    assert seen == set(tensors)


def test_rotary_rows_invert_the_converters_permutation() -> None:
    w = np.arange(32 * 3).reshape(32, 3)
    for heads in (1, 2, 4):
        permuted = llama_permute(w, heads)
        hd = 32 // heads
        for r in range(32):
            np.testing.assert_array_equal(permuted[gguf_row(r, hd)], w[r])
    assert rotary_heads("blk.0.attn_q.weight", "qwen2", 4, 2) is None  # Qwen2 keeps the HF order
    assert rotary_heads("blk.0.attn_k.weight", "llama", 4, 2) == 2


def test_q4_k_packer_round_trips_through_llama_cpp_decoder() -> None:
    x = np.random.default_rng(5).normal(size=4 * 256).astype(np.float32)
    y = gguf.quants.dequantize(q4_k_blocks(x), gguf.GGMLQuantizationType.Q4_K).reshape(-1)
    assert np.linalg.norm(y - x) / np.linalg.norm(x) < 0.12


def test_long_arrays_are_summarised_and_unknown_types_kept(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_token_list([f"tok{i}" for i in range(5000)])
    w.add_array("short.list", [1, 2, 3])
    w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    iq = np.zeros((4, 36), dtype=np.uint8)  # IQ4_NL: decoded by llama.cpp, not by provbot
    w.add_tensor("output.weight", iq, raw_dtype=gguf.GGMLQuantizationType.IQ4_NL)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _, h = _open(path)
    assert h.metadata["tokenizer.ggml.tokens"] == ArraySummary("STRING", 5000)
    assert h.metadata["short.list"] == [1, 2, 3]
    by_name = {t.name: t for t in h.tensors}
    assert by_name["token_embd.weight"].decodable
    assert by_name["output.weight"].ggml_type == "IQ4_NL" and not by_name["output.weight"].decodable


def test_header_is_read_in_growing_ranges(tmp_path: Path) -> None:
    """The data is never read: a header of a few MiB takes a handful of reads."""
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_token_list([f"token-{i:07d}" for i in range(200_000)])  # ~4 MB of vocabulary
    w.add_tensor("token_embd.weight", np.zeros((2048, 1024), dtype=np.float32))  # 8 MiB of data
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    raw = path.read_bytes()
    reads: list[tuple[int, int]] = []

    def read(s: int, e: int) -> bytes:
        reads.append((s, e))
        return raw[s:e]

    h = parse_header(read, "m.gguf", len(raw))
    assert len(reads) <= 6
    assert max(e for _, e in reads) < h.tensors[0].start + 2**20 * 8  # far less than the file
    assert sum(e - s for s, e in reads) <= 2 * h.header_bytes  # growing reads overshoot at most twofold


def _minimal(**patch: bytes) -> bytes:
    def s(x: str) -> bytes:
        return struct.pack("<Q", len(x)) + x.encode()

    parts = {
        "magic": b"GGUF",
        "version": struct.pack("<I", 3),
        "counts": struct.pack("<QQ", 1, 1),
        "kv": s("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 32),
        "tensor": s("w")
        + struct.pack("<I", 2)
        + struct.pack("<QQ", 32, 2)
        + struct.pack("<I", 8)
        + struct.pack("<Q", 0),
    }
    parts.update(patch)
    head = b"".join(parts.values())
    return head + b"\0" * (-len(head) % 32) + b"\1" * 68


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"magic": b"GGML"}, "does not start with 'GGUF'"),
        ({"version": struct.pack("<I", 1)}, "version 1"),
        ({"version": struct.pack(">I", 3)}, "big-endian"),
        ({"counts": struct.pack("<QQ", 2**60, 1)}, "tensors and"),
        ({"kv": struct.pack("<Q", 2**62)}, "a string of"),
        ({"kv": struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99)}, "unknown metadata value type 99"),
        ({"kv": struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 0, 2**40)}, "an array of"),
        ({"kv": struct.pack("<Q", 17) + b"general.alignment" + struct.pack("<II", 4, 24)}, "not a power of two"),
        ({"tensor": struct.pack("<Q", 1) + b"w" + struct.pack("<I", 9)}, "9 dimensions"),
        ({"tensor": struct.pack("<Q", 1) + b"w" + struct.pack("<IQQIQ", 2, 30, 2, 8, 0)}, "do not fill Q8_0 blocks"),
        ({"tensor": struct.pack("<Q", 1) + b"w" + struct.pack("<IQQIQ", 2, 32, 2, 8, 7)}, "not a multiple"),
        ({"tensor": struct.pack("<Q", 1) + b"w" + struct.pack("<IQQIQ", 2, 32, 200, 8, 0)}, "past the end"),
    ],
)
def test_malformed_headers_are_one_line_errors(patch: dict[str, bytes], message: str) -> None:
    raw = _minimal(**patch)
    assert parse_header(lambda s, e: _minimal()[s:e], "ok.gguf", len(_minimal())).tensors[0].ggml_type == "Q8_0"
    with pytest.raises(WeightFormatError, match=message) as err:
        parse_header(lambda s, e: raw[s:e], "bad.gguf", len(raw))
    assert "\n" not in str(err.value) and "bad.gguf" in str(err.value)


def test_a_header_longer_than_the_limit_is_refused() -> None:
    def endless(s: int, e: int) -> bytes:  # an array of 16M u64 (128 MiB), and a server that never ends
        if s == 0:
            head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
            return head + struct.pack("<IIQ", 9, 10, 16 * 2**20)
        return b"\0" * (e - s)

    with pytest.raises(WeightFormatError, match="runs past 128 MiB"):
        parse_header(endless, "big.gguf", None)
    assert MAX_HEADER_BYTES >= 64 * 2**20
