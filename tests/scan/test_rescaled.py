"""The rescaled-copy test (detectors.weights.rescaled) on synthetic Llama-shaped states.

AWQ's rescaling is built here on state dicts as AutoAWQ applies it to a Llama layer (inputs of
q/k/v, o, gate/up and down multiplied by ``s``; the norms and the rows of v_proj and up_proj
divided by it); the int4 noise is a real group-wise round trip. The end-to-end cases with
AutoAWQ's own scaling and packing are in test_cases.py and test_packed.py.
"""

from __future__ import annotations

import torch

from provbot.detectors.weights.fit import Lineage, StatsTable, tensor_stats
from provbot.detectors.weights.keys import classify
from provbot.detectors.weights.rescale_stats import RescaleCollector
from provbot.detectors.weights.rescaled import rescaled_copy
from tests.support.packing import int4_round_trip
from tests.weights.builders import HIDDEN, INTER, LAYERS, dense_state

LIMIT = 0.25  # the 4-bit allowance (relation.quantized_max_rel(4))
State = dict[str, torch.Tensor]


def _scales(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.exp(0.4 * torch.randn(n, generator=g))


def _awq(state: State, seed: int, fold: bool = True) -> State:
    """``state`` with AWQ's input scaling; ``fold=False`` leaves norms and feeding rows alone."""
    g = torch.Generator().manual_seed(seed)
    s = {k: v.clone() for k, v in state.items()}
    for i in range(LAYERS):
        p = f"layers.{i}."
        groups = [
            ("input_layernorm", ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], HIDDEN),
            ("self_attn.v_proj", ["self_attn.o_proj"], HIDDEN),  # v and o are square here: AWQ scales o too
            ("post_attention_layernorm", ["mlp.gate_proj", "mlp.up_proj"], HIDDEN),
            ("mlp.up_proj", ["mlp.down_proj"], INTER),
        ]
        for prev, linears, n in groups:
            sc = _scales(n, g)
            for name in linears:
                s[p + name + ".weight"] *= sc[None, :]
            if fold:
                w = s[p + prev + ".weight"]
                s[p + prev + ".weight"] = w / (sc if w.dim() == 1 else sc[:, None])
    return s


def _learned_row_scales(state: State, seed: int) -> State:
    """Learned per-output-channel magnitudes merged into every projection's rows (DoRA's magnitude
    vectors, IA3's output scales): a fine-tune with few parameters, which nothing in the child undoes."""
    g = torch.Generator().manual_seed(seed)
    return {k: v * _scales(v.shape[0], g)[:, None] if k.endswith("_proj.weight") else v for k, v in state.items()}


def _finetune(state: State, rel: float, seed: int) -> State:
    """Every matrix moved by an independent delta of ``rel`` its size; norms as they were."""
    g = torch.Generator().manual_seed(seed)
    return {k: v + rel * v.std() * torch.randn(v.shape, generator=g) if v.dim() == 2 else v for k, v in state.items()}


def _int4(state: State) -> State:
    return {k: int4_round_trip(v, group=16) if k.endswith("_proj.weight") else v for k, v in state.items()}


def _test(child: State, candidates: list[State]):
    """``rescaled_copy`` of ``child`` (its projections stored quantized) against ``candidates``."""
    names = sorted(child)
    stats = StatsTable.of([tensor_stats(child[n].flatten(), [c[n].flatten() for c in candidates]) for n in names])
    kinds = [classify(n) for n in names]
    lin = Lineage(
        names=names,
        stats=stats,
        is_matrix=[child[n].dim() == 2 for n in names],
        layer=[k.layer for k in kinds],
        component=[k.component for k in kinds],
        k=len(candidates),
    )
    collector = RescaleCollector(["child", *(f"c{i}" for i in range(len(candidates)))], keep_below=LIMIT)
    for n in names:
        collector.add_tensor(n, [child[n], *(c[n] for c in candidates)], decoded=n.endswith("_proj.weight"))
    return rescaled_copy(lin, collector.result(), LIMIT)


def test_an_awq_rescaled_int4_copy_is_a_copy_of_its_source_once_the_scales_are_undone() -> None:
    src = dense_state(0)
    sibling = _finetune(src, 0.5, seed=1)
    r = _test(_int4(_awq(src, seed=2)), [sibling, src])
    assert r is not None and r.within and r.candidate == 1
    assert r.before > 2 * LIMIT and r.after < 0.12 and r.error < 0.12
    assert r.undone > 0.97 and 0.3 < r.spread < 0.5
    assert r.rows_scaled == 2 * LAYERS  # v_proj and up_proj rows carry the inverse scales of o and down
    assert r.matrices == 7 * LAYERS
    assert "input channels were rescaled" in r.note("src")


def test_the_same_scales_not_folded_into_the_norms_are_no_copy() -> None:
    # Free scales fit as well as for the AWQ copy; nothing in the child undoes them.
    src = dense_state(0)
    r = _test(_int4(_awq(src, seed=2, fold=False)), [src])
    assert r is not None and not r.within
    assert r.fitted < 0.12 and r.error > LIMIT and r.undone < 0.1
    assert "changes what the model computes" in r.note("src")


def test_learned_channel_magnitudes_are_no_copy() -> None:
    src = dense_state(0)
    r = _test(_int4(_learned_row_scales(src, seed=3)), [src])
    assert r is not None and not r.within
    assert r.fitted < 0.12 and r.error > LIMIT and r.undone < 0.1


def test_an_awq_rescaled_finetune_is_a_copy_of_itself_not_of_its_base() -> None:
    base = dense_state(0)
    ft = _finetune(base, 0.35, seed=4)
    child = _int4(_awq(ft, seed=5))
    r = _test(child, [base])
    assert r is not None and not r.within and r.error > LIMIT
    r = _test(child, [base, ft])
    assert r is not None and r.within and r.candidate == 1


def test_free_scales_on_small_matrices_do_not_buy_a_copy() -> None:
    # 4 x 4 matrices: 7 free scales for 16 elements absorb ~40% of any delta, taking an unrelated
    # 32% delta under the 25% limit. Unconfirmed scales buy nothing: no copy.
    g = torch.Generator().manual_seed(6)
    src = {
        f"layers.{i}.mlp.{n}.weight": torch.randn(4, 4, generator=g) for i in range(8) for n in ("up_proj", "down_proj")
    }
    r = _test(_finetune(src, 0.32, seed=7), [src])
    assert r is not None
    assert r.before > LIMIT > r.fitted  # a free fit would call it a copy
    assert r.error > 1.05 * LIMIT and not r.within and r.undone == 0.0
