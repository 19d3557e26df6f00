"""Spec files of virtual repos: the shipped examples load; anything bad is one line naming file and field."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from provbot.bot.localhub.server import LocalHub
from provbot.bot.localhub.virtual.layouts import LAYOUTS
from provbot.bot.localhub.virtual.specfile import SpecError, load_folder, load_spec

SHIPPED = Path(__file__).resolve().parents[2] / "bot" / "localhub" / "virtual" / "specs"
GOOD = """layout = "llama"
params = { layers = 1, hidden = 8, heads = 2, kv_heads = 1, intermediate = 16, vocab = 32 }
[repos."v/a"]
recipe = { kind = "base", seed = 1 }
"""
GGUF = '[repos."v/q"]\nrecipe = { kind = "gguf", of = "v/a" }\n'


def _params(spec_name: str) -> tuple[str, int, list[str]]:
    spec = load_spec(SHIPPED / spec_name)
    tensors = list(LAYOUTS[spec.layout].tensors(**spec.params))
    return spec.layout, sum(math.prod(s) for _, s in tensors), [n for n, _ in tensors]


def test_shipped_specs_have_the_real_layouts() -> None:
    specs = load_folder(SHIPPED)
    assert {p.name for p in specs} == {"qwen3-moe-400b.toml", "llama-70b.toml", "deepseek-moe.toml", "qwen3-5-moe.toml"}
    assert specs[SHIPPED / "qwen3-moe-400b.toml"].shards == 94
    _, total, _ = _params("qwen3-moe-400b.toml")
    assert 380e9 < total < 395e9
    _, total, _ = _params("llama-70b.toml")
    assert 70e9 < total < 71e9
    gguf = specs[SHIPPED / "llama-70b.toml"].repos["virtual/llama-70b-gguf"].recipe
    assert gguf.kind == "gguf" and gguf.of == "virtual/llama-70b"
    _, total, names = _params("deepseek-moe.toml")
    assert 660e9 < total < 680e9 and "model.layers.3.mlp.shared_experts.up_proj.weight" in names
    assert "model.layers.0.mlp.gate_proj.weight" in names  # the dense first layers
    _, _, names = _params("qwen3-5-moe.toml")
    assert all(n.startswith(("model.language_model.", "model.visual.", "lm_head.")) for n in names)
    assert "model.language_model.layers.0.linear_attn.in_proj_qkv.weight" in names
    assert "model.language_model.layers.3.self_attn.q_proj.weight" in names
    assert any(n.startswith("model.visual.blocks.") for n in names)


def test_json_specs_load_too(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"layout": "llama", "repos": {"v/a": {"recipe": {"kind": "base", "seed": 1}}}}')
    assert list(load_spec(path).repos) == ["v/a"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('layout = "gpt9"\n[repos."v/a"]\nrecipe = { kind = "base", seed = 1 }\n', "layout: unknown layout 'gpt9'"),
        (GOOD.replace("heads = 2", "headz = 2"), "params: llama has no parameter 'headz'"),
        (GOOD.replace("seed = 1", "seed = -1"), "repos.v/a.recipe.base.seed"),
        (GOOD.replace('kind = "base", seed = 1', 'kind = "delta", base = "v/x", seed = 1'), "'v/x' is not a repo"),
        (GOOD.replace('"v/a"', '"v/a/b"'), "repos.v/a/b: not a repo id"),
        (GOOD + '[repos."v/b"]\nrecipe = { kind = "blend", parts = { "v/a" = 0.5, "v/b" = 0.5 } }\n', "refers back"),
        (GOOD.replace("layout", "layuot"), "layout: Field required"),
        (GOOD + "shards = 0\n", "shards"),
        ("layout = [", "not valid TOML"),
        (GOOD.replace("[repos", "colour = 1\n[repos", 1), "colour"),
        (GOOD + '[repos."v/q"]\nrecipe = { kind = "gguf", of = "v/x" }\n', "repos.v/q.recipe: 'v/x' is not a repo"),
        (GOOD + '[repos."v/q"]\nrecipe = { kind = "gguf", of = "v/a", quant = "Q3_K" }\n', "recipe.gguf.quant"),
        (GOOD + GGUF + '[repos."v/r"]\nrecipe = { kind = "gguf", of = "v/q" }\n', "'v/q' is a GGUF repo"),
        (GOOD + GGUF + '[repos."v/d"]\nrecipe = { kind = "delta", base = "v/q", seed = 3 }\n', "'v/q' is a GGUF repo"),
        (
            GOOD.replace('"llama"', '"qwen3_moe"').replace("intermediate", "moe_intermediate") + GGUF,
            "no GGUF of layout",
        ),
    ],
)
def test_bad_specs_are_one_line_naming_file_and_field(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        LocalHub(tmp_path / "hub").add_virtual(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and where in msg


def test_a_repo_in_two_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "one.toml").write_text(GOOD)
    (tmp_path / "two.toml").write_text(GOOD)
    with pytest.raises(SpecError, match="two.toml: repos.v/a: also defined in one.toml"):
        load_folder(tmp_path)


def test_unreadable_input_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="bin.toml: cannot read"):
        load_spec(path)
    with pytest.raises(SpecError, match="not a folder"):
        load_folder(tmp_path / "missing")
