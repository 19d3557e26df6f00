"""``scan()``: read the same sampled elements of a child and its candidate parents, fit, classify.

>>> from provbot.detectors import scan                                   # doctest: +SKIP
>>> r = scan("org/child", parents=["org/a", "org/b"], base="org/base")   # doctest: +SKIP
>>> r.relation, r.method, [(p.ref, p.weight) for p in r.parents]        # doctest: +SKIP
('merge', 'linear', [('org/a', 0.6), ('org/b', 0.4)])
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from pydantic import SecretStr

from provbot.detectors.errors import ProvbotError, ShapeMismatchError
from provbot.detectors.hub import HubClient
from provbot.detectors.options import ScanOptions
from provbot.detectors.weights.fit import STATS_CHUNK, Lineage, StatsTable, batch_sums, storage_dtype
from provbot.detectors.weights.full_stats import full_stats
from provbot.detectors.weights.layers import LayerSource, layer_count, layer_plans, match_layers
from provbot.detectors.weights.opening import open_source
from provbot.detectors.weights.packed import PackedMeta, with_packed
from provbot.detectors.weights.reader import canonical_models, read_sample, resolve_device
from provbot.detectors.weights.relation import COPY_EQUAL_SHARE, classify, quantized_max_rel
from provbot.detectors.weights.rescale_stats import RescaleCollector
from provbot.detectors.weights.result import ScanResult
from provbot.detectors.weights.safetensors_format import TensorMeta
from provbot.detectors.weights.sampling import Meta, SamplePlan, packed_weights, plan_sample
from provbot.detectors.weights.sources import WeightSource
from provbot.detectors.weights.verdict import Verdict

Progress = Callable[[int, int, str], None]  # (done, total, what)


def scan(
    child: str,
    parents: Sequence[str] = (),
    *,
    base: str | None = None,
    full: bool = False,
    budget_mb: float | None = None,
    max_requests: int | None = None,
    options: ScanOptions | None = None,
    endpoint: str | None = None,
    token: str | SecretStr | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    client: HubClient | None = None,
) -> ScanResult:
    """Scan ``child`` against the candidate parents and say what it is to them.

    References are Hub ids ``org/name[@revision]`` or local model folders, echoed as given.
    ``base`` names the candidates' shared ancestor when known. ``full`` reads every element (and
    decodes packed int4 weights); otherwise a sample of ``budget_mb`` MiB per model is read in at
    most ``max_requests`` range requests per model (0: no ceiling). Both default to ``options``
    (:class:`~provbot.detectors.options.ScanOptions`), which also sets the concurrency, the device
    and kernel compilation. ``endpoint`` is the Hub to read from (default: huggingface_hub's,
    ``HF_ENDPOINT``); ``token`` is sent to it only. ``progress(done, total, what)`` is called as
    models are read. Raises :class:`~provbot.detectors.errors.ProvbotError` subclasses for anything
    a user can cause (missing repos, malformed files, access denied, network faults).

    Example::

        >>> from provbot.detectors import scan                                            # doctest: +SKIP
        >>> r = scan("org/child", ["org/finetune", "org/base"], base="org/base")          # doctest: +SKIP
        >>> r.relation, [(p.ref, p.weight) for p in r.parents]                            # doctest: +SKIP
        ('merge', [('org/finetune', 0.6), ('org/base', 0.4)])
    """
    opts = options or ScanOptions()
    started = time.monotonic()
    candidates = list(dict.fromkeys([*parents, *([base] if base else [])]))
    if not candidates:
        raise ProvbotError("give at least one candidate parent (--parent or --base)")
    if child in candidates:
        raise ProvbotError(f"{child} is both the child and a candidate")
    ceiling = opts.max_requests if max_requests is None else max_requests
    if ceiling < 0:
        raise ProvbotError(f"max_requests must be 0 (no ceiling) or more, not {ceiling}")
    if budget_mb is not None and not budget_mb > 0:  # NaN too
        raise ProvbotError(f"budget_mb must be more than 0, not {budget_mb}")
    budget = (budget_mb if budget_mb is not None else opts.budget_mb) * 2**20
    dev = resolve_device(device or opts.device)

    sources = _open_all([child, *candidates], endpoint, token, opts.concurrency, client)
    added_note = None
    try:
        if base is None:
            sources, added_note = _with_declared_base(sources, endpoint, token, opts.concurrency, client)
            candidates = [s.ref for s in sources[1:]]
        models = _with_packed(sources, canonical_models(sources))
        plan = plan_sample(models, budget_bytes=None if full else int(budget), full=full, max_requests=ceiling or None)
        _with_gguf(sources, plan)
        # A full read of a quantized child also fits its matrices' channel scales (AWQ-rescaled copies).
        bits = plan.quantized_bits.get(child, 8)
        rescale = (
            RescaleCollector([s.ref for s in sources], quantized_max_rel(bits))
            if full and plan.quantized.get(child)
            else None
        )
        stats = (
            full_stats(sources, plan, dev, progress, opts.compile, rescale)
            if full
            else _sampled_stats(sources, plan, dev, progress)
        )
        # NaN/Inf anywhere (a broken or hostile file) would poison every fit: leave such tensors out.
        finite = np.isfinite(stats.gram).all(axis=(1, 2))
        keep = np.flatnonzero(finite)
        skipped = [plan.tensors[i].name for i in np.flatnonzero(~finite)]
        tensors = [plan.tensors[i] for i in keep]
        lin = Lineage(
            names=[t.name for t in tensors],
            stats=stats.take(keep),
            is_matrix=[len(t.shape) >= 2 for t in tensors],
            layer=[t.kind.layer for t in tensors],
            component=[t.kind.component for t in tensors],
            k=len(candidates),
        )
        child_layers = layer_count(models[child])
        parent_layers = {r: layer_count(models[r]) for r in candidates}
        matches = None
        if _maybe_passthrough(lin, child_layers, parent_layers):
            matches = _layer_matches(sources, models, dev)
        verdict = classify(
            lin,
            candidates,
            base=candidates.index(base) if base else None,
            child_quantized=bool(plan.quantized.get(child)),
            layer_matches=matches,
            parent_layers=parent_layers,
            child_bits=bits,
            declared=[s.declared() for s in sources[1:]],
            scale_fits=rescale.result() if rescale is not None else None,
        )
    finally:
        for s in sources:
            s.close()
    verdict = _within_what_was_compared(verdict, plan, len(lin.names))
    notes = ([added_note] if added_note else []) + list(verdict.notes) + list(plan.notes[:5])
    if verdict.relation == "finetune" and len(candidates) == 1:
        notes.append(
            f"{candidates[0]} was the only candidate and declares no base: a sibling of it (another "
            "fine-tune of its own base) would read the same; add that base as a candidate to tell them apart"
        )
    if skipped:
        notes.append(f"{len(skipped)} tensor(s) with NaN/Inf values left out, e.g. {skipped[0]}")
    if child_layers != max(parent_layers.values(), default=child_layers) and verdict.method != "passthrough":
        notes.append(
            f"the child has {child_layers} layers, the candidates {sorted(set(parent_layers.values()))}: extra layers were not compared"
        )
    return ScanResult(
        child=child,
        relation=verdict.relation,
        method=verdict.method,
        parents=verdict.parents,
        fit_r2=verdict.fit_r2,
        z=verdict.z,
        bytes_read={s.ref: s.bytes_read for s in sources},
        tensors=len(lin.names),
        layers=verdict.layers,
        base=verdict.base,
        base_source=verdict.base_source,
        components=verdict.components,
        weight_spread=verdict.weight_spread,
        norms=verdict.norms,
        density=verdict.density,
        related=verdict.related,
        descent=verdict.descent,
        requests={s.ref: s.requests for s in sources},
        elements=plan.elements,
        seconds=round(time.monotonic() - started, 3),
        notes=notes,
    )


def _within_what_was_compared(verdict: Verdict, plan: SamplePlan, compared: int) -> Verdict:
    """Inconclusive when a model keeps most of its matrices as packed integers (GPTQ, AWQ,
    bitsandbytes 4-bit): provbot does not decode them, and the float tensors left (embeddings, head,
    norms) cannot speak for the matrices. A model that copies a parent's embeddings and quantizes
    its own fine-tune would otherwise read as a copy. What those tensors say goes into the notes.
    """
    if not plan.mostly_packed or verdict.relation == "inconclusive":
        return verdict
    said = verdict.relation + (f"/{verdict.method}" if verdict.method else "")
    if verdict.parents:
        said += " of " + ", ".join(f"{p.ref} ({p.weight:.2f})" for p in verdict.parents)
    how = (
        "which a sampled scan does not decode (run with --full to compare them)"
        if set(plan.mostly_packed) <= set(plan.full_decodes)
        else "which provbot does not decode"
    )
    note = (
        f"{', '.join(plan.mostly_packed)} store(s) most matrices as packed integers, {how}: "
        f"the {compared} tensors compared alone would say {said}, too little to conclude"
    )
    return replace(verdict, relation="inconclusive", method=None, parents=[], notes=[note, *verdict.notes])


def _with_packed(
    sources: list[WeightSource], models: dict[str, dict[str, TensorMeta]]
) -> dict[str, dict[str, TensorMeta | PackedMeta]]:
    """Each model's table with its decodable packed weights as one ``PackedMeta`` each; config.json
    and the small state tensors some formats need are read only for models that hold packed weights."""
    out: dict[str, dict[str, TensorMeta | PackedMeta]] = {}
    for s in sources:
        t = models[s.ref]
        if packed_weights(t):
            out[s.ref] = with_packed(t, s.config(), partial(_read_small, s))
        else:
            out[s.ref] = dict(t)
    return out


def _with_gguf(sources: list[WeightSource], plan: SamplePlan) -> None:
    """GGUF models offer their tensors as float32: record which of the planned ones they store in
    quant blocks (so the relation can say ``quantized``, with the tolerance of their bits), and say
    what was read."""
    from provbot.detectors.weights.gguf_source import GgufSource
    from provbot.detectors.weights.keys import canonical_name

    notes = []
    for s in sources:
        if not isinstance(s, GgufSource):
            continue
        notes += s.notes
        bits = {canonical_name(n): b for n, b in s.quantized().items()}
        held = sorted(t.name for t in plan.tensors + plan.extra if t.name in bits and s.ref in t.metas)
        if held:
            plan.quantized[s.ref] = held
            plan.quantized_bits[s.ref] = min(bits[n] for n in held)
    plan.notes[:0] = notes


def _declared_base_ref(src: WeightSource, known: set[str]) -> str | None:
    """The base_model ``src``'s card names, when it is not among ``known`` and can be opened safely:
    a Hub id for a Hub candidate (same endpoint), an existing folder for a local one."""
    from provbot.detectors.hub import is_repo_id
    from provbot.detectors.weights.ancestry import ref_keys
    from provbot.detectors.weights.gguf_source import GgufSource
    from provbot.detectors.weights.sources import LocalSource

    local = src.inner if isinstance(src, GgufSource) else src
    for name in src.declared().base_models:
        if not {name.lower(), *ref_keys(name)} & known:
            if isinstance(local, LocalSource):
                folder = (local.path.parent / name) if not Path(name).is_absolute() else Path(name)
                if folder.is_dir():
                    return str(folder)
            elif is_repo_id(name):
                return name
    return None


def _with_declared_base(
    sources: list[WeightSource],
    endpoint: str | None,
    token: str | SecretStr | None,
    concurrency: int,
    client: HubClient | None = None,
) -> tuple[list[WeightSource], str | None]:
    """Add the base that candidates' cards declare when no candidate is it (one model at most).

    Whether the child descends from a candidate or is its sibling can only be told from that
    candidate's base (descent.py); a mention naming one fine-tune should not make the bot call its
    sibling that fine-tune's child. A base that cannot be opened is noted, never an error.
    """
    from provbot.detectors.weights.ancestry import ref_keys

    known = set().union(*(ref_keys(s.ref) for s in sources))
    wanted = {ref for s in sources[1:] if (ref := _declared_base_ref(s, known))}
    if len(wanted) != 1:
        return sources, (
            f"the candidates' cards declare several bases not among them ({', '.join(sorted(wanted)[:4])}): "
            "none was added"
            if wanted
            else None
        )
    ref = wanted.pop()
    try:
        extra = _open_all([ref], endpoint, token, concurrency, client)[0]
    except ProvbotError as exc:
        return sources, f"the declared base {ref} of a candidate could not be read ({exc}); it was not compared"
    return [*sources, extra], f"added {ref}, the base_model a candidate's card declares, as a candidate"


def _open_all(
    refs: list[str],
    endpoint: str | None,
    token: str | SecretStr | None,
    concurrency: int,
    client: HubClient | None = None,
) -> list[WeightSource]:
    """Open every model and parse its headers, all models at once (each is round trips and parsing)."""

    def open_one(ref: str) -> WeightSource:
        src = open_source(ref, endpoint=endpoint, token=token, concurrency=concurrency, client=client)
        try:
            src.tensors()
        except BaseException:
            src.close()
            raise
        return src

    with ThreadPoolExecutor(max_workers=len(refs)) as pool:
        futures = [pool.submit(open_one, r) for r in refs]
    opened = [f.result() for f in futures if f.exception() is None]
    failed = next((f.exception() for f in futures if f.exception() is not None), None)
    if failed is not None:
        for src in opened:
            src.close()
        raise failed
    return opened


def _sampled_stats(
    sources: list[WeightSource], plan: SamplePlan, dev: torch.device, progress: Progress | None
) -> StatsTable:
    total = len(sources)
    done = 0

    def read(src: WeightSource) -> dict[str, torch.Tensor]:
        nonlocal done
        out = read_sample(src, plan, device="cpu")
        done += 1
        if progress:
            progress(done, total, f"read {src.ref}")
        return out

    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        samples = list(pool.map(read, sources))
    child_ref = sources[0].ref
    # Most samples have the same length (one per-tensor share): their statistics come in batches.
    groups: dict[tuple[int, torch.dtype | None], list[int]] = defaultdict(list)
    for i, t in enumerate(plan.tensors):
        groups[(t.n_elements, storage_dtype(t.metas[child_ref].dtype))].append(i)
    order: list[int] = []
    parts: list[StatsTable] = []
    for (n, dtype), idx in groups.items():
        step = max(1, STATS_CHUNK // max(n, 1))
        for lo in range(0, len(idx), step):
            part = idx[lo : lo + step]
            names = [plan.tensors[i].name for i in part]
            rows = [torch.stack([s[name] for name in names]) for s in samples]
            parts.append(batch_sums(rows[0], rows[1:], dtype, device=dev).table())
            order += part
    if not parts:
        return StatsTable.empty(len(sources) - 1)
    # Rows back in plan order: row order[r] of the plan is row r of the concatenation.
    return StatsTable.concat(parts).take(np.argsort(np.asarray(order)))


def _maybe_passthrough(lin: Lineage, child_layers: int, parent_layers: dict[str, int]) -> bool:
    """Worth matching layers: layer counts differ, or some but not all tensors are exact copies."""
    if child_layers and any(n != child_layers for n in parent_layers.values()):
        return True
    mats = lin.matrix_idx()
    if not mats:
        return False
    copied = lin.stats.take(mats).eq_shares() >= COPY_EQUAL_SHARE
    share = copied.mean(axis=0)
    return bool(np.any(copied.any(axis=1)) and np.all(share < 0.95) and copied.any(axis=1).mean() > 0.5)


def _read_small(source: WeightSource, metas: list[TensorMeta]) -> list[bytes]:
    return [bytes(b) for b in source.read_ranges([(m.file, m.start, m.end) for m in metas])]


def _layer_matches(
    sources: list[WeightSource], models: Mapping[str, Mapping[str, Meta]], dev: torch.device
) -> list[LayerSource]:
    plans = layer_plans(models)
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        got = list(pool.map(lambda s: read_sample(s, plans[s.ref], device="cpu"), sources))
    if not got[0]:
        raise ShapeMismatchError(f"{sources[0].ref} has no per-layer tensors to match")
    return match_layers(got[0], {s.ref: g for s, g in zip(sources[1:], got[1:])})
