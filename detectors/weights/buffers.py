"""Read buffers aligned for the statistics kernels.

Big reads land in buffers whose first byte is 64-byte aligned, as torch's own allocations are.
A ``bytearray``'s data is only 16-byte aligned, and the compiled kernels (see
:mod:`~provbot.detectors.weights.kernels`) guard on input alignment: 16-byte-aligned inputs got a second
compiled graph (seconds, once per process) that also ran 10-15% slower than the aligned one.
The buffers are numpy arrays, which Linux backs with transparent huge pages when allowed: fewer
page faults while a full read fills gigabytes of them.

>>> buf = aligned_buffer(1000)
>>> len(buf), buf.readonly, np.frombuffer(buf, dtype=np.uint8).ctypes.data % ALIGNMENT
(1000, False, 0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Alignment of every buffer's first byte (a cache line; what torch's CPU allocator gives).
ALIGNMENT = 64
#: Reads at least this long get an aligned buffer; smaller ones (samples, headers) a bytearray.
ALIGNED_MIN_BYTES = 1 << 20

Buffer = bytes | bytearray | memoryview


def aligned_buffer(n: int) -> memoryview:
    """A writable, uninitialised ``n``-byte buffer whose first byte is ``ALIGNMENT``-aligned."""
    raw = np.empty(n + ALIGNMENT, dtype=np.uint8)
    skip = -raw.ctypes.data % ALIGNMENT
    return memoryview(raw[skip : skip + n].data)


def read_buffer(n: int) -> bytearray | memoryview:
    """A buffer to read ``n`` bytes into: aligned when the read is big enough to be fitted."""
    return aligned_buffer(n) if n >= ALIGNED_MIN_BYTES else bytearray(n)


def join(parts: Sequence[Buffer]) -> Buffer:
    """Concatenate read parts into one buffer (aligned when big); one part is passed on as it is."""
    if len(parts) == 1:
        return parts[0]
    out = read_buffer(sum(len(p) for p in parts))
    pos = 0
    for p in parts:
        out[pos : pos + len(p)] = p
        pos += len(p)
    return out
