"""A bf16 blend of two close models is a dense (linear) merge, not a sparse one.

In bf16, ``0.6 * tuned + 0.4 * base`` rounds back onto ``tuned`` wherever the fine-tune delta is
small, so many elements equal a parent exactly although nothing was dropped: the Rio case's own
storage format. The sparse-merge test must count only elements a dense merge would have moved.
"""

from __future__ import annotations

from pathlib import Path

import torch

from provbot.detectors import scan
from tests.weights.builders import dense_state, write_model


def _family(root: Path) -> dict[str, str]:
    base = {k: v.to(torch.bfloat16).float() for k, v in dense_state(seed=11).items()}
    g = torch.Generator().manual_seed(12)
    # A fine-tune-sized delta: ~5% of the weights' scale, so many of its elements are below a bf16 step.
    tuned = {
        k: (v + 0.05 * v.abs().mean() * torch.randn(v.shape, generator=g)).to(torch.bfloat16).float()
        for k, v in base.items()
    }
    merged = {k: 0.6 * tuned[k] + 0.4 * base[k] for k in base}
    paths = {}
    for name, state in (("base", base), ("tuned", tuned), ("merged", merged)):
        paths[name] = str(write_model(root / name, state, prefix="model.", dtype=torch.bfloat16))
    return paths


def test_bf16_blend_is_linear_not_ties(tmp_path: Path) -> None:
    p = _family(tmp_path)
    # Precondition: rounding really puts many elements of the child exactly on a parent.
    from safetensors.torch import load_file

    c = load_file(f"{p['merged']}/model.safetensors")["model.layers.0.mlp.up_proj.weight"]
    t = load_file(f"{p['tuned']}/model.safetensors")["model.layers.0.mlp.up_proj.weight"]
    assert (c == t).float().mean() > 0.05

    r = scan(p["merged"], parents=[p["tuned"], p["base"]], budget_mb=1)
    assert (r.relation, r.method) == ("merge", "linear"), r.notes
    weights = {Path(x.ref).name: x.weight for x in r.parents}
    assert abs(weights["tuned"] - 0.6) < 0.01 and abs(weights["base"] - 0.4) < 0.01
    assert r.density is None
    assert any("rounding the child to its storage dtype" in n for n in r.notes)
