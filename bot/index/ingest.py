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
from provbot.detectors.declared import Declared, declared_from_folder
from provbot.detectors.errors import ProvbotError, RateLimitedError, UnreachableError
from provbot.detectors.hub import HubClient, ModelInfo, parse_ref

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
    return parse_ref(ref)


def index_key(ref: str) -> str:
    """The key a model is stored under: the absolute folder, or the repo id without revision."""
    if is_local(ref):
        return str(Path(ref).expanduser().resolve())
    return ref.partition("@")[0]


def read_model(
    ref: str,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    client: HubClient | None = None,
    info: ModelInfo | None = None,
    want_sketch: Callable[[Fingerprint], bool] | None = None,
) -> Indexed:
    """Open ``ref``, fingerprint it and read its sketch (headers plus a few hundred KB).

    For a Hub repo, ``info`` (its ``model_info`` with sha and files) saves the one API call.
    ``want_sketch`` sees the fingerprint (config and headers only) first: when it says no, no
    weight byte is read and ``sketch`` is None.
    """
    from provbot.detectors.weights.gguf_source import GgufSource
    from provbot.detectors.weights.opening import hub_weights, open_source, shared_client
    from provbot.detectors.weights.sources import HubSource, WeightSource

    local = is_local(ref)
    source: WeightSource
    if local:
        source = open_source(ref)
    else:
        repo, rev = split_ref(ref)
        # The process's client for this Hub and token: a scan that follows (scan_with_index) then
        # reuses the CDN URLs this read resolved.
        client = client or shared_client(endpoint, token)
        source = hub_weights(HubSource(repo, rev, client=client, info=info, ref=ref))
    with source:
        tensors = source.tensors()
        if not tensors:
            raise IndexError_(f"{ref}: no safetensors or GGUF weights found")
        config = source.config()
        fp = fingerprint(config if isinstance(config, dict) else {}, tensors, ref)
        wanted = not fp.quantized and (want_sketch is None or want_sketch(fp))
        sketch = read_sketch(source, tensors) if wanted else None
    if sketch is not None and not sketch.entries:
        sketch = None
    hub = source.inner if isinstance(source, GgufSource) else source  # a GGUF repo reads through its HubSource
    if isinstance(hub, HubSource):
        revision: str | None = hub.sha
        declared = source.declared()
    else:
        declared = declared_from_folder(Path(ref).expanduser())
        # A local folder has no commit: its revision is a digest of what the index saw of it.
        digest = hashlib.sha256(fp.family_key.encode() + (sketch.to_bytes() if sketch else b"")).hexdigest()[:16]
        revision = f"local-{digest}"
    return Indexed(
        ref=index_key(ref),
        source="local" if local else "hub",
        revision=revision,
        fingerprint=fp,
        declared=declared,
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
    progress: Callable[[AddOutcome], None] | None = None,
    client: HubClient | None = None,
) -> list[AddOutcome]:
    """Index each ref; a Hub model already indexed at the same commit is skipped unless ``force``."""
    outcomes = []
    client = client or HubClient(endpoint, token)
    for ref in refs:
        outcome = add_one(
            ref,
            store,
            endpoint=endpoint,
            token=token,
            force=force,
            is_base=is_base,
            family_name=family_name,
            client=client,
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
    client: HubClient | None = None,
    info: ModelInfo | None = None,
) -> AddOutcome:
    """Index one ref. ``info``: the repo's ``model_info`` when already known (the crawl has it from
    the listing), saving the API call."""
    key = index_key(ref)
    revision: str | None = None
    try:
        if not is_local(ref):
            client = client or HubClient(endpoint, token)
            if info is None:
                repo, rev = split_ref(ref)
                info = client.model_info(repo, rev)
            revision = info.sha
            if not force and revision is not None and store.revision_of(key) == revision:
                return AddOutcome(ref=key, status="unchanged", revision=revision)
        model = read_model(ref, endpoint=endpoint, token=token, client=client, info=info)
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
    except (UnreachableError, RateLimitedError):
        raise  # the rest of the batch would fail the same way: stop now, say it once
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
