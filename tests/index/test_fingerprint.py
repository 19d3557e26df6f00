"""Fingerprints: which models fall in one exact-shape family, and which only in the loose one."""

from __future__ import annotations

from pathlib import Path

from provbot.bot.index.fingerprint import fingerprint
from provbot.detectors.weights.opening import open_source
from provbot.detectors.weights.safetensors_format import TensorMeta


def fp_of(path: Path | str):
    with open_source(str(path)) as src:
        return fingerprint(src.config(), src.tensors(), str(path))


def test_family_key_ignores_dtype_prefixes_and_sharding(model_zoo) -> None:
    keys = {
        name: fp_of(model_zoo.path(name)).family_key
        for name in ("llama_a", "llama_linear", "llama_bf16", "llama_linear_renamed", "llama_linear_sharded")
    }
    assert len(set(keys.values())) == 1, keys


def test_other_architectures_are_other_families(model_zoo) -> None:
    llama, qwen, mixtral = (fp_of(model_zoo.path(n)) for n in ("llama_base", "qwen2_base", "mixtral_base"))
    assert len({llama.family_key, qwen.family_key, mixtral.family_key}) == 3
    assert mixtral.arch["num_local_experts"] == 4
    assert llama.arch["hidden_size"] == 64 and llama.layers == 2 and llama.vocab == 256
    assert llama.params > 0
    assert not llama.quantized


def test_depth_upscaled_model_shares_only_the_loose_key(model_zoo) -> None:
    a, up = fp_of(model_zoo.path("llama_a")), fp_of(model_zoo.path("llama_passthrough"))
    assert up.layers == 3 and a.layers == 2
    assert up.family_key != a.family_key
    assert up.loose_key == a.loose_key


def _meta(name: str, shape: tuple[int, ...], dtype: str = "BF16") -> TensorMeta:
    return TensorMeta(name, dtype, shape, "m.safetensors", 0, 2 * (shape[0] * (shape[1] if len(shape) > 1 else 1)))


def _toy(vocab: int, hidden: int = 8, layers: int = 2) -> dict[str, TensorMeta]:
    t = {
        "model.embed_tokens.weight": _meta("model.embed_tokens.weight", (vocab, hidden)),
        "lm_head.weight": _meta("lm_head.weight", (vocab, hidden)),
        "model.norm.weight": _meta("model.norm.weight", (hidden,)),
    }
    for i in range(layers):
        t[f"model.layers.{i}.mlp.up_proj.weight"] = _meta(f"model.layers.{i}.mlp.up_proj.weight", (16, hidden))
    return t


def test_vocabulary_expansion_keeps_the_loose_key() -> None:
    small, big, wide = fingerprint({}, _toy(100)), fingerprint({}, _toy(120)), fingerprint({}, _toy(100, hidden=12))
    assert small.family_key != big.family_key
    assert small.loose_key == big.loose_key
    assert wide.loose_key != small.loose_key  # another width is another body
    assert big.vocab == 120


def test_model_type_is_not_part_of_the_family() -> None:
    # A Mistral checkpoint relabelled as Llama is still the same weights.
    assert (
        fingerprint({"model_type": "mistral"}, _toy(50)).family_key
        == fingerprint({"model_type": "llama"}, _toy(50)).family_key
    )


def test_multimodal_text_config_is_read() -> None:
    fp = fingerprint({"model_type": "wrapper", "text_config": {"hidden_size": 8, "num_hidden_layers": 2}}, _toy(50))
    assert fp.arch["hidden_size"] == 8 and fp.hidden == 8


def test_integer_packed_weights_are_flagged_quantized() -> None:
    t = {"model.layers.0.mlp.up_proj.qweight": _meta("model.layers.0.mlp.up_proj.qweight", (16, 8), "I32")}
    assert fingerprint({}, t).quantized
