"""Fuzzing every parser of outside data: a clear error or a result, never a traceback, never a hang.

Each parser gets inputs mutated from valid seeds (bytes flipped, cut, repeated, nested thousands
deep, numbers blown up, invalid Unicode spliced in) for a bounded time with a fixed seed, so a
failure reproduces. The default budget is short for CI; a longer run:

    PROVBOT_FUZZ_SECONDS=300 PROVBOT_FUZZ_SEED=7 .venv/bin/python -m pytest -q tests/test_fuzz.py

A parser "hangs" when one input takes longer than ``SLOW_S``.
"""

from __future__ import annotations

import json
import os
import random
import struct
import time
from collections.abc import Callable

import pytest

from provbot.detectors.errors import ProvbotError

SECONDS = float(os.environ.get("PROVBOT_FUZZ_SECONDS", "2"))
SEED = int(os.environ.get("PROVBOT_FUZZ_SEED", "20261203"))
SLOW_S = 2.0


def _safetensors_header() -> bytes:
    return json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "model.layers.0.mlp.up_proj.weight": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, 64]},
            "model.norm.weight": {"dtype": "F32", "shape": [8], "data_offsets": [64, 96]},
        }
    ).encode()


def _webhook() -> bytes:
    return json.dumps(
        {
            "event": {"action": "create", "scope": "discussion.comment"},
            "repo": {
                "type": "model",
                "name": "alice/m",
                "id": "1",
                "private": False,
                "owner": {"id": "o"},
                "url": {"web": "w"},
            },
            "discussion": {
                "id": "d",
                "num": 3,
                "author": {"id": "a"},
                "url": {"web": "w"},
                "title": "t",
                "isPullRequest": False,
                "status": "open",
            },
            "comment": {
                "id": "c9",
                "author": {"id": "a"},
                "hidden": False,
                "content": "@provbot scan against a/b",
                "url": {"web": "w"},
            },
            "webhook": {"id": "h", "version": 3},
        }
    ).encode()


