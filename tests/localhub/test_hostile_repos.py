"""Hostile repo content never breaks the local Hub: bad files are served as bytes or left out, and
nothing outside the server's root is ever served."""

from __future__ import annotations

import json
import os
import struct

from huggingface_hub import HfApi
from huggingface_hub.utils import get_session


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _safetensors_with_header(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


def test_one_hostile_repo_does_not_break_listings_or_its_own_info(localhub) -> None:
    localhub.add_repo("good/model", {"config.json": '{"model_type": "llama"}'})
    deep_header = b'{"w": {"dtype": "F32", "shape": ' + _deep(50_000) + b', "data_offsets": [0, 0]}}'
    localhub.add_repo(
        "evil/model",
        {
            "config.json": _deep(100_000),  # RecursionError in a naive parser
            "model.safetensors": _safetensors_with_header(deep_header),
            "shard.safetensors": _safetensors_with_header(
                json.dumps({"w": {"dtype": "F32", "shape": ["9" * 50], "data_offsets": [0, 0]}}).encode()
            ),
            "README.md": "---\nbase_model: &a [*a]\n---\n",
            "bad\udcffname.txt".encode("utf-8", "surrogateescape").decode("utf-8", "replace"): "x",
        },
    )
    api = HfApi(endpoint=localhub.url, token=False)
    ids = sorted(m.id for m in api.list_models(full=True))
    assert ids == ["evil/model", "good/model"]
    info = api.model_info("evil/model")
    assert info.config is None and {s.rfilename for s in info.siblings} >= {"config.json", "model.safetensors"}
    # The hostile files are still served as bytes.
    r = get_session().get(f"{localhub.url}/evil/model/resolve/main/config.json")
    assert r.status_code == 200 and r.content == _deep(100_000)


def test_links_out_of_the_root_are_never_served(localhub, localhub_root, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    localhub.add_repo("acme/model", {"config.json": "{}"})
    repo = localhub_root / "acme" / "model"
    os.symlink(secret, repo / "leak.txt")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    os.symlink(outside, localhub_root / "acme" / "linked")
    localhub.store.invalidate()
    api = HfApi(endpoint=localhub.url, token=False)
    assert "leak.txt" not in {s.rfilename for s in api.model_info("acme/model").siblings}
    r = get_session().get(f"{localhub.url}/acme/model/resolve/main/leak.txt")
    assert r.status_code == 404 and b"do not serve" not in r.content
    assert "acme/linked" not in {m.id for m in api.list_models()}
    assert get_session().get(f"{localhub.url}/api/models/acme/linked").status_code == 404
