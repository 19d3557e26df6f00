"""The right party among relatives: a sibling of X is never reported as X's fine-tune (real training).

``llama_a`` (X) is a fine-tune of ``llama_base`` (Y). Siblings are other fine-tunes of Y, some on X's
own task and batches (so their deltas correlate with X's up to ~0.8); descendants are X trained on
(a short and a long second fine-tune). The same on the real pretrained MiniLM.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from provbot.detectors import scan
from tests.support.models import read_tensors

pytestmark = pytest.mark.slow

SIBLINGS = ["llama_sib_same", "llama_sib_close", "llama_sib_long"]
DESCENDANTS = ["llama_a_short", "llama_a_long"]


def delta_cos(zoo, child: str, other: str, base: str) -> float:
    """Median over 2-D tensors of cos(child - base, other - base), whole tensors."""
    c, o, b = (read_tensors(zoo.path(n)) for n in (child, other, base))
    cos = [
        torch.nn.functional.cosine_similarity((c[k] - b[k]).flatten(), (o[k] - b[k]).flatten(), dim=0).item()
        for k in b
        if b[k].dim() == 2
    ]
    return float(torch.tensor(cos).median())


def paths(zoo, *names: str) -> dict[str, str]:
    return {n: str(zoo.path(n)) for n in names}


def test_the_siblings_correlate_with_x_and_the_descendants_carry_it(model_zoo):
    # What makes the cases hard: a sibling can correlate with X more than a long descendant does.
    cos = {n: delta_cos(model_zoo, n, "llama_a", "llama_base") for n in [*SIBLINGS, *DESCENDANTS, "llama_c"]}
    assert 0.5 < cos["llama_sib_same"] < 0.75 and 0.75 < cos["llama_sib_close"] < 0.9
    assert cos["llama_sib_long"] > 0.5 and abs(cos["llama_c"]) < 0.2
    assert cos["llama_a_short"] > 0.95 and cos["llama_a_long"] < cos["llama_sib_close"]


@pytest.mark.parametrize("name", SIBLINGS)
def test_a_sibling_is_a_finetune_of_the_base_with_x_as_sibling(model_zoo, name):
    p = paths(model_zoo, name, "llama_a", "llama_b", "llama_base")
    for r in (
        scan(p[name], [p["llama_a"]], base=p["llama_base"]),  # base given
        scan(p[name], [p["llama_a"], p["llama_b"], p["llama_base"]]),
    ):  # base inferred from three
        assert r.relation == "finetune" and [x.ref for x in r.parents] == [p["llama_base"]], r.notes
        assert r.base == p["llama_base"] and r.base_source in ("given", "inferred")
        sib = {x.ref: x for x in r.related}[p["llama_a"]]
        assert sib.role == "sibling" and sib.ci[1] < 0.9
        test = {t.ref: t for t in r.descent}[p["llama_a"]]
        assert test.outcome == "sibling" and test.base == p["llama_base"]
        assert test.layers and all(lo <= s.share <= hi for s in test.layers for lo, hi in [s.ci])
        assert any("sibling" in n for n in r.notes)


@pytest.mark.parametrize("name", SIBLINGS)
def test_without_a_base_a_sibling_is_related_not_a_finetune_of_x(model_zoo, name):
    p = paths(model_zoo, name, "llama_a", "llama_base")
    r = scan(p[name], [p["llama_a"], p["llama_base"]])
    assert r.relation == "related" and r.parents == [], r.notes
    assert {x.ref for x in r.related} == {p["llama_a"], p["llama_base"]}
    assert any("--base" in n for n in r.notes)


@pytest.mark.parametrize("name", DESCENDANTS)
def test_a_descendant_of_x_is_its_finetune_with_or_without_the_base(model_zoo, name):
    p = paths(model_zoo, name, "llama_a", "llama_b", "llama_base")
    for r in (
        scan(p[name], [p["llama_a"]], base=p["llama_base"]),
        scan(p[name], [p["llama_a"], p["llama_b"], p["llama_base"]]),
        scan(p[name], [p["llama_a"], p["llama_base"]]),
    ):
        assert r.relation == "finetune" and [x.ref for x in r.parents] == [p["llama_a"]], r.notes
        test = next(t for t in r.descent if t.ref == p["llama_a"])
        assert test.outcome == "descends" and test.ci[0] >= 0.9
        assert all(s.ci[1] >= 0.8 for s in test.layers)


def test_minilm_sibling_and_descendants(model_zoo):
    p = paths(model_zoo, "minilm", "minilm_ft", "minilm_sib", "minilm_ft_short", "minilm_ft_long")
    r = scan(p["minilm_sib"], [p["minilm_ft"]], base=p["minilm"])
    assert r.relation == "finetune" and [x.ref for x in r.parents] == [p["minilm"]], r.notes
    sib = next(t for t in r.descent if t.ref == p["minilm_ft"])
    assert sib.outcome == "sibling" and 0.1 < sib.share < 0.8  # correlated, but only part of X's delta
    assert scan(p["minilm_sib"], [p["minilm_ft"], p["minilm"]]).relation == "related"
    for name in ("minilm_ft_short", "minilm_ft_long"):
        for base in (p["minilm"], None):
            r = scan(p[name], [p["minilm_ft"]] + ([p["minilm"]] if base is None else []), base=base)
            assert r.relation == "finetune" and [x.ref for x in r.parents] == [p["minilm_ft"]], (name, r.notes)


def _with_card(src: Path, out: Path, base_model: str) -> str:
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".done"))
    (out / "README.md").write_text(f"---\nbase_model: {base_model}\nbase_model_relation: finetune\n---\n# X\n")
    return str(out)


def test_a_candidates_card_orients_the_pair(model_zoo, tmp_path):
    p = paths(model_zoo, "llama_sib_same", "llama_a_long", "llama_base", "llama_unrelated")
    x = _with_card(model_zoo.path("llama_a"), tmp_path / "x", p["llama_base"])
    r = scan(p["llama_sib_same"], [x, p["llama_base"]])
    assert (r.relation, r.base, r.base_source) == ("finetune", p["llama_base"], "declared"), r.notes
    assert [q.ref for q in r.parents] == [p["llama_base"]] and r.related[0].role == "sibling"
    assert scan(p["llama_a_long"], [x, p["llama_base"]]).parents[0].ref == x
    # A card naming a model the weights do not tie to it orients nothing.
    liar = _with_card(model_zoo.path("llama_a"), tmp_path / "liar", p["llama_unrelated"])
    r = scan(p["llama_sib_same"], [liar, p["llama_base"], p["llama_unrelated"]])
    assert r.base_source != "declared" and liar not in [q.ref for q in r.parents]


def test_declared_base_through_the_hub(localhub, model_zoo, tmp_path):
    """A mention names X and Y: X's card on the Hub says Y is its base, so a sibling is Y's fine-tune."""
    localhub.add_repo("lab/y", model_zoo.path("llama_base"))
    localhub.add_repo("lab/x", Path(_with_card(model_zoo.path("llama_a"), tmp_path / "x", "lab/y")))
    localhub.add_repo("someone/sib", model_zoo.path("llama_sib_close"))
    r = scan("someone/sib", ["lab/x", "lab/y"], endpoint=localhub.url)
    assert (r.relation, [q.ref for q in r.parents], r.base_source) == ("finetune", ["lab/y"], "declared"), r.notes
    assert [(q.ref, q.role) for q in r.related] == [("lab/x", "sibling")]


def test_the_index_path_passes_the_family_base(model_zoo, tmp_path):
    from provbot.bot.index.autoscan import scan_with_index
    from provbot.bot.index.ingest import add_models
    from provbot.bot.index.store import IndexStore

    p = paths(model_zoo, "llama_base", "llama_a", "llama_b", "llama_sib_same", "llama_a_long")
    store = IndexStore(f"sqlite:///{tmp_path / 'index.db'}")
    add_models([p["llama_base"], p["llama_a"], p["llama_b"]], store)
    _, sib = scan_with_index(p["llama_sib_same"], store=store, record=False)
    assert sib.relation == "finetune" and [q.ref for q in sib.parents] == [str(Path(p["llama_base"]).resolve())]
    _, desc = scan_with_index(p["llama_a_long"], store=store, record=False)
    assert desc.relation == "finetune" and [Path(q.ref).name for q in desc.parents] == ["llama_a"], desc.notes


def test_a_mention_naming_one_fine_tune_brings_in_its_declared_base(localhub, model_zoo, tmp_path):
    """'@provbot scan against lab/x': X's card names lab/y, which the scan adds and then tests against."""
    localhub.add_repo("lab/y", model_zoo.path("llama_base"))
    localhub.add_repo("lab/x", Path(_with_card(model_zoo.path("llama_a"), tmp_path / "x", "lab/y")))
    localhub.add_repo("someone/sib", model_zoo.path("llama_sib_same"))
    localhub.add_repo("someone/desc", model_zoo.path("llama_a_short"))
    r = scan("someone/sib", ["lab/x"], endpoint=localhub.url)
    assert (r.relation, [q.ref for q in r.parents]) == ("finetune", ["lab/y"]), r.notes
    assert any("added lab/y" in n for n in r.notes) and r.bytes_read["lab/y"] > 0
    r = scan("someone/desc", ["lab/x"], endpoint=localhub.url)
    assert (r.relation, [q.ref for q in r.parents]) == ("finetune", ["lab/x"]), r.notes
    # A declared base that is not there is a note, not an error; the lone candidate is hedged.
    localhub.add_repo("lab/x2", Path(_with_card(model_zoo.path("llama_a"), tmp_path / "x2", "lab/missing")))
    r = scan("someone/desc", ["lab/x2"], endpoint=localhub.url)
    assert r.relation == "finetune" and any("could not be read" in n for n in r.notes)
