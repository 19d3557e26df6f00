"""Hostile local checkpoints through ``provbot scan`` as a user runs it: names that cannot be printed
as they are, and checkpoints in more shards than the process may hold open files."""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

ODD = "model.layers.0.self_attn.\ud800\u202ek_proj.weight"  # a lone surrogate and a bidi override


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """By hand: the safetensors package cannot write names that are not valid UTF-8 text."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        raw = array.astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, ensure_ascii=True).encode()  # lone surrogates as \ud800 escapes
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def model(folder: Path, tensors: dict[str, np.ndarray], shards: int = 1) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if shards == 1:
        write_safetensors(folder / "model.safetensors", tensors)
        return folder
    names = list(tensors)
    weight_map = {}
    for i, chunk in enumerate(np.array_split(np.arange(len(names)), shards)):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(folder / file, {names[j]: tensors[names[j]] for j in chunk})
        weight_map.update({names[j]: file for j in chunk})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def scan(*args: str, max_files: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if max_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))

    return subprocess.run(
        [sys.executable, "-m", "provbot.bot.cli", "scan", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=600,
        preexec_fn=limit,
        env=dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1"),
    )


def test_unprintable_tensor_names_are_kept_escaped_never_a_crash(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    common = {f"model.layers.{i}.self_attn.q_proj.weight": rng.standard_normal((16, 16)) for i in range(3)}
    child = model(tmp_path / "child", {**common, ODD: np.ones((16, 16))})
    parent = model(tmp_path / "parent", {**common, ODD: np.ones((8, 8))})  # shapes differ: the name is reported

    as_json = scan(str(child), "--parent", str(parent), "--json", "--full")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["relation"] == "copy"
    escaped = "layers.0.self_attn.\\ud800\\u202ek_proj.weight"
    assert any(escaped in note for note in report["notes"]), report["notes"]

    readable = scan(str(child), "--parent", str(parent), "--full")
    assert readable.returncode == 0, readable.stderr
    assert "\\ud800\\u202ek_proj" in readable.stdout.replace("\n", "")
    assert "\u202e" not in readable.stdout and "Traceback" not in readable.stderr


def test_a_checkpoint_in_more_shards_than_open_files_allowed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensors = {
        f"model.layers.{layer}.self_attn.{proj}.weight": rng.standard_normal((4, 4))
        for layer in range(300)
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj")
    }
    parent = model(tmp_path / "parent", tensors, shards=1200)
    child = model(tmp_path / "child", tensors, shards=1200)

    # 1,200 shards per model, 2 models, under a limit of 256 open files for the whole process.
    proc = scan(str(child), "--parent", str(parent), "--json", "--full", max_files=256)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["relation"] == "copy" and report["tensors"] == 1200
