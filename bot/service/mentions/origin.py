"""Where a finding came from: a poll, or a mention (``mention:<repo>#<num>:<comment id>:<author>``).

>>> m = MentionRef(repo="a/m", num=3, comment_id="c9", author="alice")
>>> parse_origin(mention_origin(m)) == m, parse_origin("poll")
(True, None)
"""

from __future__ import annotations

from pydantic import BaseModel


class MentionRef(BaseModel):
    """The comment a mention-triggered scan answers."""

    repo: str
    num: int
    comment_id: str
    author: str


def parse_origin(origin: str) -> MentionRef | None:
    """``mention:<repo>#<num>:<comment id>:<author>`` back into its parts (None for polls)."""
    if not origin.startswith("mention:"):
        return None
    rest = origin[len("mention:") :]
    repo, _, tail = rest.partition("#")
    num, comment_id, author = tail.split(":", 2)
    return MentionRef(repo=repo, num=int(num), comment_id=comment_id, author=author)


def mention_origin(m: MentionRef) -> str:
    return f"mention:{m.repo}#{m.num}:{m.comment_id}:{m.author}"
