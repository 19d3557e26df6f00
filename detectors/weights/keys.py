"""Tensor names: one canonical spelling across checkpoints, and what part of the network a tensor is.

Checkpoints of one architecture spell keys differently (``model.layers.0...`` from a
``*ForCausalLM`` save, ``layers.0...`` from a bare ``*Model``, ``transformer.h.0`` in GPT-2,
``language_model.model...`` in multimodal wrappers). :func:`canonical_name` strips those wrapper
prefixes so that the same tensor has the same name in every model.

>>> canonical_name("model.layers.3.self_attn.q_proj.weight")
'layers.3.self_attn.q_proj.weight'
>>> classify("layers.3.mlp.experts.17.down_proj.weight")
TensorKind(layer=3, component='expert', expert=17)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence, Set
from functools import lru_cache, partial
from typing import NamedTuple, TypeVar

import numpy as np

from provbot.detectors.errors import WeightFormatError

# Wrapper prefixes that carry no meaning for the comparison. Stripped repeatedly, so
# "language_model.model.layers" and "model.model.layers" both end as "layers".
_PREFIXES = ("model.", "transformer.", "language_model.", "base_model.", "bert.", "roberta.", "backbone.", "gpt_neox.")
# All leading wrapper prefixes at once, each only when something follows it ("model." alone stays).
_PREFIX_RUN = re.compile("^(?:(?:" + "|".join(map(re.escape, _PREFIXES)) + ")(?=.))+")

#: Canonical names of the input embedding (first match wins) and of the output head.
EMBEDDING_NAMES = (
    "embed_tokens.weight",
    "wte.weight",
    "embeddings.word_embeddings.weight",
    "word_embeddings.weight",
    "tok_embeddings.weight",
    "embed_in.weight",
)
HEAD_NAME = "lm_head.weight"
_HEAD_ALIASES = frozenset({"lm_head.weight", "output.weight", "embed_out.weight"})

# Companion tensors of quantized weights (`<weight>_scale`, `<weight>_scale_inv`); never compared themselves.
_SCALE_SUFFIXES = ("_scale", "_scale_inv")
_ACT_SCALE = re.compile(r"(^|\.)(input_scale|output_scale|k_scale|v_scale)$")

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")
_EXPERT = re.compile(r"(?:^|\.)experts\.(\d+)\.")
_NORM = re.compile(r"(norm|ln_?\d*|layernorm)$", re.IGNORECASE)
_ROUTER = re.compile(r"(?:^|\.)(router|gate|e_score_correction_bias|shared_expert_gate)(?:\.|$)")
_ATTENTION = re.compile(r"(attn|attention|q_proj|k_proj|v_proj|o_proj|query|key|value|qkv)", re.IGNORECASE)
_MLP = re.compile(
    r"(mlp|ffn|feed_forward|intermediate|shared_expert|gate_proj|up_proj|down_proj|fc\d|c_fc|c_proj|w[123]|output\.dense)"
)

T = TypeVar("T")


class TensorKind(NamedTuple):
    """Where a tensor sits: ``layer`` index (None outside the blocks), ``component``, routed ``expert`` id.

    Components: attention, mlp (dense MLP and MoE shared experts), expert (routed experts),
    router, embedding, head, norm, other. A named tuple: immutable, and made for every one of a
    MoE's 100k names (a frozen dataclass costs several times more to build).
    """

    layer: int | None
    component: str
    expert: int | None = None


@lru_cache(maxsize=1 << 18)  # pure; the child and its candidates share most names
def canonical_name(raw: str) -> str:
    """Strip wrapper prefixes; map the output-head aliases to ``lm_head.weight``.

    >>> canonical_name("transformer.h.0.attn.c_attn.weight")
    'h.0.attn.c_attn.weight'
    >>> canonical_name("model.lm_head.weight")
    'lm_head.weight'
    """
    name = _PREFIX_RUN.sub("", raw, count=1)
    if name in _HEAD_ALIASES:
        return HEAD_NAME
    return name


def is_scale_companion(name: str, names: Set[str] | Mapping[str, object]) -> bool:
    """True for a quantization scale next to its weight (``x.weight_scale`` beside ``x.weight``)
    and for activation scales (``input_scale``), which have no counterpart in a float model.

    >>> is_scale_companion("a.weight_scale", {"a.weight", "a.weight_scale"})
    True
    """
    if "scale" not in name:
        return False  # fast path: the regex and suffix checks below only matter for scale names
    if _ACT_SCALE.search(name):
        return True
    for suffix in _SCALE_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in names:
            return True
    return False


def scale_companion(weight: str, names: Set[str] | Mapping[str, object]) -> str | None:
    """The scale tensor of a quantized ``weight``, if the model has one.

    >>> scale_companion("a.weight", {"a.weight", "a.weight_scale_inv"})
    'a.weight_scale_inv'
    """
    for suffix in _SCALE_SUFFIXES:
        if weight + suffix in names:
            return weight + suffix
    return None


def canonical_tensors(tensors: dict[str, T], source: str = "model") -> dict[str, T]:
    """Re-key a model's ``{raw_name: meta}`` by canonical name.

    Two raw names that collapse to one canonical name are a malformed or ambiguous checkpoint
    (e.g. both ``model.x`` and ``x``): that raises :class:`WeightFormatError` naming ``source``.

    >>> canonical_tensors({"model.norm.weight": 1, "lm_head.weight": 2})
    {'norm.weight': 1, 'lm_head.weight': 2}
    """
    raw = tuple(tensors)
    names = _canonical_names(raw)
    out = dict(zip(names, tensors.values()))
    if len(out) < len(raw):
        raw_of: dict[str, str] = {}
        for r, name in zip(raw, names):
            if name in raw_of:
                raise WeightFormatError(f"{source}: tensors {raw_of[name]!r} and {r!r} both map to {name!r}")
            raw_of[name] = r
    return out


@lru_cache(maxsize=8)
def _canonical_names(raw: tuple[str, ...]) -> tuple[str, ...]:
    # By the whole name list: a child and its candidates, saved by one library, mostly share it.
    joined = "\n" + "\n".join(raw)
    if joined.count("\n") != len(raw):  # a name with a line break: one by one
        return tuple(map(canonical_name, raw))
    # One substitution over all names at once (each name starts after a line break): in C,
    # where one call per name cost 15-25 ms of a first scan of 18,867 names.
    names = _PREFIX_RUN_LINES.sub("\n", joined)[1:].split("\n")
    renamed = _HEAD_ALIASES.intersection(names) - {HEAD_NAME}  # usually none: no pass per name
    if renamed:
        names = [HEAD_NAME if n in renamed else n for n in names]
    return tuple(names)


# _PREFIX_RUN for every line of a joined name list ("." does not match the line break either).
_PREFIX_RUN_LINES = re.compile("\n(?:(?:" + "|".join(map(re.escape, _PREFIXES)) + ")(?=.))+")


def embedding_name(names: Set[str] | Mapping[str, object]) -> str | None:
    """The canonical name of the input embedding among ``names``, if any."""
    return next((n for n in EMBEDDING_NAMES if n in names), None)


def align_tied_heads(models: dict[str, dict[str, T]]) -> dict[str, dict[str, T]]:
    """Give models with tied embeddings an ``lm_head.weight`` pointing at their embedding.

    Only when at least one model stores a separate head: then a tied model's head *is* its
    embedding and must be compared with the others' heads. When every model is tied, nothing is
    added (reading the embedding twice would waste the budget).
    """
    if not any(HEAD_NAME in t for t in models.values()):
        return models
    out = {}
    for ref, tensors in models.items():
        emb = embedding_name(tensors)
        if HEAD_NAME not in tensors and emb is not None:
            tensors = {**tensors, HEAD_NAME: tensors[emb]}
        out[ref] = tensors
    return out


def layer_template(name: str) -> str | None:
    """The name with its layer index replaced by ``*`` (None outside the layer blocks).

    Tensors of different layers with one template play the same role, which is what passthrough
    ("frankenmerge") matching compares.

    >>> layer_template("layers.12.mlp.experts.3.up_proj.weight")
    'layers.*.mlp.experts.3.up_proj.weight'
    """
    m = _LAYER.search(name)
    if m is None:
        return None
    a, b = m.span(1)
    return name[:a] + "*" + name[b:]


# A whole numeric path component ("layers.12.", "experts.3."), not digits inside a module name ("w1").
_INDEX = re.compile(r"(?<![^.])(\d+)(?![^.])")
# Template (indices replaced by "#") -> (component, index of the layer number, index of the expert number).
# Bounded: a long-running service meets many architectures, and a hostile header many odd names.
_TEMPLATES: dict[str, tuple[str, int | None, int | None]] = {}
_TEMPLATES_MAX = 1 << 14


@lru_cache(maxsize=1 << 18)  # pure, and a 400B MoE has ~100k tensor names classified repeatedly
def classify(name: str) -> TensorKind:
    """Classify a canonical tensor name by layer, component and expert.

    Names that differ only in their layer or expert numbers are classified once: a MoE's
    100k names have a few dozen such templates.

    >>> classify("layers.0.input_layernorm.weight")
    TensorKind(layer=0, component='norm', expert=None)
    >>> classify("layers.2.mlp.gate.weight")
    TensorKind(layer=2, component='router', expert=None)
    >>> classify("lm_head.weight")
    TensorKind(layer=None, component='head', expert=None)
    """
    if "#" in name:  # it would pass for a template of another name ("layers.#.x" for "layers.1.x")
        return _classify(name)
    parts = _INDEX.split(name)
    template = "#".join(parts[0::2])
    spec = _TEMPLATES.get(template)
    if spec is None:
        kind = _classify(name)
        spec = _template_spec(name, kind)
        if spec is None:
            return kind
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        _TEMPLATES[template] = spec
    component, layer_at, expert_at = spec
    numbers = parts[1::2]
    return TensorKind(
        None if layer_at is None else int(numbers[layer_at]),
        component,
        None if expert_at is None else int(numbers[expert_at]),
    )


def _template_spec(name: str, kind: TensorKind) -> tuple[str, int | None, int | None] | None:
    """Which numeric components of ``name`` are its layer and expert (None: not expressible so)."""
    starts = [m.start(1) for m in _INDEX.finditer(name)]

    def at(pattern: re.Pattern[str], value: int | None) -> int | None | bool:
        if value is None:
            return None
        m = pattern.search(name)
        return starts.index(m.start(1)) if m is not None and m.start(1) in starts else False

    layer_at, expert_at = at(_LAYER, kind.layer), at(_EXPERT, kind.expert)
    if layer_at is False or expert_at is False:
        return None
    return kind.component, layer_at, expert_at


def _classify(name: str) -> TensorKind:
    m = _LAYER.search(name)
    layer = int(m.group(1)) if m else None
    parts = name.split(".")
    # The module name: the part before "weight"/"bias" (or the last part for bare parameters).
    module = parts[-2] if len(parts) >= 2 and parts[-1] in ("weight", "bias") else parts[-1]
    e = _EXPERT.search(name)
    if name == HEAD_NAME or (layer is None and name.startswith(("lm_head", "output.", "embed_out", "score."))):
        return TensorKind(None, "head")
    if _NORM.search(module):
        return TensorKind(layer, "norm")
    if layer is None and ("embed" in name or name.startswith(("wte.", "wpe."))):
        return TensorKind(None, "embedding")
    if e is not None:
        return TensorKind(layer, "expert", int(e.group(1)))
    if _ROUTER.search(name):
        return TensorKind(layer, "router")
    if ".experts." in f".{name}":
        # Fused expert tensors (E, out, in) hold every routed expert at once.
        return TensorKind(layer, "expert")
    if _ATTENTION.search(name):
        return TensorKind(layer, "attention")
    if _MLP.search(name):
        return TensorKind(layer, "mlp")
    return TensorKind(layer, "other")


# Every digit as "#": names that differ only in their digits have one *shape* (and one length).
_DIGITS = str.maketrans("0123456789", "#" * 10)
# Digit runs longer than this are not parsed in bulk (int64 columns; hostile headers hold anything).
_MAX_BULK_DIGITS = 9
_NONE = -1


class KindColumns(NamedTuple):
    """:func:`classify` of many names as columns: ``layer`` and ``expert`` ids (-1 for None), ``component``."""

    layer: np.ndarray
    component: np.ndarray
    expert: np.ndarray


@lru_cache(maxsize=8)  # by the whole name list, like _canonical_names: models of one scan share it
def kind_columns(names: tuple[str, ...]) -> KindColumns:
    """:func:`classify` of every name, computed in bulk.

    A large MoE has ~10^5 names but a few dozen shapes (names with their digits masked). Each
    shape is classified once; when its digit runs are whole dotted components, the layer and
    expert numbers sit at the same characters in every name of that shape and are read for all
    of them at once. Other shapes (``w1``, ``ln_2``: digits inside a module name can change the
    component) are classified name by name. Planning needs every name's kind before it can
    drop the experts no budget samples; one by one, that cost 70-110 ms of a fresh process's
    first scan of an 18,867-tensor checkpoint, in bulk about 20. The columns are shared by the
    cache, hence read-only.

    >>> kind_columns(("layers.2.mlp.experts.17.up_proj.weight", "norm.weight"))
    KindColumns(layer=array([ 2, -1]), component=array(['expert', 'norm'], dtype=object), expert=array([17, -1]))
    """
    n = len(names)
    out = KindColumns(np.full(n, _NONE, dtype=np.int64), np.empty(n, dtype=object), np.full(n, _NONE, dtype=np.int64))
    _fill_in_bulk(names, out)
    for column in out:
        column.flags.writeable = False
    return out


def _fill_in_bulk(names: tuple[str, ...], out: KindColumns) -> None:
    n = len(names)
    if not n:
        return
    joined = "\n".join(names)
    if joined.count("\n") != n - 1 or "#" in joined or not joined.isascii():
        _fill_one_by_one(names, range(n), out)  # names that would break the bulk split
        return
    shapes = joined.translate(_DIGITS).split("\n")
    ids = {shape: g for g, shape in enumerate(dict.fromkeys(shapes))}
    group = np.fromiter(map(ids.__getitem__, shapes), dtype=np.int64, count=n)
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(len(ids) + 1))
    for shape, g in ids.items():
        idx = order[bounds[g] : bounds[g + 1]]
        members = [names[i] for i in idx]
        spans = _number_spans(members[0], shape)
        if spans is None:
            _fill_one_by_one(members, idx, out)
            continue
        out.component[idx] = classify(members[0]).component
        if spans == (None, None):
            continue
        # Equal-length ASCII names: one row of characters per name.
        chars = np.frombuffer("".join(members).encode("ascii"), dtype=np.uint8).reshape(len(members), len(shape))
        for span, column in zip(spans, (out.layer, out.expert)):
            if span is not None:
                digits = chars[:, span[0] : span[1]].astype(np.int64) - ord("0")
                column[idx] = digits @ 10 ** np.arange(span[1] - span[0] - 1, -1, -1, dtype=np.int64)


def classify_many(names: Sequence[str]) -> list[TensorKind]:
    """``[classify(n) for n in names]``, in bulk (see :func:`kind_columns`).

    >>> classify_many(["layers.0.self_attn.q_proj.weight", "lm_head.weight"])
    [TensorKind(layer=0, component='attention', expert=None), TensorKind(layer=None, component='head', expert=None)]
    """
    cols = kind_columns(tuple(names))
    layer, expert = cols.layer.astype(object), cols.expert.astype(object)
    layer[cols.layer == _NONE] = None
    expert[cols.expert == _NONE] = None
    # Made in C: a Python call per TensorKind would cost as much as the classification saved.
    return list(map(partial(tuple.__new__, TensorKind), zip(layer.tolist(), cols.component.tolist(), expert.tolist())))


def _number_spans(name: str, shape: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None] | None:
    """Where ``name``'s layer and expert digits are, valid for every name of its ``shape``;
    None when its shape has digits inside a component or a run too long to parse in bulk."""
    runs = [part for part in shape.split(".") if "#" in part]
    if any(part.strip("#") or len(part) > _MAX_BULK_DIGITS for part in runs):
        return None
    kind = classify(name)
    found = []
    for pattern, value in ((_LAYER, kind.layer), (_EXPERT, kind.expert)):
        m = pattern.search(name) if value is not None else None
        found.append(m.span(1) if m is not None else None)
    return found[0], found[1]


def _fill_one_by_one(names: Sequence[str], idx: Iterable[int], out: KindColumns) -> None:
    cap = 2**62  # absurd numbers in hostile names still fit the int64 columns (and stay absurd)
    for i, name in zip(idx, names):
        kind = classify(name)
        out.component[i] = kind.component
        if kind.layer is not None:
            out.layer[i] = min(kind.layer, cap)
        if kind.expert is not None:
            out.expert[i] = min(kind.expert, cap)
