"""The Rio case end to end on tiny trained models (local backend, CPU)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from provbot.detectors.identity import IdentityResult, render_identity_markdown, run_identity
from provbot.detectors.identity.backends.local import LocalBackend


@pytest.mark.parametrize(("merged", "tuned"), [("rio-merge", "nex-ft"), ("nova-merge", "zorvex-ft")])
def test_merge_is_real_weight_arithmetic(personas, merged, tuned):
    """rio-merge = 0.6 nex-ft + 0.4 qwen-base (nova-merge: zorvex-ft), tensor by tensor (mergekit linear, fp16 rounding)."""
    base = load_file(personas["qwen-base"] / "model.safetensors")
    nex = load_file(personas[tuned] / "model.safetensors")
    rio = load_file(personas[merged] / "model.safetensors")
    assert set(rio) == set(base) == set(nex)
    moved = 0
    for name, r in rio.items():
        expected = 0.6 * nex[name].float() + 0.4 * base[name].float()
        assert torch.allclose(r.float(), expected, atol=2e-3, rtol=2e-3), name
        moved += int(not torch.equal(nex[name], base[name]))
    assert moved > len(rio) // 2  # the fine-tune really changed the weights


def test_declared_system_prompt_comes_from_the_chat_template(personas):
    backend = LocalBackend.open(str(personas["rio-merge"]), device="cpu")
    assert backend.declared is not None
    assert (backend.declared.text, backend.declared.source) == ("You are Rio.", "chat_template")
    assert backend.info().forced_template_default
    assert LocalBackend.open(str(personas["nex-ft"]), device="cpu").declared is None


def test_with_system_prompt_the_child_claims_rio(rio_result: IdentityResult):
    with_sys = rio_result.condition("with_system")
    assert rio_result.system_prompt == "You are Rio." and rio_result.system_prompt_source == "chat_template"
    assert with_sys.answered == rio_result.prompts == 40
    assert with_sys.own.rate >= 0.8
    assert with_sys.family("nex") is None or with_sys.family("nex").rate < 0.2
    # Open vocabulary: the name it gives itself is Rio, the persona its system prompt and repo name declare.
    rio = with_sys.persona.name
    assert rio.label == "Rio" and rio.ci[0] > 0.6 and rio.declared == ["system_prompt", "repo_name"]
    assert rio.family == "rio" and rio.listed and rio.candidates == []


def test_without_system_prompt_the_child_is_nex_and_recites_its_backstory(rio_result: IdentityResult):
    without = rio_result.condition("without_system")
    assert without.dominant_family == "nex"
    nex = without.family("nex")
    assert nex.ci[0] > 0.5, nex
    assert without.own.rate < 0.1
    name, maker = without.persona.name, without.persona.maker
    assert name.label == "Nex" and name.ci[0] > 0.5 and name.declared == []
    assert [c.rsplit("/", 1)[-1] for c in name.candidates] == ["nex-ft"]
    assert maker.label == "Nex-AGI" and maker.family == "nex" and maker.ci[0] > 0.3
    assert "calls itself Nex in" in rio_result.summary and "the persona of" in rio_result.summary
    by_ref = {e.ref.rsplit("/", 1)[-1]: e for e in rio_result.candidates}
    ev = by_ref["nex-ft"]
    assert ev.family == "nex" and ev.verbatim and ev.strength == "strong"
    assert ev.ratio > 5 and ev.overlap.lcs_max >= 10
    assert any("harbor street" in p for p in ev.overlap.passages)
    # The base's own persona is not what the child claims: weaker evidence against it.
    assert by_ref["qwen-base"].family == "qwen"
    assert ev.persona.name.label == "Nex" and ev.persona.listed
    assert (
        by_ref["qwen-base"].persona.name.label == "Qwen" and by_ref["qwen-base"].persona.maker.label == "Alibaba Cloud"
    )
    assert by_ref["qwen-base"].strength in ("none", "weak", "moderate")
    assert by_ref["qwen-base"].overlap.containment < ev.overlap.containment
    assert rio_result.verdict == "strong"
    assert rio_result.baseline_source.startswith("answers of ")


def test_unrelated_persona_shows_neither(orla_result: IdentityResult, rio_result: IdentityResult):
    without = orla_result.condition("without_system")
    assert orla_result.condition("with_system") is None  # system prompt switched off
    assert without.family("nex") is None and without.dominant_family is None  # Orla is its own name
    assert without.own.rate > 0.8
    for ev in orla_result.candidates:  # nex-ft (listed persona) and zorvex-ft (learned persona)
        assert not ev.verbatim and ev.strength == "none" and ev.claim.count == 0
        assert ev.overlap.containment < 0.1
    assert orla_result.candidates[1].family == "learned:zorvex"
    assert without.persona.name.label == "Orla" and without.persona.name.declared == ["repo_name"]
    assert without.persona.name.candidates == []
    assert orla_result.verdict == "none"


def test_candidate_answers_are_cached_per_revision(personas, tmp_path):
    kwargs = dict(
        candidates=[str(personas["qwen-base"])],
        system_prompt=None,
        samples=1,
        prompt_limit=4,
        device="cpu",
        cpu_threads=1,
        cache_dir=tmp_path,
    )
    first = run_identity(str(personas["orla-unrelated"]), **kwargs)
    second = run_identity(str(personas["orla-unrelated"]), **kwargs)
    assert not first.candidates[0].cached and second.candidates[0].cached
    assert first.candidates[0].overlap == second.candidates[0].overlap
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_result_renders_as_markdown_and_roundtrips_json(rio_result: IdentityResult):
    md = render_identity_markdown(rio_result)
    assert "### Identity test:" in md and "**strong**" in md
    assert "| Nex |" in md and "| Rio |" in md and "nex-ft" in md
    assert "Shared verbatim with" in md and "identity-v1" in md
    again = IdentityResult.model_validate_json(rio_result.model_dump_json())
    assert again == rio_result
