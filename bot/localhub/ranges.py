"""HTTP ``Range`` header parsing for file responses (single ranges, as the Hub's CDN serves them).

>>> parse_range("bytes=0-99", 1000)
(0, 99)
>>> parse_range("bytes=990-2000", 1000)   # clipped to the file, like every HTTP server
(990, 999)
>>> parse_range("bytes=-10", 1000)
(990, 999)
>>> parse_range(None, 1000) is None
True
"""

from __future__ import annotations

import re

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(Exception):
    """The range is malformed, multiple, or starts past the end of the file (answer 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (first, last) byte positions, or None for the whole file."""
    if header is None or not header.strip():
        return None
    match = _RANGE_RE.match(header)
    if match is None:
        raise RangeNotSatisfiable(header)
    first_s, last_s = match.groups()
    if first_s == "" and last_s == "":
        raise RangeNotSatisfiable(header)
    if first_s == "":  # suffix range: the last N bytes
        n = int(last_s)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size - 1
    first = int(first_s)
    last = size - 1 if last_s == "" else int(last_s)
    if first >= size or last < first:
        raise RangeNotSatisfiable(header)
    return first, min(last, size - 1)
