"""Sketches: the values at the scan's positions, a strict versioned format, comparable across a family."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from safetensors import safe_open

from provbot.bot.index.errors import SketchFormatError
from provbot.bot.index.sketch import MAGIC, Sketch, SketchEntry, plan_sketch, read_sketch
from provbot.detectors.weights.keys import canonical_name
from provbot.detectors.weights.opening import open_source
from provbot.detectors.weights.sampling import element_ranges


def sketch_of(path) -> Sketch:
    with open_source(str(path)) as src:
        return read_sketch(src)


def test_sketch_holds_the_tensor_values_at_the_sampling_positions(model_zoo) -> None:
    path = model_zoo.path("llama_a")
    sk = sketch_of(path)
    with safe_open(str(path / "model.safetensors"), "np") as f:
        raw = {canonical_name(k): f.get_tensor(k) for k in f.keys()}
    assert {e.name for e in sk.entries} == set(raw)
    for e in sk.entries:
        flat = raw[e.name].reshape(-1)
        expected = np.concatenate([flat[a:b] for a, b in element_ranges(e.shape, e.n)])
        got = sk.values[slice(*sk.offsets[e.name])]
        np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_family_members_share_the_layout_and_bf16_stays_close(model_zoo) -> None:
    a, b, bf = (sketch_of(model_zoo.path(n)) for n in ("llama_a", "llama_b", "llama_bf16"))
    assert a.layout_key == b.layout_key == bf.layout_key
    assert not np.array_equal(a.values, b.values)
    assert np.max(np.abs(a.values - bf.values)) < 1e-2 * np.max(np.abs(a.values))


def test_roundtrip_and_screen_is_deterministic() -> None:
    entries = [SketchEntry("x.weight", (64, 64), 256), SketchEntry("y.weight", (8,), 8)]
    sk = Sketch(entries=entries, values=np.arange(264, dtype=np.float32))
    back = Sketch.from_bytes(sk.to_bytes())
    assert back.entries == entries and np.array_equal(back.values, sk.values)
    assert np.array_equal(back.screen(), sk.screen())


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"nope", "bad magic"),
        (MAGIC + struct.pack("<HI", 99, 2) + b"{}", "version 99"),
        (MAGIC + struct.pack("<HI", 1, 10_000) + b"{}", "past the end"),
        (MAGIC + struct.pack("<HI", 1, 5) + b"{bad}", "malformed"),
        (MAGIC + struct.pack("<HI", 1, 2) + b"{}", "malformed"),
        (
            MAGIC
            + struct.pack("<HI", 1, 60)
            + b'{"v":1,"positions":"p","entries":[["a",[4],2]]}'.ljust(60)
            + b"\0" * 4,
            "entries need 2",
        ),
    ],
)
def test_malformed_sketches_raise_one_line(blob: bytes, message: str) -> None:
    with pytest.raises(SketchFormatError, match=message) as err:
        Sketch.from_bytes(blob)
    assert "\n" not in str(err.value)


def test_experts_beyond_the_cap_are_not_sketched(model_zoo) -> None:
    with open_source(str(model_zoo.path("mixtral_base"))) as src:
        names = [p.entry.name for p in plan_sketch(src.tensors())]
    assert any(".experts.3." in n for n in names)
    assert all(".experts.4." not in n for n in names)
