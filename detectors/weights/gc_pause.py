"""Pausing Python's cycle collector while a scan builds its many small records.

A scan of a large MoE checkpoint creates hundreds of thousands of small objects in bursts (header
records, plans, statistics). Bursts like that trigger full collections, and each one walks every
object of the process, torch's included: pauses of 100-200 ms, several per scan, which made up a
good part of a sampled scan's wall time. The records hold no reference cycles, so there is
nothing for the collector to find; it runs again as soon as the last pauser leaves.

>>> import gc
>>> with gc_paused():
...     gc.isenabled()
False
>>> gc.isenabled()
True
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pausers = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cycle collector for the block; thread-safe and nestable.

    Only a collector that was enabled on entry is paused (and re-enabled when the last of the
    concurrent or nested pausers leaves): a caller that switched it off keeps it off.
    """
    global _pausers
    with _lock:
        if _pausers:
            _pausers += 1
        elif gc.isenabled():
            gc.disable()
            _pausers = 1
        mine = _pausers > 0
    try:
        yield
    finally:
        if mine:
            with _lock:
                _pausers -= 1
                if _pausers == 0:
                    gc.enable()
