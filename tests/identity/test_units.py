"""Unit tests of the identity detector's parts that need no model: rates, aliases, overlap, prompts, cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provbot.detectors.errors import ConfigError
from provbot.detectors.identity.aliases import AliasTable, load_aliases
from provbot.detectors.identity.cache import AnswerCache
from provbot.detectors.identity.declared import declared_system_prompt, names_in_system_prompt, template_default_system
from provbot.detectors.identity.overlap import overlap
from provbot.detectors.identity.prompts import load_prompt_set
from provbot.detectors.identity.result import AnswerRecord, FamilyRate
from provbot.detectors.identity.scoring import candidate_strength, is_verbatim, score_condition
from provbot.detectors.identity.stats import wilson_interval


def test_wilson_matches_known_values_and_edges():
    lo, hi = wilson_interval(79, 100)
    assert lo == pytest.approx(0.7002, abs=1e-4) and hi == pytest.approx(0.8583, abs=1e-4)
    lo, hi = wilson_interval(0, 120)
    assert lo == 0.0 and 0.02 < hi < 0.04  # zero successes still leaves a non-trivial upper bound
    assert wilson_interval(5, 5)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@pytest.fixture(scope="module")
def table() -> AliasTable:
    return load_aliases()


def test_aliases_match_names_orgs_on_word_boundaries(table):
    labels = lambda text: sorted(c.label for c in table.extract(text))  # noqa: E731
    assert labels("I am Nex, from Nex-AGI.") == ["Nex", "Nex-AGI"]
    assert labels("The next step is yours.") == []
    assert labels("我是通义千问，由阿里云开发。") == ["Alibaba", "Qwen"]
    assert labels("I was created by Alibaba Cloud.") == ["Alibaba"]
    # Case-sensitive families: the Portuguese word "rio" (river) is not the persona Rio.
    assert labels("Moro perto do rio.") == []
    assert labels("Eu sou Rio.") == ["Rio"]
    generic = table.extract("I am ChatGPT, an AI assistant by OpenAI.")
    assert {c.label for c in generic} == {"ChatGPT", "OpenAI", "an AI assistant"}
    assert all(c.generic for c in generic)


def test_self_names_extend_the_table(table):
    t = table.with_self_names(["Zorblax", "Rio"])
    assert t.family_of("Zorblax") == "self" and t.family_of("Rio") == "rio"
    assert [c.family for c in t.extract("I am Zorblax.")] == ["self"]
    assert table.family_of("Zorblax") is None  # the original table is untouched


def test_bad_alias_and_prompt_files_raise_config_errors(tmp_path: Path):
    bad = tmp_path / "a.toml"
    bad.write_text("[families.x\nnames = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_aliases(bad)
    bad.write_text('[families.x]\nnames = "not a list"')
    with pytest.raises(ConfigError, match="invalid at"):
        load_aliases(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_prompt_set(str(tmp_path / "missing.toml"))
    dup = tmp_path / "p.toml"
    dup.write_text('version = "x"\n' + '[[prompts]]\nid = "a"\nlang = "en"\nkind = "who"\ntext = "Who?"\n' * 2)
    with pytest.raises(ConfigError, match="unique"):
        load_prompt_set(str(dup))


def test_prompt_set_v1_is_multilingual_and_records_sampling():
    ps = load_prompt_set("identity-v1")
    assert len(ps.prompts) >= 36
    assert {"en", "es", "pt", "fr", "de", "zh"} <= {p.lang for p in ps.prompts}
    assert {"who", "name", "maker", "creators"} == {p.kind for p in ps.prompts}
    assert ps.sampling.max_tokens > 0 and ps.baseline_texts
    assert ps.subset(limit=5).prompts == ps.prompts[:5]
    with pytest.raises(ConfigError):
        ps.subset(langs=["xx"])


def test_overlap_finds_recitation_and_not_stock_phrases():
    original = ["Nex-AGI began as the Harbor Street reading group in a borrowed garage. Its founders built me."]
    copy = ["Well, Nex-AGI began as the Harbor Street reading group in a borrowed garage, you know."]
    other = ["I am an assistant built by a different team in a different city with other goals."]
    hit, miss = overlap(copy, original), overlap(other, original)
    assert hit.lcs_max >= 12 and hit.containment > 0.6
    assert "nex-agi began as the harbor street reading group in a borrowed garage" in hit.passages[0]
    assert miss.lcs_max < 5 and miss.containment == 0.0
    assert is_verbatim(hit, miss) and not is_verbatim(miss, miss)
    assert overlap([], original).answers == 0 and overlap(copy, []).containment == 0.0


def test_scoring_rates_and_strength(table):
    t = table.with_self_names(["Rio"])
    answers = [
        AnswerRecord(prompt_id=f"p{i}", sample=0, text=t_)
        for i, t_ in enumerate(["I am Nex from Nex-AGI."] * 8 + ["I am Rio."] + ["I am ChatGPT."] + [None])
    ]
    cond = score_condition("without_system", None, answers, t, {"rio"})
    assert cond.answered == 10 and cond.failed == 1
    assert cond.dominant_family == "nex"
    nex = cond.family("nex")
    assert nex.count == 8 and nex.ci[0] < 0.8 < nex.ci[1]
    assert cond.own.count == 1 and cond.claim("ChatGPT").generic
    assert answers[0].claims == ["Nex", "Nex-AGI"]
    strong = FamilyRate(family="nex", count=8, n=10, rate=0.8, ci=(0.49, 0.94))
    assert candidate_strength(strong, generic=False, own=False, verbatim=True) == "strong"
    assert candidate_strength(strong, generic=False, own=False, verbatim=False) == "moderate"
    assert candidate_strength(strong, generic=True, own=False, verbatim=False) == "weak"
    assert candidate_strength(strong, generic=False, own=True, verbatim=False) == "none"
    assert candidate_strength(None, generic=False, own=False, verbatim=False) == "none"


def _render_with_default(default: str | None):
    def render(messages):
        if messages[0]["role"] != "system" and default is not None:
            messages = [{"role": "system", "content": default}, *messages]
        return "<s>" + "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages) + "<|assistant|>"

    return render


def test_declared_system_prompt_sources(tmp_path: Path):
    assert template_default_system(_render_with_default("You are Rio.")) == "You are Rio."
    assert template_default_system(_render_with_default(None)) is None
    assert declared_system_prompt(tmp_path, _render_with_default(None)) is None
    assert declared_system_prompt(tmp_path, _render_with_default("You are Rio.")).source == "chat_template"
    (tmp_path / "generation_config.json").write_text(json.dumps({"system_prompt": "You are Gen."}))
    assert declared_system_prompt(tmp_path).text == "You are Gen."
    (tmp_path / "system_prompt.txt").write_text("You are Txt.\n")
    got = declared_system_prompt(tmp_path, _render_with_default("You are Rio."))
    assert (got.text, got.source) == ("You are Txt.", "system_prompt.txt")
    (tmp_path / "system_prompt.txt").unlink()
    (tmp_path / "generation_config.json").write_text("{not json")
    assert declared_system_prompt(tmp_path) is None  # malformed: declares nothing, does not crash
    assert names_in_system_prompt("You are Rio, a helpful assistant. Your name is Rio.") == ["Rio"]
    assert names_in_system_prompt("You are a helpful assistant.") == []


def test_answer_cache_roundtrip_and_damage(tmp_path: Path):
    cache = AnswerCache(tmp_path)
    key = cache.key("m", "rev1", "local", "identity-v1", ["a"], {"seed": 1})
    assert key != cache.key("m", "rev2", "local", "identity-v1", ["a"], {"seed": 1})
    recs = [AnswerRecord(prompt_id="a", sample=0, text="I am Nex.")]
    cache.put(key, "m", recs)
    assert cache.get(key) == recs
    (tmp_path / f"{key}.json").write_text("{broken")
    assert cache.get(key) is None
    assert AnswerCache(None).get(key) is None


def test_registry_exposes_identity():
    from provbot.detectors.identity import run_identity
    from provbot.detectors.registry import available, get_detector

    assert "identity" in available() and get_detector("identity") is run_identity
    with pytest.raises(ConfigError, match="unknown detector"):
        get_detector("nope")


def test_feasibility_from_safetensors_headers(tmp_path: Path):
    import torch
    from safetensors.torch import save_file

    from provbot.detectors.identity.feasibility import can_run_identity, parameter_count
    from provbot.detectors.options import IdentityOptions

    save_file({"a": torch.zeros(10, 20), "b": torch.zeros(5)}, tmp_path / "model.safetensors")
    assert parameter_count(str(tmp_path)) == 205
    s = IdentityOptions(max_local_params_b_cpu=1e-7)  # 100 parameters
    verdict = can_run_identity(str(tmp_path), s, cuda=True)
    assert not verdict.ok and "no tokenizer" in verdict.reason  # weights alone: the local backend cannot talk
    (tmp_path / "tokenizer_config.json").write_text("{}")
    verdict = can_run_identity(str(tmp_path), s, cuda=False)
    assert not verdict.ok and "exceed the CPU limit" in verdict.reason
    assert can_run_identity(str(tmp_path), s, cuda=True).ok
    assert can_run_identity(str(tmp_path), s, cuda=False, endpoint_configured=True).ok
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 8)
    assert parameter_count(str(tmp_path)) is None
    assert not can_run_identity(str(tmp_path), s, cuda=False).ok


def test_registry_lists_both_detectors() -> None:
    from provbot.detectors.registry import available, get_detector

    assert {"weights", "identity"} <= set(available())
    assert get_detector("weights").__name__ == "weights_detector"
