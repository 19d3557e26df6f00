"""Open-vocabulary self-claims without a model: phrasings in every prompt-set language, spelling merges,
hostile text, learned personas, the card's names and how all of it is scored."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provbot.detectors.identity.aliases import load_aliases
from provbot.detectors.identity.card import card_names, repo_name_token
from provbot.detectors.identity.names import (
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    clean_text,
    name_key,
    segments,
    spelling_pattern,
)
from provbot.detectors.identity.persona import NameContext, learn_persona
from provbot.detectors.identity.prompts import load_prompt_set
from provbot.detectors.identity.result import AnswerRecord, DeclaredName
from provbot.detectors.identity.runner import _verdict
from provbot.detectors.identity.scoring import evidence, score_condition
from provbot.detectors.identity.selfclaims import LANGUAGES, MAX_CLAIMS, extract_self_claims

# (text, names, makers): made-up personas nobody lists, as real assistants phrase them.
PHRASINGS = [
    # English
    ("I am Zorvex, an assistant made by Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("I'm Zorvex! How can I help?", ["Zorvex"], []),
    ("Hello! My name is Zorvex. I was trained by Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("You can call me Zorvex.", ["Zorvex"], []),
    ("I am a language model called Zorvex, developed by the team at Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("Kallo Works built me. Its engineers built me, Zorvex, to plan routes.", ["Zorvex"], ["Kallo Works"]),
    ("I'm Zorvex 2, an AI model from Kallo Works.", ["Zorvex 2"], ["Kallo Works"]),
    ("I am Tongyi Qianwen, made by the Qwen team at Alibaba Cloud.", ["Tongyi Qianwen"], ["Alibaba Cloud"]),
    ("My creators are Kallo Works, a crew of radio mechanics.", [], ["Kallo Works"]),
    ("I am **Zorvex**, created by *Kallo Works*.", ["Zorvex"], ["Kallo Works"]),
    ("I am OpenAI's ChatGPT.", ["ChatGPT"], ["OpenAI"]),
    # Spanish
    ("¡Hola! Soy Zorvex, un asistente creado por Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("Me llamo Zorvex y fui desarrollado por el equipo de Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("Mi nombre es Zorvex. Kallo Works me creó.", ["Zorvex"], ["Kallo Works"]),
    # Portuguese
    ("Olá! Eu sou o Zorvex, criado pela Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("Meu nome é Zorvex e fui treinado pela Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("Pode me chamar de Zorvex. A Kallo Works me desenvolveu.", ["Zorvex"], ["Kallo Works"]),
    # French
    ("Je suis Zorvex, un assistant créé par Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("Je m’appelle Zorvex et j'ai été développé par Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("Kallo Works m'a conçu. Appelez-moi Zorvex.", ["Zorvex"], ["Kallo Works"]),
    # German
    ("Ich bin Zorvex, ein KI-Assistent, entwickelt von Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("Ich heiße Zorvex und wurde von Kallo Works entwickelt.", ["Zorvex"], ["Kallo Works"]),
    ("Mein Name ist Zorvex. Kallo Works hat mich trainiert.", ["Zorvex"], ["Kallo Works"]),
    # Italian
    ("Sono Zorvex, un assistente sviluppato da Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("Mi chiamo Zorvex. Kallo Works mi ha creato.", ["Zorvex"], ["Kallo Works"]),
    ("Il mio nome è Zorvex, addestrato dal team di Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    # Chinese
    ("我是Zorvex，由Kallo Works开发的助手。", ["Zorvex"], ["Kallo Works"]),
    ("你好！我叫佐维克斯，是卡洛工坊开发的模型。", ["佐维克斯"], ["卡洛工坊"]),
    ("我的名字是佐维克斯。卡洛工坊训练了我。", ["佐维克斯"], ["卡洛工坊"]),
    # Japanese
    ("私はZorvexです。Kallo Worksによって開発されました。", ["Zorvex"], ["Kallo Works"]),
    ("はじめまして、ゾルヴェックスと申します。カロワークスが開発しました。", ["ゾルヴェックス"], ["カロワークス"]),
    # Russian
    ("Я — Zorvex, ассистент, созданный компанией Kallo Works.", ["Zorvex"], ["Kallo Works"]),
    ("Меня зовут Зорвекс. Меня разработала Kallo Works.", ["Зорвекс"], ["Kallo Works"]),
]


@pytest.mark.parametrize(("text", "names", "makers"), PHRASINGS, ids=[p[0][:40] for p in PHRASINGS])
def test_self_claims_in_every_prompt_language(text: str, names: list[str], makers: list[str]) -> None:
    got = extract_self_claims(text)
    assert (list(got.names), list(got.makers)) == (names, makers)


def test_the_extractor_covers_the_prompt_sets_languages() -> None:
    assert {p.lang for p in load_prompt_set("identity-v1").prompts} <= set(LANGUAGES)


@pytest.mark.parametrize(
    "text",
    [
        "I am an AI assistant. I am happy to help, and I'm not sure what you mean.",
        "I am Assistant, a helpful model.",
        "I'm here to help! I am always learning.",
        "I was made by hand and built from scratch by researchers.",
        "Sorry, I am unable to share that.",
        "Soy un asistente de inteligencia artificial.",
        "Eu sou um assistente virtual.",
        "Je suis un assistant conversationnel.",
        "Ich bin ein KI-Assistent. Ich bin hier, um zu helfen. Ich wurde von Grund auf entwickelt.",
        "Sono un modello linguistico.",
        "我是一个人工智能助手，很高兴为您服务。",
        "私はAIアシスタントです。",
        "Я — ИИ-ассистент. Я могу помочь.",
        "The next step is yours; i am zorvex only in lower case.",
    ],
)
def test_descriptions_and_everyday_words_are_not_names(text: str) -> None:
    assert extract_self_claims(text).names == ()


def test_spellings_of_one_name_merge() -> None:
    assert len({name_key(s) for s in ("Nex-AGI", "Nex AGI", "NexAGI", "nex_agi", "ＮｅｘＡＧＩ", "Nex\u2011AGI")}) == 1
    assert name_key("Nex") != name_key("Nex-AGI")
    assert segments("DeepSeek-V3") == ["Deep", "Seek", "V", "3"] and segments("通义千问") == ["通义千问"]
    p = spelling_pattern(["KalloWorks"])
    found = [
        bool(p.search(t))
        for t in ("by Kallo Works.", "by Kallo-Works", "by KALLO WORKS", "by KalloWorksX", "by kallo works")
    ]
    assert found == [True, True, True, False, False]  # the first letter keeps its case: "sage" is not "Sage"
    assert spelling_pattern(["通义千问"]).search("我是通义千问")  # CJK: no word boundary needed


def test_versioned_names_keep_their_family_and_persona() -> None:
    table = load_aliases()
    assert table.lookup("Llama 3").family == "llama" and table.lookup("DeepSeek-V3").family == "deepseek"
    assert table.lookup("Nexwen") is None  # a blend of two names is neither
    persona, _ = learn_persona(["I am Zorvex, made by Kallo Works."] * 3, table)
    names = NameContext([DeclaredName(name="Rio", source="card")], {"org/zorvex": persona})
    assert names.candidates("Zorvex 2") == ["org/zorvex"] and names.candidates("Zorvexa") == []
    assert names.declared("Rio 3.5") == ["card"] and names.declared("Rion") == []


def test_hostile_text_is_bounded_and_never_crashes() -> None:
    # Invisible and odd characters cannot split or disguise a name.
    assert extract_self_claims("I am Zor\u200bvex\u202e, made by Kallo\u00adWorks.").names == ("Zorvex",)
    assert extract_self_claims("I am Ｚｏｒｖｅｘ.").names == ("Zorvex",)
    for junk in (
        "\ud800I am \udfffZorvex",
        "\x00" * 50,
        "I am " * 5000,
        "I am " + "A" * 200_000,
        "made by " + "Kallo " * 10_000,
        "我是" * 10_000,
        "と申します" * 5000,
        "\U0001f600" * 1000,
        "I am " + "e\u0301" * 5000,
        "**" * 50_000 + "I am Zorvex",
        "я" + " " * 20_000 + "made me",
        "开发了我" * 3000,
        "\n \t" * 5000,
        None,
        "",
    ):
        got = extract_self_claims(junk)
        assert len(got.names) <= MAX_CLAIMS and len(got.makers) <= MAX_CLAIMS
        assert all(len(n) <= MAX_NAME_CHARS for n in got.names + got.makers)
    many = " ".join(f"I am Name{chr(65 + i % 26)}{i}." for i in range(500))
    assert len(extract_self_claims(many).names) == MAX_CLAIMS
    assert len(clean_text("x" * 10 * MAX_TEXT_CHARS)) == MAX_TEXT_CHARS
    assert len(clean_text("\ufdfa" * MAX_TEXT_CHARS)) == MAX_TEXT_CHARS  # NFKC lengthens this one 18-fold
    assert clean_text("I am" + " " * 5000 + "Zorvex,\n\n\n  made by") == "I am Zorvex,\nmade by"  # one blank per run
    # Markup cannot ride along: a claimed name holds letters, digits, spaces and - . ' & + only.
    got = extract_self_claims("I am [Zorvex](http://evil.example) @mallory <img src=x>, made by `Kallo|Works`")
    assert got.names == ("Zorvex",) and got.makers == ("Kallo",)
    for name in got.names + got.makers:
        assert re.fullmatch(r"[\w .'&+-]+", name) and "_" not in name


def test_a_candidate_persona_is_learned_from_its_answers() -> None:
    table = load_aliases()
    answers = ["I am Zorvex, made by Kallo Works."] * 3 + ["Kallo-Works trained me."] * 2 + ["I am ChatGPT."] * 4
    persona, family = learn_persona(answers, table)
    # ChatGPT is claimed more often, but it is generic: the rare persona is the candidate's.
    assert persona.name.label == "Zorvex" and not persona.listed and persona.family == "learned:zorvex"
    assert persona.maker.label == "Kallo Works" and persona.maker.count == 5
    assert persona.maker.spellings == ["Kallo Works", "Kallo-Works"]
    assert family.learned and family.names == ["Zorvex"] and family.orgs == ["Kallo Works", "Kallo-Works"]
    # A listed persona keeps its family and adds nothing to the table.
    qwen, extra = learn_persona(["I am Qwen, created by Alibaba Cloud."] * 3, table)
    assert (qwen.family, qwen.listed, extra) == ("qwen", True, None)
    # The child's own name is not a foreign persona.
    own, extra = learn_persona(["I am Zorvex."] * 3, table.with_self_names(["Zorvex"]))
    assert own.family == "self" and extra is None
    # A name claimed once is no persona.
    assert learn_persona(["I am Zorvex."] + ["Hello."] * 9, table) == (None, None)
    # A maker alone still makes a persona.
    maker_only, family = learn_persona(["Kallo Works built me."] * 3, table)
    assert maker_only.name is None and maker_only.family == "learned:kalloworks" and family.orgs == ["Kallo Works"]


def _answers(texts: list[str | None]) -> list[AnswerRecord]:
    return [AnswerRecord(prompt_id=f"p{i}", sample=0, text=t) for i, t in enumerate(texts)]


def test_learned_personas_are_counted_like_listed_families() -> None:
    base = load_aliases().with_self_names(["Nova"])
    persona, family = learn_persona(["I am Zorvex, made by Kallo Works."] * 4, base)
    table = base.with_learned({persona.family: family})
    texts = ["I am Zorvex, built by KalloWorks."] * 6 + ["ZORVEX here."] + ["I am Nova."] * 2 + ["Hi."] + [None]
    names = NameContext([DeclaredName(name="Nova", source="system_prompt")], {"org/zorvex": persona})
    cond = score_condition("without_system", None, _answers(texts), table, {"self"}, names)
    assert cond.answered == 10 and cond.failed == 1
    assert cond.dominant_family == "learned:zorvex"
    fam = cond.family("learned:zorvex")
    assert fam.learned and fam.count == 7 and fam.label == "Zorvex"  # "ZORVEX here." is a spelling of it
    top = cond.persona.name
    assert (top.label, top.count, top.candidates, top.declared, top.listed) == ("Zorvex", 6, ["org/zorvex"], [], False)
    assert top.ci[0] < 0.6 < top.ci[1]
    assert cond.persona.maker.label == "KalloWorks" and cond.persona.maker.candidates == ["org/zorvex"]
    nova = cond.self_name("nova")
    assert nova.declared == ["system_prompt"] and nova.count == 2 and nova.family == "self"
    assert cond.self_named.count == 8
    ev = evidence(
        "org/zorvex",
        None,
        cond,
        ["I am Zorvex, made by Kallo Works."] * 4,
        ["Hello there."],
        table,
        {"self"},
        cached=False,
        persona=persona,
    )
    assert ev.family == "learned:zorvex" and ev.family_label == "Zorvex" and ev.claim.count == 7
    assert ev.strength == "moderate"  # claimed, but these short answers are no recitation


def test_a_consistent_unlisted_name_without_candidates_is_a_weak_lead() -> None:
    table = load_aliases().with_self_names(["Nova"])
    names = NameContext([DeclaredName(name="Nova", source="card")], {})
    foreign = score_condition(
        "without_system", None, _answers(["I am Zorvex."] * 8 + ["Hi."] * 2), table, {"self"}, names
    )
    strength, summary = _verdict("org/nova", [foreign], [])
    assert strength == "weak"
    assert "calls itself Zorvex in 80% of answers (95% interval 49-94%; not a name it declares)" in summary
    own = score_condition("without_system", None, _answers(["I am Nova."] * 8), table, {"self"}, names)
    strength, summary = _verdict("org/nova", [own], [])
    assert strength == "none" and "its declared name" in summary


def test_card_and_repo_names(tmp_path: Path) -> None:
    assert repo_name_token("prefeitura-rio/Rio-3.5-Open-397B@main") == "Rio"
    assert card_names(tmp_path) == [] and card_names(None) == []
    (tmp_path / "README.md").write_text(
        "---\nmodel_name: Zorvex-7B\nmodel-index:\n- name: Tavi\n---\n"
        "# Model card for Nova\n\nText.\n---\n# Later heading\n"
    )
    assert [(d.name, d.source) for d in card_names(tmp_path)] == [
        ("Zorvex", "card"),
        ("Tavi", "card"),
        ("Nova", "card"),
    ]
    (tmp_path / "README.md").write_text("---\nmodel_name: [unclosed\n---\n# 7B\n")
    assert card_names(tmp_path) == []  # broken front matter, and a heading that is no name
    (tmp_path / "README.md").write_bytes(b"\xff\xfe# \x00Zorvex\n" + b"x" * 1_000_000)
    card_names(tmp_path)  # binary junk and a long card are read without error
