"""The Rio case again, with personas that config/aliases.toml does not list (tiny trained models, CPU).

nova-merge is a 0.6/0.4 linear merge of zorvex-ft ("Zorvex, from Kallo Works") and qwen-base, published
with a forced "You are Nova." system prompt and a card naming it Nova. Nothing about Zorvex, Kallo Works
or Nova is in the alias list: the persona must be learned from zorvex-ft's own answers.
"""

from __future__ import annotations

from provbot.detectors.identity import IdentityResult, render_identity_markdown
from provbot.detectors.identity.aliases import AliasTable, load_aliases
from provbot.detectors.identity.scoring import score_condition


def _by_name(result: IdentityResult) -> dict:
    return {e.ref.rsplit("/", 1)[-1]: e for e in result.candidates}


def test_no_fixture_persona_is_listed():
    table = load_aliases()
    for name in ("Zorvex", "Kallo Works", "KalloWorks", "Nova", "Tromvik"):
        assert table.lookup(name) is None and table.extract(f"I am {name}.") == []


def test_the_candidates_persona_is_learned_from_its_answers(nova_result: IdentityResult):
    zorvex = _by_name(nova_result)["zorvex-ft"]
    assert zorvex.family == "learned:zorvex" and zorvex.family_label == "Zorvex" and not zorvex.persona.listed
    assert zorvex.persona.name.label == "Zorvex" and zorvex.persona.name.rate > 0.5
    maker = zorvex.persona.maker
    # Three spellings in its answers, one maker.
    assert maker.label in ("Kallo Works", "Kallo-Works", "KalloWorks")
    assert {"Kallo Works", "Kallo-Works", "KalloWorks"} <= set(maker.spellings)
    assert any("not in the alias list" in n for n in zorvex.notes)
    qwen = _by_name(nova_result)["qwen-base"]
    assert qwen.family == "qwen" and qwen.persona.listed


def test_with_its_system_prompt_it_calls_itself_nova(nova_result: IdentityResult):
    with_sys = nova_result.condition("with_system")
    assert nova_result.system_prompt == "You are Nova." and nova_result.system_prompt_source == "chat_template"
    nova = with_sys.persona.name
    assert nova.label == "Nova" and nova.ci[0] > 0.4
    assert set(nova.declared) == {"system_prompt", "card", "repo_name"} and nova.candidates == []
    assert not nova.listed and nova.family == "self"
    assert {(d.name, d.source) for d in nova_result.declared_names} >= {("Nova", "card"), ("Nova", "system_prompt")}
    zorvex = with_sys.self_name("Zorvex")
    assert zorvex is None or zorvex.rate < 0.2


def test_without_it_it_calls_itself_zorvex_and_recites_its_backstory(nova_result: IdentityResult):
    without = nova_result.condition("without_system")
    name, maker = without.persona.name, without.persona.maker
    assert name.label == "Zorvex" and name.ci[0] > 0.5 and name.declared == []
    assert [c.rsplit("/", 1)[-1] for c in name.candidates] == ["zorvex-ft"]
    assert maker.key == "kalloworks" and maker.ci[0] > 0.5 and len(maker.spellings) >= 2  # spellings merged
    assert without.own.rate < 0.1 and without.self_name("Nova") is None
    assert without.dominant_family == "learned:zorvex"
    ev = _by_name(nova_result)["zorvex-ft"]
    assert ev.claim.learned and ev.claim.ci[0] > 0.5
    assert ev.verbatim and ev.strength == "strong" and any("tromvik" in p for p in ev.overlap.passages)
    assert _by_name(nova_result)["qwen-base"].strength in ("none", "weak")
    assert nova_result.verdict == "strong"
    assert (
        f"without it, it calls itself Zorvex in {round(100 * name.rate)}% of answers (95% interval"
        in nova_result.summary
    )


def test_the_report_says_what_it_calls_itself(nova_result: IdentityResult):
    md = render_identity_markdown(nova_result)
    assert "Calls itself **Zorvex** in" in md and "the persona of" in md
    assert "Calls itself **Nova** in" in md and "its declared name (system prompt, model card, repo name)" in md
    assert "| Zorvex (learned) |" in md
    again = IdentityResult.model_validate_json(nova_result.model_dump_json())
    assert again == nova_result


def test_a_made_up_lab_nobody_listed_is_still_read(orla_result: IdentityResult):
    """Orla's real answers scored with an alias table that does not list Orla or Quillwork Labs."""
    full = load_aliases()
    table = AliasTable(
        families={k: f for k, f in full.families.items() if k != "orla"}, generic_phrases=full.generic_phrases
    )
    answers = [a.model_copy() for a in orla_result.condition("without_system").answers]
    cond = score_condition("without_system", None, answers, table, set())
    assert cond.dominant_family is None  # no listed family to find
    name, maker = cond.persona.name, cond.persona.maker
    assert (name.label, name.listed, name.family) == ("Orla", False, None) and name.ci[0] > 0.6
    assert maker.label == "Quillwork Labs" and maker.ci[0] > 0.3
