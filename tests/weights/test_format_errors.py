"""Malformed safetensors files and indexes give one clear error line naming the file."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from provbot.detectors.errors import NotFoundError, WeightFormatError
from provbot.detectors.weights.opening import open_source
from provbot.detectors.weights.safetensors_format import MAX_HEADER_BYTES, decode, parse_header
from provbot.detectors.weights.sources import LocalSource
from tests.weights.builders import dense_state, raw_safetensors, write_model

GOOD = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}


def _tensors(folder: Path):
    return LocalSource(folder).tensors()


@pytest.mark.parametrize(
    ("header", "data", "length", "match"),
    [
        (GOOD, b"\0" * 16, 10_000, "larger than the file"),
        (GOOD, b"\0" * 16, MAX_HEADER_BYTES + 1, "exceeds the 25000000-byte limit"),
        (GOOD, b"\0" * 16, 1, "too small"),
        (b"{not json", b"", None, "not valid JSON"),
        (b"\xff\xfe{}", b"", None, "not valid JSON"),
        ([1, 2, 3], b"", None, "expected an object"),
        (
            {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}},
            b"\0" * 8,
            None,
            "past the end of the file",
        ),
        ({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, b"\0" * 16, None, "needs 16"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, b"\0" * 16, None, "negative or reversed"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 16, None, "negative or reversed"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 16,
            None,
            "overlap",
        ),
        ({"w": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "unknown dtype"),
        ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "not a list of non-negative"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, b"\0" * 8, None, "not a pair of integers"),
        ({"w": [1, 2]}, b"", None, "entry is not an object"),
    ],
)
def test_malformed_headers_name_the_file(tmp_path, header, data, length, match):
    raw_safetensors(tmp_path / "m" / "model.safetensors", header, data, length)
    with pytest.raises(WeightFormatError, match=match) as err:
        _tensors(tmp_path / "m")
    assert "model.safetensors" in str(err.value)
    assert "\n" not in str(err.value)


def _entry(begin: int, n: int) -> dict:
    return {"dtype": "F32", "shape": [n], "data_offsets": [begin, begin + 4 * n]}


@pytest.mark.parametrize(
    ("entries", "clash"),
    [
        ({"a": _entry(0, 4), "empty": _entry(8, 0), "b": _entry(16, 2)}, None),  # an empty tensor takes no byte
        ({"b": _entry(8, 2), "a": _entry(0, 2), "c": _entry(16, 4)}, None),  # header order is not file order
        ({"big": _entry(0, 8), "a": _entry(4, 1), "z": _entry(32, 1)}, ("big", "a")),  # one inside another
        ({"x": _entry(0, 2), "y": _entry(16, 2), "w": _entry(12, 2)}, ("w", "y")),  # the clash is among later ones
    ],
)
def test_overlapping_tensors_are_named(entries, clash):
    size = max(e["data_offsets"][1] for e in entries.values())
    header = json.dumps(entries).encode()
    if clash is None:
        assert set(parse_header(header, "m.safetensors", 8 + len(header) + size)) == set(entries)
        return
    with pytest.raises(WeightFormatError, match=f"tensors '{clash[0]}' and '{clash[1]}' overlap"):
        parse_header(header, "m.safetensors", 8 + len(header) + size)


def test_offsets_past_int64_are_still_checked_for_overlaps():
    # Only a hostile header has them; the file size unknown (a Hub header read alone) lets them through.
    far = 2**64
    ok = json.dumps({"a": _entry(far, 2), "b": _entry(far + 8, 2)}).encode()
    assert set(parse_header(ok, "m.safetensors")) == {"a", "b"}
    bad = json.dumps({"a": _entry(far, 2), "b": _entry(far + 4, 2)}).encode()
    with pytest.raises(WeightFormatError, match="'a' and 'b' overlap"):
        parse_header(bad, "m.safetensors")


def test_file_shorter_than_length_prefix(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(WeightFormatError, match="shorter than the 8-byte"):
        _tensors(tmp_path / "m")


def test_metadata_is_ignored_and_offsets_are_absolute(tmp_path):
    header = {"__metadata__": {"format": "pt"}, **GOOD}
    path = raw_safetensors(tmp_path / "m" / "model.safetensors", header, struct.pack("<4f", 1, 2, 3, 4))
    meta = _tensors(tmp_path / "m")["w"]
    assert (meta.shape, meta.dtype) == ((2, 2), "F32")
    assert path.read_bytes()[meta.start : meta.end] == struct.pack("<4f", 1, 2, 3, 4)


def test_missing_directory_and_weights(tmp_path):
    with pytest.raises(NotFoundError, match="not found"):
        LocalSource(tmp_path / "nope")
    with pytest.raises(NotFoundError, match="not found"):
        open_source(str(tmp_path / "nope"))
    (tmp_path / "f.safetensors").write_bytes(b"")
    with pytest.raises(NotFoundError, match="is a file"):
        open_source(str(tmp_path / "f.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no model.safetensors"):
        _tensors(tmp_path / "empty")


def test_index_naming_a_missing_shard(tmp_path):
    folder = write_model(tmp_path / "m", dense_state(), shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(NotFoundError, match="model-00002-of-00002.safetensors.*missing"):
        _tensors(folder)


@pytest.mark.parametrize(
    ("index", "match"),
    [
        (b"{oops", "not valid JSON"),
        (b"[]", "no weight_map"),
        (json.dumps({"weight_map": {"w": 3}}).encode(), "no weight_map"),
        (json.dumps({"weight_map": {"w": "../../etc/passwd"}}).encode(), "not a relative file name"),
        (json.dumps({"weight_map": {"w": "/abs.safetensors"}}).encode(), "not a relative file name"),
    ],
)
def test_malformed_index(tmp_path, index, match):
    folder = write_model(tmp_path / "m", dense_state(), shards=2)
    (folder / "model.safetensors.index.json").write_bytes(index)
    with pytest.raises(WeightFormatError, match=match) as err:
        _tensors(folder)
    assert "model.safetensors.index.json" in str(err.value)


def test_index_putting_a_tensor_in_the_wrong_shard(tmp_path):
    folder = write_model(tmp_path / "m", dense_state(), shards=2)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    name = next(iter(index["weight_map"]))
    other = {"model-00001-of-00002.safetensors": "model-00002-of-00002.safetensors"}
    index["weight_map"][name] = other.get(index["weight_map"][name], "model-00001-of-00002.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(WeightFormatError, match="does not hold it"):
        _tensors(folder)


def test_a_tensor_held_by_two_shards_names_both(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    for i in (1, 2):  # both shards hold "w" (shard 2 also "v"): ambiguous, whichever is read
        state = {"w": torch.ones(2, 2)} if i == 1 else {"v": torch.ones(3), "w": torch.zeros(2, 2)}
        save_file(state, str(folder / f"model-0000{i}-of-00002.safetensors"))
    with pytest.raises(WeightFormatError, match="'w' appears in both model-00001-of-00002.safetensors and model-00002"):
        _tensors(folder)


def test_truncated_data_is_reported_on_read(tmp_path):
    folder = write_model(tmp_path / "m", {"w": torch.ones(4, 4)})
    src = LocalSource(folder)
    meta = src.tensors()["w"]
    with pytest.raises(WeightFormatError, match="truncated"):
        src.read_ranges([(meta.file, meta.start, meta.end + 100)])


def test_decode_rejects_partial_elements():
    with pytest.raises(WeightFormatError, match="whole number"):
        decode(b"\0\0\0", "F32")
    assert decode(b"", "BF16").numel() == 0
    assert torch.equal(
        decode(torch.tensor([1.5, -2.0], dtype=torch.bfloat16).view(torch.uint8).numpy().tobytes(), "BF16"),
        torch.tensor([1.5, -2.0]),
    )


def test_identical_headers_are_parsed_once_and_still_checked_against_each_file(tmp_path):
    from provbot.detectors.weights import safetensors_format as fmt

    fmt._PARSED.clear()
    header = {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}
    a = LocalSource(raw_safetensors(tmp_path / "a" / "model.safetensors", header, bytes(64)).parent)
    b = LocalSource(raw_safetensors(tmp_path / "b" / "model.safetensors", header, bytes(64)).parent)
    ta, tb = a.tensors(), b.tensors()
    assert ta == tb and ta is not tb  # one parse, separate dicts of the shared records
    assert len(fmt._PARSED._items) == 1
    ta.clear()
    assert b.tensors() == tb and LocalSource(a.path).tensors() == tb  # a caller's changes stay its own
    # The same header in a file too short for it is still an error: the file size is part of the key.
    short = LocalSource(raw_safetensors(tmp_path / "c" / "model.safetensors", header, bytes(32)).parent)
    with pytest.raises(WeightFormatError, match="past the end"):
        short.tensors()


def test_models_opened_side_by_side_parse_a_shared_header_once(monkeypatch, tmp_path):
    import threading

    from provbot.detectors.weights import safetensors_format as fmt

    fmt._PARSED.clear()
    calls: list[int] = []
    real = fmt._parse_valid

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - instrumentation only
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fmt, "_parse_valid", counted)
    header = {f"w{i}": {"dtype": "F32", "shape": [4], "data_offsets": [16 * i, 16 * i + 16]} for i in range(2000)}
    raw = json.dumps(header).encode()
    start = threading.Barrier(4)
    got: list[dict] = []

    def parse() -> None:
        start.wait()
        got.append(fmt.parse_header(raw, "model.safetensors", 8 + len(raw) + 32000))

    threads = [threading.Thread(target=parse) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1  # the other three waited for the first parse instead of repeating it
    assert len(got) == 4 and all(g == got[0] for g in got) and len({id(g) for g in got}) == 4
    assert not fmt._PARSED._pending  # nothing left claimed
