"""Scale fits gathered from a full read's batches (detectors.weights.rescale_stats)."""

from __future__ import annotations

import numpy as np
import torch

from provbot.detectors.weights.reader import canonical_models, iter_full_batches
from provbot.detectors.weights.rescale_stats import RescaleCollector
from provbot.detectors.weights.sampling import plan_sample
from provbot.detectors.weights.scale_fit import grid
from provbot.detectors.weights.sources import LocalSource
from tests.weights.builders import write_model, write_quantized


def _state(seed: int) -> dict[str, torch.Tensor]:
    # 2,100 inputs: a grid stride of 2, and rows that chunks of 1,000 elements cut anywhere.
    g = torch.Generator().manual_seed(seed)
    return {
        "layers.0.mlp.up_proj.weight": torch.randn(24, 2100, generator=g),
        "layers.0.mlp.down_proj.weight": torch.randn(2100, 24, generator=g),
        "layers.0.post_attention_layernorm.weight": 1 + 0.1 * torch.randn(2100, generator=g),
    }


def _collect(sources: list[LocalSource], chunk: int) -> RescaleCollector:
    plan = plan_sample(canonical_models(sources), None, full=True)
    collector = RescaleCollector([s.ref for s in sources], keep_below=1.0)
    for batch in iter_full_batches(sources, plan, chunk_elements=chunk, device="cpu"):
        collector.add(batch)
    return collector


def test_a_quantized_child_read_in_chunks_is_fitted_as_if_whole(tmp_path) -> None:
    parent = _state(0)
    ref = write_quantized(tmp_path / "child", parent, "fp8_row")  # fp8 matrices: decoded, so fitted
    sources = [LocalSource(tmp_path / "child"), LocalSource(write_model(tmp_path / "a", parent))]
    chunked, whole = _collect(sources, chunk=1000).result(), _collect(sources, chunk=10**6).result()
    assert (
        sorted(chunked.fits) == sorted(whole.fits) == ["layers.0.mlp.down_proj.weight", "layers.0.mlp.up_proj.weight"]
    )
    for name, fits in chunked.fits.items():
        a, b = fits[0], whole.fits[name][0]
        assert (a.rows, a.cols) == (b.rows, b.cols) and a.n == grid(ref[name]).numel()
        assert np.isclose(a.rss, b.rss, rtol=1e-5) and np.isclose(a.plain_rss, b.plain_rss, rtol=1e-5)
        assert np.array_equal(a.log_cols, b.log_cols) and np.array_equal(a.log_rows, b.log_rows)
        assert a.plain_rel() < 0.05  # an fp8 copy: only rounding between them
    # The norm is kept on the grid of its length, for every model, to check column scales against.
    norm = chunked.vectors["layers.0.post_attention_layernorm.weight"]
    assert norm.shape == (2, 1050)
    assert np.allclose(norm[1], grid(parent["layers.0.post_attention_layernorm.weight"]).numpy())


def test_float_matrices_of_the_child_are_not_fitted(tmp_path) -> None:
    parent = _state(0)
    sources = [LocalSource(write_model(tmp_path / n, parent)) for n in ("child", "a")]
    stats = _collect(sources, chunk=1000).result()
    assert stats.fits == {} and list(stats.vectors) == ["layers.0.post_attention_layernorm.weight"]
