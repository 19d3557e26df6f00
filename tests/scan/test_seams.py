"""Tight budgets on many-tensor checkpoints: a plan thinned to seams still proves the merge.

At 100 KB for ~1,400 tensors the sampler reads each layer at two or three seams (tensor ends
where file neighbours meet, see ``sampling._seams``), in safetensors' name-sorted layout here.
The verdicts must be those of a roomy budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from provbot.detectors import scan
from provbot.detectors.errors import ProvbotError
from tests.weights.builders import moe_state, write_model

TIGHT_MB = 0.1


def _family(root: Path) -> dict[str, str]:
    base = moe_state(seed=21, layers=40, experts=8)
    g = torch.Generator().manual_seed(22)
    tuned = {k: v + 0.05 * v.abs().mean() * torch.randn(v.shape, generator=g) for k, v in base.items()}
    states = {
        "base": base,
        "tuned": tuned,
        "merged": {k: 0.6 * tuned[k] + 0.4 * base[k] for k in base},
        "other": moe_state(seed=23, layers=40, experts=8),
    }
    return {name: str(write_model(root / name, s, prefix="model.")) for name, s in states.items()}


def test_a_merge_scanned_at_seams_has_the_weights_of_a_roomy_scan(tmp_path: Path) -> None:
    p = _family(tmp_path)
    tight = scan(p["merged"], parents=[p["tuned"], p["base"]], budget_mb=TIGHT_MB)
    assert any("seams between file neighbours" in n for n in tight.notes), tight.notes
    roomy = scan(p["merged"], parents=[p["tuned"], p["base"]], budget_mb=16)
    assert not any("seams between file neighbours" in n for n in roomy.notes)
    # A ceiling on requests thins a roomy plan to seams as well: 2.4 MB of this 3 MB model reads
    # 883 tensors in 72 requests without one.
    free = scan(p["merged"], parents=[p["tuned"], p["base"]], budget_mb=2.4, max_requests=0)
    capped = scan(p["merged"], parents=[p["tuned"], p["base"]], budget_mb=2.4, max_requests=40)
    assert any("over the ceiling of 40" in n for n in capped.notes), capped.notes
    assert free.requests[free.child] > 40 + 2 >= capped.requests[capped.child]  # the header reads are extra
    with pytest.raises(ProvbotError, match="max_requests must be 0"):
        scan(p["merged"], parents=[p["tuned"]], max_requests=-1)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ProvbotError, match="budget_mb must be more than 0"):
            scan(p["merged"], parents=[p["tuned"]], budget_mb=bad)
    for r in (tight, roomy, capped):
        assert (r.relation, r.method) == ("merge", "linear"), r.notes
        weights = {Path(x.ref).name: x.weight for x in r.parents}
        assert abs(weights["tuned"] - 0.6) < 0.005 and abs(weights["base"] - 0.4) < 0.005
    # Fewer requests than tensors read: seams join several tensors per request.
    child = tight.child
    assert tight.requests[child] < tight.tensors
    assert len({layer.layer for layer in tight.layers}) == 40  # every layer fitted


def test_an_unrelated_model_scanned_at_seams_is_unrelated(tmp_path: Path) -> None:
    p = _family(tmp_path)
    r = scan(p["other"], parents=[p["base"]], budget_mb=TIGHT_MB)
    assert any("seams between file neighbours" in n for n in r.notes), r.notes
    assert r.relation == "unrelated" and r.parents == []
