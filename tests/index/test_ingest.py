"""Adding local folders: batches go on past bad models; re-adding changed weights updates."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

from provbot.bot.index.ingest import add_models, declared_from_folder


def _bad_folder(root: Path, name: str, payload: bytes) -> str:
    d = root / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (d / "model.safetensors").write_bytes(payload)
    return str(d)


def test_corrupt_and_hostile_headers_fail_one_by_one_and_the_batch_goes_on(
    family_paths, sqlite_store, tmp_path
) -> None:
    huge = struct.pack("<Q", 10**12) + b"{}"  # claims a 1 TB header
    garbage = struct.pack("<Q", 8) + b"not json"
    overlap = json.dumps(
        {
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
        }
    ).encode()
    refs = [
        _bad_folder(tmp_path, "huge", huge),
        family_paths["a"],
        _bad_folder(tmp_path, "garbage", garbage),
        _bad_folder(tmp_path, "overlap", struct.pack("<Q", len(overlap)) + overlap + b"\0" * 24),
        str(tmp_path / "missing"),
        family_paths["b"],
    ]
    outcomes = add_models(refs, sqlite_store)
    assert [o.status for o in outcomes] == ["failed", "added", "failed", "failed", "failed", "added"]
    for o in outcomes:
        if o.status == "failed":
            assert o.message and "\n" not in o.message and "Traceback" not in o.message
            assert not o.message.startswith("unexpected"), o.message
    assert sqlite_store.count() == 2
    assert len(sqlite_store.failures()) == 4


def test_changed_weights_update_the_entry(family_paths, sqlite_store, tmp_path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(family_paths["a"], folder)
    first = add_models([str(folder)], sqlite_store)[0]
    assert first.status == "added"
    assert add_models([str(folder)], sqlite_store)[0].status == "unchanged"
    shutil.copy(Path(family_paths["b"]) / "model.safetensors", folder / "model.safetensors")
    second = add_models([str(folder)], sqlite_store)[0]
    assert second.status == "updated" and second.revision != first.revision
    assert sqlite_store.get(str(folder.resolve())).revision == second.revision


def test_declared_lineage_of_a_folder(tmp_path) -> None:
    (tmp_path / "README.md").write_text("---\nbase_model: org/base\nbase_model_relation: finetune\ntags: [x]\n---\n")
    (tmp_path / "mergekit_config.yml").write_text("merge_method: linear\n")
    d = declared_from_folder(tmp_path)
    assert d.base_models == ["org/base"] and d.relation == "finetune" and d.tags == ["x", "mergekit", "merge"]
