"""Names as models write them: cleaning untrusted text, one key per spelling, patterns that find any spelling.

Answers come from models nobody vetted, so everything here is bounded: text is cut before and after
Unicode normalisation, invisible and private-use characters are dropped, and the patterns built from a
name hold no nested repetition (no catastrophic backtracking).

Spellings of one name share a key: case, punctuation, spaces and hyphens do not count.

>>> name_key("Nex-AGI") == name_key("Nex AGI") == name_key("NexAGI") == name_key("ｎｅｘ agi")
True
>>> segments("NexAGI"), segments("Qwen2.5-Max"), segments("Kallo Works")
(['Nex', 'AGI'], ['Qwen', '2', '5', 'Max'], ['Kallo', 'Works'])
>>> bool(spelling_pattern(["Kallo Works"]).search("built by Kallo-Works in Tromvik"))
True
"""

from __future__ import annotations

import re
import unicodedata

# An answer is at most a few thousand characters; anything longer is cut before it is scanned.
MAX_TEXT_CHARS = 8_000
MAX_NAME_CHARS = 48
SEPARATORS = "-_. \u00a0/"
_SEP_CLASS = r"[\s\-_./]?"

# Zero-width and direction marks (Cf), surrogates (Cs), private use (Co), unassigned (Cn): invisible or
# meaningless in a name, and a way to make one name look like two.
_DROP_CATEGORIES = {"Cf", "Cs", "Co", "Cn"}
_BLANKS = re.compile(r"\s{2,}")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "\u201c": '"', "\u201d": '"'})


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """NFKC-normalised text without invisible characters, control characters as spaces, cut to ``limit``.

    >>> clean_text("I am N\\u200bex\\u0000, ｆｒｏｍ  Nex\\u2011AGI")
    'I am Nex , from Nex-AGI'
    """
    if not isinstance(text, str):
        return ""
    text = text[:limit]
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in _DROP_CATEGORIES:
            continue
        out.append(" " if cat == "Cc" and ch not in "\n\t" else ch)
    text = unicodedata.normalize("NFKC", "".join(out))[:limit]  # NFKC can lengthen text (ligatures)
    # One space (or newline) per run: the extractor's patterns then never rescan long runs of blanks.
    text = _BLANKS.sub(lambda m: "\n" if "\n" in m.group() else " ", text)
    # NFKC keeps the non-breaking hyphen as is: fold the dash family into "-" so spellings compare.
    text = re.sub(r"[\u2010\u2011\u2012\u2013\u2212]", "-", text)
    return text.translate(_QUOTES)


def name_key(name: str) -> str:
    """The key that spellings of one name share: casefolded letters and digits only."""
    return "".join(ch for ch in clean_text(name, MAX_NAME_CHARS * 2).casefold() if ch.isalnum())


def key_prefixes(name: str) -> list[str]:
    """The name's key, then the keys of its leading parts, longest first: a versioned name
    ("Llama 3", "Zorvex-2") also matches the plain one. ``key_prefixes("Qwen2.5") == ["qwen25", "qwen2", "qwen"]``."""
    parts = [name_key(p) for p in segments(name)]
    return ["".join(parts[:end]) for end in range(len(parts), 0, -1)]


def is_cjk(ch: str) -> bool:
    """Chinese, Japanese and Korean characters (no case, no spaces between words)."""
    o = ord(ch)
    return (
        0x3040 <= o <= 0x30FF
        or 0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0xAC00 <= o <= 0xD7AF
        or 0x31F0 <= o <= 0x31FF
        or 0x20000 <= o <= 0x2FFFF
    )


def segments(name: str) -> list[str]:
    """The parts a name is spelled with: split at separators, lower-to-upper humps and letter/digit edges."""
    parts: list[str] = []
    for chunk in re.split(r"[\s\-_./]+", clean_text(name, MAX_NAME_CHARS * 2)):
        current = ""
        for ch in chunk:
            if not ch.isalnum():
                continue
            if current and _boundary(current[-1], ch):
                parts.append(current)
                current = ""
            current += ch
        if current:
            parts.append(current)
    return parts


def _boundary(prev: str, ch: str) -> bool:
    if prev.isdigit() != ch.isdigit():
        return True
    if prev.islower() and ch.isupper():
        return True
    return is_cjk(prev) != is_cjk(ch)


def spelling_pattern(spellings: list[str]) -> re.Pattern[str]:
    """One regex that finds any spelling of the name(s): parts joined by an optional separator.

    The first letter keeps its case (a persona called "Sage" is not the word "sage"); the rest ignores
    case. Edges that are letters or digits need a word boundary; CJK edges match anywhere.

    >>> p = spelling_pattern(["Nex-AGI"])
    >>> [bool(p.search(t)) for t in ("by NexAGI.", "by Nex agi", "by nex-agi", "the NexAGIs")]
    [True, True, False, False]
    """
    alts: list[str] = []
    for spelling in dict.fromkeys(spellings):
        parts = segments(spelling)
        if not parts:
            continue
        head = re.escape(parts[0][0])
        body = re.escape(parts[0][1:]) + "".join(_SEP_CLASS + re.escape(p) for p in parts[1:])
        first, last = parts[0][0], parts[-1][-1]
        left = "" if is_cjk(first) else r"(?<![^\W_])"
        right = "" if is_cjk(last) else r"(?![^\W_])"
        alts.append(f"{left}{head}(?i:{body}){right}")
    # Longest first, as with the alias table, so a longer spelling wins inside one alternation.
    alts.sort(key=len, reverse=True)
    return re.compile("|".join(alts) if alts else r"(?!x)x")