def _gguf() -> bytes:
    import tempfile
    from pathlib import Path

    import gguf
    import numpy as np

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.gguf"
        w = gguf.GGUFWriter(path, "llama")
        w.add_block_count(1)
        w.add_token_list([f"t{i}" for i in range(80)])
        w.add_array("general.tags", ["a", "b"])
        w.add_tensor("token_embd.weight", np.ones((2, 32), dtype=np.float16))
        q = gguf.quants.quantize(np.ones((2, 32), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor("blk.0.attn_q.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


SEEDS: dict[str, bytes] = {
    "gguf_header": _gguf(),
    "safetensors_header": _safetensors_header(),
    "shard_index": json.dumps({"metadata": {"total_size": 96}, "weight_map": {"a": "s1.safetensors"}}).encode(),
    "config": json.dumps({"model_type": "llama", "hidden_size": 64, "quantization_config": {"bits": 4}}).encode(),
    "card": b"---\nbase_model:\n- org/a\n- org/b\nbase_model_relation: merge\ntags: [merge]\n---\n# Card\n",
    "webhook": _webhook(),
    "mention": b"Hi @provbot scan against org/a, org/b. base org/b\n\n```\n@provbot scan\n```",
}


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation of ``data`` (several may stack)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(9)
        pos = rng.randrange(len(out) + 1)
        if kind == 0 and out:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind == 1:  # cut
            out = out[: rng.randrange(len(out) + 1)]
        elif kind == 2:  # nest deep
            depth = rng.choice([100, 1_000, 20_000, 200_000])
            opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
            out[pos:pos] = opener * depth + b"1" + closer * depth
        elif kind == 3:  # huge or odd numbers
            out[pos:pos] = rng.choice([b"1e999999", b"-1", b"99999999999999999999999999", b"NaN", b"0.5", b"-0"])
        elif kind == 4:  # invalid UTF-8 and escaped lone surrogates, bidi controls
            out[pos:pos] = rng.choice([b"\xff\xfe", b"\xed\xa0\x80", b'"\\ud800"', b"\\udfff", "\u202e\u200b".encode()])
        elif kind == 5:  # repeat a slice
            a = rng.randrange(len(out) + 1)
            b = min(len(out), a + rng.randint(1, 64))
            out[pos:pos] = bytes(out[a:b]) * rng.randint(2, 2_000)
        elif kind == 6:  # long strings
            out[pos:pos] = b'"' + b"x" * rng.choice([10, 10_000, 1_000_000]) + b'"'
        elif kind == 7:  # YAML and markdown specials
            out[pos:pos] = rng.choice([b"&a [*a, *a]", b"*a", b"---\n", b"`", b"> ", b"<!--", b"\r\n", b"@provbot"])
        else:  # splice another seed
            other = rng.choice(list(SEEDS.values()))
            out[pos:pos] = other[: rng.randrange(len(other) + 1)]
    return bytes(out)


def _safetensors(data: bytes) -> object:
    from provbot.detectors.weights.safetensors_format import header_length, parse_header

    n = header_length(struct.pack("<Q", len(data)), "fuzz.safetensors", file_size=8 + len(data) + 10**6)
    return parse_header(data[:n], "fuzz.safetensors", file_size=8 + len(data) + 10**6)


def _gguf_header(data: bytes) -> object:
    from provbot.detectors.weights.gguf_format import parse_header

    for size in (len(data), None):  # with the file's size known (local, Hub) and unknown
        header = parse_header(lambda s, e: data[s:e], "fuzz.gguf", size)
    return header


def _index(data: bytes) -> object:
    from provbot.detectors.weights.sources import parse_index

    return parse_index(data, "fuzz/model.safetensors.index.json")


def _config(data: bytes) -> object:
    from provbot.detectors.weights.sources import load_json_object

    return load_json_object(data, "fuzz/config.json")


def _card(data: bytes) -> object:
    from provbot.detectors.declared import declared_from_card, parse_front_matter

    return declared_from_card(parse_front_matter(data.decode("utf-8", "replace")))


def _webhook_body(data: bytes) -> object:
    from provbot.bot.service.web.webhook import WebhookRejected, parse_webhook

    try:
        return parse_webhook(data)
    except WebhookRejected as exc:
        assert exc.status in (400, 413)
        raise


def _mention(data: bytes) -> object:
    from provbot.bot.service.mentions.parse import parse_mention

    cmd = parse_mention(data.decode("utf-8", "replace"), "provbot")
    if cmd is not None:
        json.dumps(cmd.model_dump())  # what is stored and audited must serialise
    return cmd


PARSERS: dict[str, Callable[[bytes], object]] = {
    "safetensors_header": _safetensors,
    "gguf_header": _gguf_header,
    "shard_index": _index,
    "config": _config,
    "card": _card,
    "webhook": _webhook_body,
    "mention": _mention,
}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_parser_survives_fuzzing(name: str) -> None:
    rng = random.Random(f"{SEED}:{name}")
    parse, seed = PARSERS[name], SEEDS[name]
    parse(seed)  # the seed itself parses
    deadline = time.monotonic() + SECONDS
    runs = 0
    while time.monotonic() < deadline:
        data = mutate(seed, rng)
        started = time.monotonic()
        try:
            parse(data)
        except ProvbotError as exc:
            assert str(exc) and "\n" not in str(exc), f"{name}: error is not one line for input #{runs}"
        except Exception as exc:  # noqa: BLE001 - the point: anything else is a bug
            raise AssertionError(f"{name}: {type(exc).__name__} on input #{runs} (seed {SEED}): {exc!r:.300}") from exc
        took = time.monotonic() - started
        assert took < SLOW_S, f"{name}: input #{runs} took {took:.1f} s"
        runs += 1
    assert runs > 0
