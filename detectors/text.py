"""Text from files and Hub answers as data: kept as it is, and never a crash when printed or serialised.

JSON lets lone UTF-16 surrogates through (``"\\ud800"`` decodes to a str no UTF-8 encoder accepts), so
a tensor name, a shard name or a config value from a hostile file could otherwise break the JSON
report or the terminal output long after it was read. Such characters are written as their escape
here, where outside JSON enters the library; every other character is kept.

>>> as_text("layers.0.\\ud800.weight")
'layers.0.\\\\ud800.weight'
>>> as_data({"a\\udfff": ["ok", "\\ud800"]})
{'a\\\\udfff': ['ok', '\\\\ud800']}
>>> as_name("q_proj\\u202e.weight")
'q_proj\\\\u202e.weight'
"""

from __future__ import annotations

import unicodedata


def as_text(s: str) -> str:
    """``s`` with each lone surrogate written as its ``\\uXXXX`` escape (unchanged otherwise)."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def as_data(obj: object) -> object:
    """:func:`as_text` on every string of JSON-like data, keys included."""
    if isinstance(obj, str):
        return as_text(obj)
    if isinstance(obj, dict):
        return {as_text(k) if isinstance(k, str) else k: as_data(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [as_data(v) for v in obj]
    return obj


def as_name(s: str) -> str:
    """An identifier from a file (a tensor or shard name): :func:`as_text`, and control, format (bidi,
    zero-width) and surrogate characters written as ``\\uXXXX``, so that two names that print alike
    are alike. Letters of every script are kept."""
    if s.isascii() and s.isprintable():
        return s
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in s)
