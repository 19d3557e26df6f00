"""One repo-id validator, for valid and hostile ids; every shipped known base passes it."""

from __future__ import annotations

import pytest

from provbot.detectors.errors import NotFoundError
from provbot.detectors.hub import is_repo_id, is_revision, parse_ref

VALID = ["Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B", "org/model-1.5", "a/b", "Org_1/x.y_z"]
HOSTILE = [
    "gpt2",
    "../etc/passwd",
    "org/../x",
    "org/x--y",
    "a/b/c",
    "/abs/path",
    "org/",
    "/name",
    "org/x)[click](http://evil)",
    "org/x y",
    "org/\u202emodel",
    "оrg/cyrillic",
    "org/" + "x" * 97,
    "org/x.git",
    "-org/x",
    "",
]


@pytest.mark.parametrize("value", VALID)
def test_valid_ids(value: str) -> None:
    assert is_repo_id(value)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_ids(value: str) -> None:
    assert not is_repo_id(value)


def test_refs_and_revisions() -> None:
    assert parse_ref("org/x@refs/pr/3") == ("org/x", "refs/pr/3")
    assert is_revision("a" * 40) and not is_revision("../main") and not is_revision("main\nx")
    with pytest.raises(NotFoundError):
        parse_ref("org/x@")
    with pytest.raises(NotFoundError):
        parse_ref("org/x@../../y")


def test_every_known_base_is_a_repo_id() -> None:
    from provbot.bot.index.known import load_known_bases

    bad = [m for fam in load_known_bases() for m in fam.models if not is_repo_id(m)]
    assert bad == []
