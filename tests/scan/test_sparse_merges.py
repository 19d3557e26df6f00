"""Sparse merges (real mergekit dare_ties, dare_linear, ties, breadcrumbs; fp32 and bf16; densities
0.1-0.7) come out as merges of the right parents, with their method, density and honest weights."""

from __future__ import annotations

import itertools

import pytest

from provbot.detectors import scan
from tests.support.models import SPARSE_DENSITIES, SPARSE_DTYPES, SPARSE_METHODS

pytestmark = pytest.mark.slow

EXPECTED_METHOD = {"dare_ties": "dare", "dare_linear": "dare", "ties": "ties", "breadcrumbs": "ties"}
GRID = list(itertools.product(SPARSE_METHODS, SPARSE_DENSITIES, SPARSE_DTYPES))


@pytest.mark.parametrize(("method", "density", "dtype"), GRID, ids=lambda x: str(x))
def test_sparse_merge_grid(model_zoo, method, density, dtype):
    name = f"llama_sparse_{method}_{density}_{dtype}"
    p = {n: str(model_zoo.path(n)) for n in (name, "llama_a", "llama_b", "llama_base")}
    r = scan(p[name], [p["llama_a"], p["llama_b"], p["llama_base"]])
    assert (r.relation, r.method) == ("merge", EXPECTED_METHOD[method]), r.notes
    w = {x.ref: x for x in r.parents}
    assert set(w) == {p["llama_a"], p["llama_b"], p["llama_base"]}
    assert r.base == p["llama_base"] and r.z is not None and r.z > 10
    # The density is each parent's kept share, not the share of elements either one moved.
    assert r.density == pytest.approx(density, abs=0.05)
    a, b = w[p["llama_a"]], w[p["llama_b"]]
    assert a.weight > b.weight > 0.1 and a.ci[0] <= a.weight <= a.ci[1]
    if method == "dare_linear":  # unbiased drop-and-rescale: the shares are the configured weights
        assert (a.weight, b.weight) == pytest.approx((0.6, 0.4), abs=0.05)
    assert any("average share of each parent's delta" in n for n in r.notes)
    if method.startswith("dare"):
        assert any("1/density" in n for n in r.notes)


def test_sparse_merge_with_the_base_given_and_sampled_small(model_zoo):
    name = "llama_sparse_dare_ties_0.3_bfloat16"
    p = {n: str(model_zoo.path(n)) for n in (name, "llama_a", "llama_b", "llama_base")}
    for r in (
        scan(p[name], [p["llama_a"], p["llama_b"]], base=p["llama_base"]),
        scan(p[name], [p["llama_a"], p["llama_b"], p["llama_base"]], budget_mb=0.02),
    ):
        assert (r.relation, r.method) == ("merge", "dare"), r.notes
        assert {x.ref for x in r.parents} == set(p.values()) - {p[name]}
