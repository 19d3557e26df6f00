"""Add models to the index: read headers and sketch bytes, fingerprint, store. One model's failure
never stops a batch; it is recorded (``index_failures``) and reported as one line.

>>> outcomes = add_models(["/no/such/folder"], IndexStore("sqlite://"))   # doctest: +SKIP
>>> outcomes[0].status, outcomes[0].message                                # doctest: +SKIP
('failed', '/no/such/folder: ...')
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from provbot.bot.index.errors import IndexError_
from provbot.bot.index.fingerprint import Fingerprint, fingerprint
from provbot.bot.index.sketch import Sketch, read_sketch
from provbot.bot.index.store import IndexEntry, IndexStore
from provbot.detectors.declared import Declared, declared_from_folder, declared_from_info
from provbot.detectors.errors import ProvbotError

log = logging.getLogger(__name__)

Status = Literal["added", "updated", "unchanged", "failed"]


class AddOutcome(BaseModel):
    """What happened to one model of a batch."""

    ref: str
    status: Status
    revision: str | None = None
    family_key: str | None = None
    message: str | None = None


class Indexed(BaseModel):
    """A model read for the index (also what candidate selection computes for a child)."""

    model_config = {"arbitrary_types_allowed": True}

    ref: str
    source: Literal["hub", "local"]
    revision: str | None
    fingerprint: Fingerprint
    declared: Declared
    sketch: Sketch | None


def is_local(ref: str) -> bool:
    """A reference is a local folder when it exists on disk or looks like a path."""
    return Path(ref).expanduser().exists() or ref.startswith(("/", "./", "../", "~"))


def split_ref(ref: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> (``org/name``, ``rev``).

    >>> split_ref("acme/m@v1"), split_ref("acme/m")
    (('acme/m', 'v1'), ('acme/m', None))
    """
    repo, _, rev = ref.partition("@")
    return repo, (rev or None)


def index_key(ref: str) -> str:
    """The key a model is stored under: the absolute folder, or the repo id without revision."""
    if is_local(ref):
        return str(Path(ref).expanduser().resolve())
    return split_ref(ref)[0]


def hub_revision(ref: str, *, endpoint: str | None, token: str | None) -> tuple[str | None, Declared]:
    """The commit a Hub ref resolves to, and its declared lineage (one API call)."""
    from huggingface_hub import HfApi

    from provbot.bot.index.hubcalls import hub_call

    repo, rev = split_ref(ref)
    api = HfApi(endpoint=endpoint, token=token or False)
    info = hub_call(lambda: api.model_info(repo, revision=rev), what=ref)
    return getattr(info, "sha", None), declared_from_info(info)


def read_model(
    ref: str,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    revision: str | None = None,
    declared: Declared | None = None,
) -> Indexed:
    """Open ``ref``, fingerprint it and read its sketch (headers plus a few hundred KB)."""
    from provbot.detectors.weights.sources import open_source

    local = is_local(ref)
    if not local and (revision is None or declared is None):
        sha, meta = hub_revision(ref, endpoint=endpoint, token=token)
        revision, declared = revision or sha, declared or meta
    open_ref = ref if local or revision is None or "@" in ref else f"{ref}@{revision}"
    with open_source(open_ref, endpoint=endpoint, token=token) as source:
        tensors = source.tensors()
        if not tensors:
            raise IndexError_(f"{ref}: no safetensors weights found")
        config = source.config()
        fp = fingerprint(config if isinstance(config, dict) else {}, tensors, ref)
        sketch = read_sketch(source, tensors) if not fp.quantized else None
    if sketch is not None and not sketch.entries:
        sketch = None
    if local:
        folder = Path(ref).expanduser().resolve()
        declared = declared_from_folder(folder)
        # A local folder has no commit: its revision is a digest of what the index saw of it.
        digest = hashlib.sha256(fp.family_key.encode() + (sketch.to_bytes() if sketch else b"")).hexdigest()[:16]
        revision = f"local-{digest}"
    return Indexed(
        ref=index_key(ref),
        source="local" if local else "hub",
        revision=revision,
        fingerprint=fp,
        declared=declared or Declared(),
        sketch=sketch,
    )


def add_models(
    refs: Iterable[str],
    store: IndexStore,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    force: bool = False,
    is_base: bool = False,
    family_name: str | None = None,
    known: dict[str, tuple[str | None, Declared]] | None = None,
    progress: Callable[[AddOutcome], None] | None = None,
) -> list[AddOutcome]:
    """Index each ref; a Hub model already indexed at the same commit is skipped unless ``force``.

    ``known`` maps refs to (commit, declared lineage) already fetched (the crawl gets them from the
    listing), saving one API call per model.
    """
    outcomes = []
    for ref in refs:
        outcome = add_one(
            ref,
            store,
            endpoint=endpoint,
            token=token,
            force=force,
            is_base=is_base,
            family_name=family_name,
            known=(known or {}).get(ref),
        )
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    return outcomes


def add_one(
    ref: str,
    store: IndexStore,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    force: bool = False,
    is_base: bool = False,
    family_name: str | None = None,
    known: tuple[str | None, Declared] | None = None,
) -> AddOutcome:
    key = index_key(ref)
    revision: str | None = None
    try:
        declared = None
        if not is_local(ref):
            revision, declared = known if known is not None else hub_revision(ref, endpoint=endpoint, token=token)
            if not force and revision is not None and store.revision_of(key) == revision:
                return AddOutcome(ref=key, status="unchanged", revision=revision)
        model = read_model(ref, endpoint=endpoint, token=token, revision=revision, declared=declared)
        revision = model.revision
        status = store.upsert(
            IndexEntry(
                ref=model.ref,
                source=model.source,
                revision=model.revision,
                fingerprint=model.fingerprint,
                declared=model.declared,
                is_base=is_base,
                family_name=family_name,
                sketch=model.sketch,
            )
        )
        return AddOutcome(ref=key, status=status, revision=revision, family_key=model.fingerprint.family_key)
    except ProvbotError as exc:
        message = _one_line(exc, ref)
    except Exception as exc:  # a bug or an unforeseen fault must not cost the rest of the batch
        log.debug("indexing %s failed", ref, exc_info=True)
        message = _one_line(exc, ref, unexpected=True)
    try:
        store.record_failure(key, revision, message)
    except ProvbotError:
        log.warning("could not record the failure of %s", ref)
    return AddOutcome(ref=key, status="failed", revision=revision, message=message)


def _one_line(exc: BaseException, ref: str, unexpected: bool = False) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if unexpected:
        text = f"unexpected {type(exc).__name__}: {text}"
    return text if ref in text or Path(ref).name in text else f"{ref}: {text}"
