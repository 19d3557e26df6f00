"""Opening a model reference as a weight source: a local folder, a ``.gguf`` file, or a Hub repo.

A folder or repo holding safetensors weights is read as such; one holding only GGUF files is read as
its GGUF model (:mod:`~provbot.detectors.weights.gguf_source`). Hub repos share one client per
endpoint and token in a process.
"""

from __future__ import annotations

import threading
from pathlib import Path

from pydantic import SecretStr

from provbot.detectors.errors import NotFoundError
from provbot.detectors.hub import HubClient, parse_ref
from provbot.detectors.weights.gguf_source import GgufSource, pick_gguf, series_of
from provbot.detectors.weights.sources import HubSource, LocalSource, WeightSource


def open_source(
    ref: str,
    endpoint: str | None = None,
    token: str | SecretStr | None = None,
    concurrency: int = 16,
    client: HubClient | None = None,
) -> WeightSource:
    """Open ``ref``: an existing local directory, else a Hub repo ``org/name`` or ``org/name@revision``.

    Hub repos are read through ``client`` when given (the bot passes its own, with its retry
    policy), else through one client per endpoint and token shared in the process.

    >>> open_source("not a ref")
    Traceback (most recent call last):
    provbot.detectors.errors.NotFoundError: 'not a ref' is neither a local model directory nor a Hub repo id (org/name[@revision])
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return _local(LocalSource(path, ref=ref))
    if path.is_file() and path.suffix == ".gguf":
        return _gguf_file(path, ref)
    if path.is_file():
        raise NotFoundError(f"{ref} is a file: give the model directory that holds it (or a .gguf file)")
    if ref.startswith(("/", ".", "~")):
        raise NotFoundError(f"local model directory {ref} not found")
    try:
        repo, revision = parse_ref(ref)
    except NotFoundError:
        raise NotFoundError(
            f"{ref!r} is neither a local model directory nor a Hub repo id (org/name[@revision])"
        ) from None
    client = client or shared_client(endpoint, token)
    return hub_weights(HubSource(repo, revision, client=client, concurrency=concurrency, ref=ref))


_clients: dict[tuple[str | None, str | None], HubClient] = {}
_clients_lock = threading.Lock()


def shared_client(endpoint: str | None, token: str | SecretStr | None) -> HubClient:
    """One client per endpoint and token in a process: the sources of one scan then share its
    rate-limit gate (a 429 seen by one holds them all), its remembered CDN URLs and its counters."""
    secret = token.get_secret_value() if isinstance(token, SecretStr) else token
    with _clients_lock:
        client = _clients.get((endpoint, secret))
        if client is None:
            client = _clients[(endpoint, secret)] = HubClient(endpoint, token)
        return client


def _local(src: LocalSource) -> WeightSource:
    """A local folder: its safetensors checkpoint, or else its GGUF model (see gguf_source.pick_gguf)."""
    if any(src.path.glob("*.safetensors")):
        return src
    found = src.gguf_files()
    if not found:
        return src  # reading it says what is missing
    chosen = pick_gguf(found)
    if not chosen:
        return src
    return GgufSource(src, chosen)


def hub_weights(src: HubSource) -> WeightSource:
    """A Hub repo: its safetensors checkpoint, or else its GGUF model (a GGUF-only repo)."""
    if any(f.endswith(".safetensors") for f in src.siblings):
        return src
    chosen = pick_gguf(sorted(src.siblings))
    return GgufSource(src, chosen) if chosen else src


def _gguf_file(path: Path, ref: str) -> WeightSource:
    """One ``.gguf`` file given by path: that file, or the split model it is a part of."""
    src = LocalSource(path.parent, ref=ref)
    return GgufSource(src, series_of(path.name, src.gguf_files()))
