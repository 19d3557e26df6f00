"""Benchmark: verdict trust over generated (child, candidates) pairs with known lineage.

    .venv/bin/python bench/verdict_bench.py [--families 4] [--root /tmp/provbot-verdicts] [--json out.json]

Each family is its own tiny Llama base (its own initialisation) with its own training data (each
task a random Markov chain). From it the bench builds, with real AdamW steps and real mergekit
merges: fine-tunes, siblings that share part of a fine-tune's data and batches, descendants
(fine-tunes of fine-tunes, short and long), dense merges (linear, SLERP, task arithmetic, a merge of
a model with its own base, a merge trained afterwards), sparse merges (TIES, DARE, breadcrumbs at
densities 0.1-0.7, fp32 and bf16), copies (bf16), quantized copies (fp8; GPTQ int4 and AWQ int4
with rescaled input channels, scanned in full), a fine-tune quantized with AWQ and scanned without
itself among the candidates, unrelated models, and llama.cpp GGUF files of some of them (Q8_0,
Q4_K as llama-quantize writes it for these 64-wide rows, i.e. Q5_0, and F16). Every pair is scanned as a user would (sampled, default budget; some with the
base given, some without) and the verdict is scored against the truth:

* **correct**: the true relation and the true parents (a sparse or task-arithmetic merge may list
  the base it is relative to);
* **undetermined**: ``related`` or ``inconclusive`` (no party named);
* **wrong kind**: a named party is a true ancestor, but the relation is not the true one;
* **wrong party**: a model that is not an ancestor of the child is named as a parent (target 0);
* **false merge**: a merge verdict for a child that is not a merge (target 0).

Models are cached under ``--root``; a second run only scans.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

STEPS = 30
WEIGHTS = [(0.6, 0.4), (0.7, 0.3), (0.5, 0.5), (0.35, 0.65)]


@dataclass
class Pair:
    scenario: str  # class of the pair (the table's rows)
    child: str
    candidates: list[str]
    truth: str  # merge | finetune | copy | quantized | unrelated
    parents: set[str]  # the true parents (for a merge: its inputs)
    ancestors: set[str]  # every model that may be named without naming the wrong party
    base: str | None = None  # given to the scan as --base
    full: bool = False
    notes: list[str] = field(default_factory=list)


class Family:
    """Models of one family under ``root/f<i>``, built on first use."""

    def __init__(self, root: Path, index: int) -> None:
        self.root, self.i = root / f"f{index}", index
        self.tasks = [100 * index + t for t in range(1, 5)]
        self.w = WEIGHTS[index % len(WEIGHTS)]

    def path(self, name: str) -> str:
        out = self.root / name
        if not (out / ".done").exists():
            import shutil

            import torch

            if out.exists():
                shutil.rmtree(out)
            torch.set_num_threads(1)
            self.builders()[name](out)
            (out / ".done").write_text("ok")
        return str(out)

    # -- recipes ---------------------------------------------------------------------------------
    def builders(self) -> dict[str, Callable[[Path], object]]:
        from tests.support import models as m
        from tests.support import packing
        from tests.support.gguf_files import gguf_of

        t1, t2, t3, t4 = self.tasks
        wa, wb = self.w

        def trained(parent: str, batches: list[tuple[int, int]], lr: float = m.TRAIN_LR):
            def build(out: Path) -> None:
                model = m.load_model(Path(self.path(parent)))
                m.train_on_batches(model, batches, lr)
                m.save_model(model, out)

            return build

        def merge(config: dict) -> Callable[[Path], object]:
            def build(out: Path) -> None:
                cfg = json.loads(json.dumps(config))
                for spec in cfg.get("models", []):
                    spec["model"] = self.path(spec["model"])
                if "base_model" in cfg:
                    cfg["base_model"] = self.path(cfg["base_model"])
                m.mergekit_merge(cfg, out)

            return build

        def sparse(method: str, density: float, dtype: str) -> Callable[[Path], object]:
            extra = {"gamma": 0.01} if method == "breadcrumbs" else {}
            return merge(
                {
                    "merge_method": method,
                    "base_model": "base",
                    "dtype": dtype,
                    "parameters": {"normalize": True},
                    "models": [
                        {"model": "a", "parameters": {"weight": wa, "density": density, **extra}},
                        {"model": "b", "parameters": {"weight": wb, "density": density, **extra}},
                    ],
                }
            )

        def rewrite(src: str, fn: Callable) -> Callable[[Path], object]:
            return lambda out: m.rewrite_weights(Path(self.path(src)), out, fn)

        def packed(src: str, pack: Callable = packing.gptq_state, awq_scaled: bool = False) -> Callable[[Path], object]:
            def build(out: Path) -> None:
                state = m.read_tensors(Path(self.path(src)))
                if awq_scaled:  # AWQ's per-channel input scaling, folded into norms and feeding rows
                    model = packing.awq_rescale(m.load_model(Path(self.path(src))), seed=40 + self.i)
                    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                tensors, qconfig = pack(state)
                m.rewrite_weights(Path(self.path(src)), out, lambda _t: tensors)
                config = json.loads((out / "config.json").read_text())
                (out / "config.json").write_text(json.dumps({**config, "quantization_config": qconfig}))

            return build

        def linear(w_a: float, w_b: float, second: str = "b") -> Callable[[Path], object]:
            return merge(
                {
                    "merge_method": "linear",
                    "dtype": "float32",
                    "models": [
                        {"model": "a", "parameters": {"weight": w_a}},
                        {"model": second, "parameters": {"weight": w_b}},
                    ],
                }
            )

        def after(src: str) -> Callable[[Path], object]:
            return trained(src, [(t3, 9000 + s) for s in range(6)], lr=3e-4)

        def fresh(seed: int) -> Callable[[Path], object]:
            def build(out: Path) -> None:
                model = m.init_model("llama", seed)
                if seed != 100 + self.i:
                    m.train_on_batches(model, [(t1, 20000 + s) for s in range(STEPS)])
                m.save_model(model, out)

            return build

        def gguf(src: str, qtype: str) -> Callable[[Path], object]:
            # As llama.cpp's converter and llama-quantize write it (names, rotary rows, blocks).
            return lambda out: gguf_of(Path(self.path(src)), out, qtype)

        return {
            "gguf_q8_a": gguf("a", "Q8_0"),
            "gguf_q4k_a": gguf("a", "Q4_K"),
            "gguf_f16_a": gguf("a", "F16"),
            "gguf_q8_linear": gguf("linear", "Q8_0"),
            "gguf_q8_rio": gguf("rio", "Q8_0"),
            "gguf_q8_sib_other": gguf("sib_other", "Q8_0"),
            "gguf_q8_a_long": gguf("a_long", "Q8_0"),
            "gguf_q8_unrelated": gguf("unrelated", "Q8_0"),
            "base": fresh(100 + self.i),
            "unrelated": fresh(900 + self.i),
            "a": trained("base", [(t1, s) for s in range(STEPS)]),
            "b": trained("base", [(t2, s) for s in range(STEPS)]),
            "sib_same": trained("base", [(t1, 1000 + s) for s in range(STEPS)]),
            "sib_close": trained("base", [(t1, s if s % 10 else 5000 + s) for s in range(STEPS)]),
            "sib_long": trained("base", [(t1, 4000 + s) for s in range(2 * STEPS)]),
            "sib_other": trained("base", [(t3, s) for s in range(STEPS)]),
            "sib_mix": trained("base", [((t1, t3)[s % 2], 6000 + s) for s in range(STEPS)]),
            "a_short": trained("a", [(t4, s) for s in range(5)], lr=1e-3),
            "a_long": trained("a", [(t4, s) for s in range(2 * STEPS)]),
            "a_same": trained("a", [(t1, 7000 + s) for s in range(STEPS)]),
            "linear": linear(wa, wb),
            "linear_even": linear(0.5, 0.5),
            "linear_trained": after("linear"),
            "rio": linear(0.6, 0.4, second="base"),
            "slerp": merge(
                {
                    "merge_method": "slerp",
                    "base_model": "a",
                    "parameters": {"t": 0.3},
                    "dtype": "float32",
                    "models": [{"model": "a"}, {"model": "b"}],
                }
            ),
            "task_arithmetic": merge(
                {
                    "merge_method": "task_arithmetic",
                    "base_model": "base",
                    "dtype": "float32",
                    "parameters": {"normalize": False},
                    "models": [
                        {"model": "a", "parameters": {"weight": 0.5}},
                        {"model": "b", "parameters": {"weight": 0.3}},
                    ],
                }
            ),
            "ties_0.3": sparse("ties", 0.3, "float32"),
            "ties_0.1_bf16": sparse("ties", 0.1, "bfloat16"),
            "dare_ties_0.3_bf16": sparse("dare_ties", 0.3, "bfloat16"),
            "dare_ties_0.7": sparse("dare_ties", 0.7, "float32"),
            "dare_linear_0.5": sparse("dare_linear", 0.5, "float32"),
            "breadcrumbs_0.5": sparse("breadcrumbs", 0.5, "float32"),
            "bf16": rewrite("a", lambda t: {k: v.to(__import__("torch").bfloat16) for k, v in t.items()}),
            "fp8": rewrite("a", m._fp8),
            "gptq": packed("a"),
            "awq_scaled": packed("a", packing.awq_state, awq_scaled=True),
            "b_awq_scaled": packed("b", packing.awq_state, awq_scaled=True),
        }

    # -- the pairs and their truth ---------------------------------------------------------------
    def pairs(self) -> list[Pair]:
        n = self.path
        base, a, b, unrel = n("base"), n("a"), n("b"), n("unrelated")
        merge_all = {a, b, base}
        out = [
            Pair("dense merge", n("linear"), [a, b, base], "merge", {a, b}, merge_all),
            Pair("dense merge", n("linear_even"), [a, b], "merge", {a, b}, merge_all),
            Pair("dense merge", n("slerp"), [a, b], "merge", {a, b}, merge_all),
            Pair("dense merge", n("task_arithmetic"), [a, b, base], "merge", {a, b}, merge_all),
            Pair("dense merge", n("linear_trained"), [a, b, base], "merge", {a, b}, merge_all),
            Pair("dense merge", n("rio"), [a, base], "merge", {a, base}, {a, base}),
            Pair("sparse merge", n("ties_0.3"), [a, b, base], "merge", {a, b}, merge_all),
            Pair("sparse merge", n("ties_0.1_bf16"), [a, b, base], "merge", {a, b}, merge_all),
            Pair("sparse merge", n("dare_ties_0.3_bf16"), [a, b], "merge", {a, b}, merge_all, base=base),
            Pair("sparse merge", n("dare_ties_0.7"), [a, b, base], "merge", {a, b}, merge_all),
            Pair("sparse merge", n("dare_linear_0.5"), [a, b, base], "merge", {a, b}, merge_all),
            Pair("sparse merge", n("breadcrumbs_0.5"), [a, b, base], "merge", {a, b}, merge_all),
            Pair("sibling", n("sib_same"), [a], "finetune", {base}, {base}, base=base),
            Pair("sibling", n("sib_close"), [a, b, base], "finetune", {base}, {base}),
            Pair("sibling", n("sib_long"), [a], "finetune", {base}, {base}, base=base),
            Pair("sibling", n("sib_mix"), [a, b], "finetune", {base}, {base}, base=base),
            Pair("sibling", n("sib_other"), [a, base], "finetune", {base}, {base}),
            Pair("sibling", n("sib_close"), [a, base], "finetune", {base}, {base}),
            Pair("fine-tune of a fine-tune", n("a_short"), [a], "finetune", {a}, {a, base}, base=base),
            Pair("fine-tune of a fine-tune", n("a_long"), [a, b, base], "finetune", {a}, {a, base}),
            Pair("fine-tune of a fine-tune", n("a_long"), [a, base], "finetune", {a}, {a, base}),
            Pair("fine-tune of a fine-tune", n("a_same"), [a], "finetune", {a}, {a, base}, base=base),
            Pair("fine-tune", a, [base], "finetune", {base}, {base}),
            Pair("copy or quantized copy", n("bf16"), [a, b, base], "copy", {a}, {a, base}),
            Pair("copy or quantized copy", n("fp8"), [a, b, base], "quantized", {a}, {a, base}),
            Pair("copy or quantized copy", n("gptq"), [a, b, base], "quantized", {a}, {a, base}, full=True),
            Pair("copy or quantized copy", n("awq_scaled"), [a, b, base], "quantized", {a}, {a, base}, full=True),
            Pair("quantized fine-tune", n("b_awq_scaled"), [a], "finetune", {base}, {b, base}, base=base, full=True),
            Pair("GGUF", n("gguf_q8_a"), [a, b, base], "quantized", {a}, {a, base}),
            Pair("GGUF", n("gguf_q4k_a"), [a, b, base], "quantized", {a}, {a, base}),
            Pair("GGUF", n("gguf_f16_a"), [a, base], "copy", {a}, {a, base}),
            Pair("GGUF", n("gguf_q8_linear"), [a, b, base], "merge", {a, b}, merge_all),
            Pair("GGUF", n("gguf_q8_rio"), [a, base], "merge", {a, base}, {a, base}),
            Pair("GGUF", n("gguf_q8_sib_other"), [a, base], "finetune", {base}, {base}),
            Pair("GGUF", n("gguf_q8_a_long"), [a, base], "finetune", {a}, {a, base}),
            Pair("GGUF", n("gguf_q8_unrelated"), [a, base], "unrelated", set(), set()),
            Pair("unrelated", unrel, [a, base], "unrelated", set(), set()),
            Pair("unrelated", unrel, [a, b, base], "unrelated", set(), set()),
        ]
        return out


def score(pair: Pair, relation: str, named: set[str], base: str | None) -> str:
    if relation == "merge" and pair.truth != "merge":
        return "false merge"
    if named - pair.ancestors:
        return "wrong party"
    if relation in ("related", "inconclusive"):
        return "undetermined"
    if relation == pair.truth:
        core = named - ({base} if pair.truth == "merge" and base and base not in pair.parents else set())
        if core == pair.parents:
            return "correct"
    return "wrong kind"


OUTCOMES = ["correct", "undetermined", "wrong kind", "wrong party", "false merge"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", type=int, default=4)
    ap.add_argument("--root", type=Path, default=Path("/tmp/provbot-verdicts"))
    ap.add_argument("--json", type=Path, help="write every pair's verdict here")
    args = ap.parse_args()

    import os

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from provbot.detectors import scan

    t0 = time.time()
    families = [Family(args.root, i) for i in range(args.families)]
    pairs = [p for f in families for p in f.pairs()]
    built = time.time() - t0
    rows: dict[str, Counter] = defaultdict(Counter)
    records, scan_s = [], []
    for p in pairs:
        t = time.perf_counter()
        r = scan(p.child, p.candidates, base=p.base, full=p.full)
        scan_s.append(time.perf_counter() - t)
        named = {x.ref for x in r.parents}
        outcome = score(p, r.relation, named, r.base)
        rows[p.scenario][outcome] += 1
        rows["all"][outcome] += 1
        records.append(
            {
                "scenario": p.scenario,
                "child": p.child,
                "candidates": p.candidates,
                "base": p.base,
                "truth": p.truth,
                "relation": r.relation,
                "method": r.method,
                "parents": [(x.ref, x.weight) for x in r.parents],
                "outcome": outcome,
            }
        )
        if outcome not in ("correct", "undetermined"):
            print(
                f"  {outcome}: {Path(p.child).parent.name}/{Path(p.child).name} vs "
                f"{[Path(c).name for c in p.candidates]} -> {r.relation}/{r.method} "
                f"{[(Path(x.ref).name, x.weight) for x in r.parents]}",
                flush=True,
            )
    order = [s for s in dict.fromkeys(p.scenario for p in pairs)] + ["all"]
    print(
        f"\n{len(pairs)} pairs from {len(families)} families; models built/loaded in {built:.0f} s, "
        f"scans {sum(scan_s):.0f} s (median {sorted(scan_s)[len(scan_s) // 2]:.2f} s)\n"
    )
    print("| pairs | n | " + " | ".join(OUTCOMES) + " |")
    print("|---|---|" + "---|" * len(OUTCOMES))
    for s in order:
        c = rows[s]
        label = f"**{s}**" if s == "all" else s
        print(f"| {label} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in OUTCOMES) + " |")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    bad = rows["all"]["wrong party"] + rows["all"]["false merge"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
