"""``@provbot scan`` commands: what a mention asks for.

Mentions inside code (fenced, indented or inline), quotes and HTML comments are ignored, so quoting
someone else's request, or documentation showing the syntax, triggers nothing.

>>> parse_mention("Please @provbot scan against org/a org/b base org/b", "provbot")
MentionCommand(command='scan', against=['org/a', 'org/b'], base='org/b', problems=[])
>>> parse_mention("> @provbot scan", "provbot") is None, parse_mention("`@provbot scan`", "provbot") is None
(True, True)
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from provbot.detectors.hub import is_repo_id


class MentionCommand(BaseModel):
    """What a mention asks for. ``problems`` lists the parts that could not be understood."""

    command: Literal["scan"]
    against: list[str] = Field(default_factory=list)
    base: str | None = None
    problems: list[str] = Field(default_factory=list)


_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,}).*?(?:^\1?\2[`~]*[ \t]*$|\Z)", re.M | re.S)
_INDENTED = re.compile(r"^(?: {4,}|\t).*$", re.M)
_BACKTICKS = re.compile(r"`+")
MAX_COMMENT_CHARS = 100_000
_QUOTE = re.compile(r"^[ \t]{0,3}>.*$", re.M)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)


def strip_code_spans(text: str) -> str:
    """Remove inline code spans: a run of n backticks up to the next run of exactly n.

    One pass over the backtick runs (a backtracking regex took minutes on a comment of a few
    thousand backticks). An opening run without a closing one stays as text.

    >>> strip_code_spans("a `@provbot scan` b ``x ` y`` c `open")
    'a   b   c `open'
    """
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(text)]
    # next_same[i]: the next run after i with the same length (or -1), found from the right.
    next_same, last = [-1] * len(runs), {}
    for i in range(len(runs) - 1, -1, -1):
        n = runs[i][1] - runs[i][0]
        next_same[i], last[n] = last.get(n, -1), i
    out, pos, i = [], 0, 0
    while i < len(runs):
        j = next_same[i]
        if j < 0:
            i += 1
            continue
        out += [text[pos : runs[i][0]], " "]
        pos, i = runs[j][1], j + 1
    out.append(text[pos:])
    return "".join(out)


def strip_non_prose(markdown: str) -> str:
    """Remove code blocks, code spans, block quotes and HTML comments from ``markdown``."""
    text = markdown.replace("\r\n", "\n")
    text = _HTML_COMMENT.sub(" ", text)
    text = _FENCE.sub(" ", text)
    text = _INDENTED.sub(" ", text)
    text = strip_code_spans(text)
    text = _QUOTE.sub(" ", text)
    return text


def parse_mention(markdown: str, bot_username: str) -> MentionCommand | None:
    """The first ``@<bot> scan ...`` command in the prose of ``markdown``, or None.

    Arguments run to the end of the line: ``against <repo>...`` and ``base <repo>``. Only the first
    ``MAX_COMMENT_CHARS`` characters are read (the Hub keeps comments far shorter).
    """
    prose = strip_non_prose(markdown[:MAX_COMMENT_CHARS])
    pattern = re.compile(rf"(?<![\w@/.-])@{re.escape(bot_username)}\b[ \t]+scan\b([^\n]*)", re.I)
    match = pattern.search(prose)
    if match is None:
        return None
    cmd = MentionCommand(command="scan")
    section: str | None = None
    for token in match.group(1).split():
        word = token.strip(",;.")  # "org/a, org/b." reads naturally
        low = word.lower()
        if low in ("against", "base"):
            section = low
            continue
        if not word:
            continue
        if section is None:
            continue  # ordinary words after the command ("scan please") are fine
        if not is_repo_id(word):
            cmd.problems.append(f"{word[:80]!r} is not a model id (org/name)")
            continue
        if section == "against":
            if word not in cmd.against:
                cmd.against.append(word)
        elif cmd.base is None:
            cmd.base = word
        else:
            cmd.problems.append("only one base can be given")
    if len(cmd.against) > 8:
        cmd.problems.append("at most 8 models can be compared at once")
    return cmd
