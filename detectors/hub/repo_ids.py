"""The one repo-id validator: every Hub repo name provbot accepts, from users, cards or listings.

huggingface_hub's :func:`~huggingface_hub.utils.validate_repo_id` rules (word characters, ``-``, ``.``,
at most 96 per part, no ``--`` or ``..``), plus: a namespace is required, ids are ASCII (they end
up in markdown and terminals) and at most one ``/``.

>>> is_repo_id("Qwen/Qwen3-8B"), is_repo_id("../etc/passwd"), is_repo_id("gpt2"), is_repo_id("a/b)[x](y")
(True, False, False, False)
>>> parse_ref("org/name@v1.0")
('org/name', 'v1.0')
"""

from __future__ import annotations

import re

from provbot.detectors.errors import NotFoundError

#: Branch, tag or commit names: git's refname characters that are safe in URLs and messages.
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,199}")


def is_repo_id(value: str) -> bool:
    """True when ``value`` is ``namespace/name`` as the Hub spells model ids."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hf_validate

    if not isinstance(value, str) or not value.isascii() or value.count("/") != 1:
        return False
    namespace, name = value.split("/")
    if not namespace or not name or not namespace[0].isalnum() or not name[0].isalnum():
        return False
    try:
        hf_validate(value)
    except HFValidationError:
        return False
    return True


def validate_repo_id(value: str) -> str:
    """``value`` when it is a repo id, else :class:`NotFoundError` naming it.

    >>> validate_repo_id("org/x--y")
    Traceback (most recent call last):
    provbot.detectors.errors.NotFoundError: 'org/x--y' is not a Hub repo id (namespace/name)
    """
    if not is_repo_id(value):
        raise NotFoundError(f"{value[:200]!r} is not a Hub repo id (namespace/name)")
    return value


def is_revision(value: str) -> bool:
    """A branch, tag or commit sha that is safe to put in a URL path and a message.

    >>> is_revision("main"), is_revision("refs/pr/1"), is_revision("../x"), is_revision("a b")
    (True, True, False, False)
    """
    return bool(_REVISION.fullmatch(value)) and ".." not in value and "//" not in value and not value.endswith("/")


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> ``("org/name", "rev")``; :class:`NotFoundError` when either part is invalid.

    >>> parse_ref("org/name")
    ('org/name', None)
    """
    repo, at, revision = ref.partition("@")
    validate_repo_id(repo)
    if at and not is_revision(revision):
        raise NotFoundError(f"{ref[:200]!r}: {revision[:100]!r} is not a revision (branch, tag or commit)")
    return repo, (revision or None)
