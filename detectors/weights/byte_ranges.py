"""Byte ranges of files, and how few requests can fetch them.

The reader (:mod:`~provbot.detectors.weights.sources`) fetches what :func:`merge_ranges` makes of a plan's
ranges, and the planner (:mod:`~provbot.detectors.weights.sampling`) counts requests the same way.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

ByteRange = tuple[str, int, int]  # (file, start, end_exclusive)


def merge_ranges(ranges: Sequence[ByteRange], gap_bytes: int = 0) -> list[ByteRange]:
    """Sorted spans covering ``ranges``: touching ones joined, then the smallest gaps bridged
    while the bridged bytes total at most ``gap_bytes``.

    >>> merge_ranges([("f", 0, 10), ("f", 10, 20), ("f", 25, 30), ("f", 100, 110)], gap_bytes=5)
    [('f', 0, 30), ('f', 100, 110)]
    """
    spans = sorted({(f, s, e) for f, s, e in ranges})
    out: list[ByteRange] = []
    for f, s, e in spans:
        if out and out[-1][0] == f and s <= out[-1][2]:
            pf, ps, pe = out[-1]
            out[-1] = (pf, ps, max(pe, e))
        else:
            out.append((f, s, e))
    if gap_bytes <= 0 or len(out) < 2:
        return out
    gaps = sorted((b[1] - a[2], i) for i, (a, b) in enumerate(zip(out, out[1:])) if a[0] == b[0])
    bridge: set[int] = set()
    spent = 0
    for gap, i in gaps:
        if spent + gap > gap_bytes:
            break
        spent += gap
        bridge.add(i)
    joined: list[ByteRange] = [out[0]]
    for i, span in enumerate(out[1:]):
        if i in bridge:
            joined[-1] = (joined[-1][0], joined[-1][1], span[2])
        else:
            joined.append(span)
    return joined


def gap_for(ranges: Sequence[ByteRange], max_spans: int) -> int:
    """The fewest bridged bytes with which :func:`merge_ranges` makes at most ``max_spans`` spans
    (spans of different files never join: at least one per file remains).

    >>> r = [("f", 0, 10), ("f", 12, 20), ("f", 25, 30), ("f", 100, 110)]
    >>> gap_for(r, 2), len(merge_ranges(r, gap_for(r, 2)))
    (7, 2)
    >>> gap_for(r, 9)
    0
    """
    spans = merge_ranges(ranges)
    gaps = sorted(b[1] - a[2] for a, b in zip(spans, spans[1:]) if a[0] == b[0])
    extra = len(spans) - max(max_spans, 1)
    return sum(gaps[:extra]) if extra > 0 else 0


def containing(merged: list[ByteRange], file: str, start: int, end: int) -> ByteRange:
    """The span of ``merged`` (sorted, as :func:`merge_ranges` returns) that holds ``[start, end)`` of ``file``."""
    i = bisect.bisect_right(merged, (file, start, float("inf"))) - 1
    span = merged[i]
    assert span[0] == file and span[1] <= start and end <= span[2]
    return span
