"""The column form of the statistics (``StatsTable``) against the one-tensor records it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from provbot.detectors.weights.fit import (
    BatchSums,
    FitTable,
    StatsTable,
    TensorFit,
    aggregate,
    batch_sums,
    fit_tensors,
    pearson,
    rel_distance,
    tensor_stats,
)


def _records(seed: int = 0, tensors: int = 5):
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(tensors):
        base = torch.randn(3000, generator=g) + 0.5 * t  # means differ from tensor to tensor
        a = base + 0.1 * torch.randn(3000, generator=g)
        b = base + 0.1 * torch.randn(3000, generator=g)
        child = torch.where(torch.arange(3000) % 3 == 0, base, (0.3 + 0.1 * t) * a + (0.7 - 0.1 * t) * b)
        out.append(tensor_stats(child, [a, b, base], torch.bfloat16 if t % 2 else None))
    return out


def test_rows_of_a_table_are_its_records_and_take_concat_reorder_them():
    recs = _records()
    table = StatsTable.of(recs)
    assert len(table) == 5 and table.k == 3
    shares, eq_shares = table.sparse_shares(), table.eq_shares()
    for i, (rec, row) in enumerate(zip(recs, table)):
        for name in ("gram", "sums", "eq", "absdiff_eq", "absdiff_ne", "gram_new", "eq_big", "n_big"):
            assert np.array_equal(getattr(rec, name), getattr(row, name)), name
        assert (rec.n, rec.n_new, rec.eps) == (row.n, row.n_new, row.eps)
        assert [rec.sparse_share(j) for j in range(3)] == pytest.approx(list(shares[i]))
        assert list(rec.eq / rec.n) == pytest.approx(list(eq_shares[i]))
    shuffled = StatsTable.concat([table.take([4, 2]), table.take([0, 3, 1])])
    back = shuffled.take(np.argsort([4, 2, 0, 3, 1]))
    assert np.array_equal(back.gram, table.gram) and np.array_equal(back.n_new, table.n_new)
    assert len(StatsTable.empty(3)) == 0 and StatsTable.empty(3).gram.shape == (0, 4, 4) and StatsTable.empty(3).k == 3


def test_column_statistics_and_fits_equal_the_per_record_ones():
    recs = _records(seed=1)
    table = StatsTable.of(recs)
    assert np.allclose(pearson(table), np.stack([pearson(r) for r in recs]))
    assert np.allclose(rel_distance(table), np.stack([rel_distance(r) for r in recs]))
    for subset in ("all", "new"):
        for ref in range(3):
            by_table = fit_tensors(table, ref, subset)
            by_records = fit_tensors(recs, ref, subset)
            for x, y in zip(by_table, by_records):
                assert np.allclose(x.weights, y.weights) and np.allclose(x.se, y.se) and x.n == y.n
    # Aggregates of the column fits equal those of the records, and a tensor with r2 None stays out of R^2.
    fits = fit_tensors(table, 2)
    records = list(fits)
    records[0] = TensorFit(records[0].weights, records[0].se, records[0].t, None, 1e9, 1e9, records[0].n)
    by_rows, by_list = aggregate(FitTable.of(records, 3), 3), aggregate(records, 3)
    assert by_rows.r2 == pytest.approx(by_list.r2) and by_rows.r2 == pytest.approx(aggregate(records[1:], 3).r2)
    assert np.allclose(by_rows.ci, by_list.ci) and np.allclose(by_rows.z, by_list.z)
    # Where the child is not a copy of the base, it is the merge: the table's fit finds its weights.
    assert fit_tensors(table, 2, "new")[0].weights[:2] == pytest.approx([0.3, 0.7], abs=0.01)


def test_joined_batches_come_in_the_order_asked_for_with_chunks_summed():
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(4, 2048, generator=g) for _ in range(3)]
    whole = batch_sums(xs[0], xs[1:]).table()
    # Rows 0-2 whole; row 3 in two chunks, arriving in separate batches.
    first = batch_sums(xs[0][:3], [x[:3] for x in xs[1:]])
    c1 = batch_sums(xs[0][3:, :1024], [x[3:, :1024] for x in xs[1:]])
    c2 = batch_sums(xs[0][3:, 1024:], [x[3:, 1024:] for x in xs[1:]])
    joined = BatchSums.cat([c1, first, c2], ["d", "a", "b", "c", "d"], into=["c", "d", "a", "b"]).table()
    assert np.allclose(joined.gram, whole.take([2, 3, 0, 1]).gram) and list(joined.n) == [2048] * 4
    with pytest.raises(KeyError, match="e"):
        BatchSums.cat([first], ["a", "b", "c"], into=["a", "b", "c", "e"])
    with pytest.raises(KeyError, match="c"):
        BatchSums.cat([first], ["a", "b", "c"], into=["a", "b"])
