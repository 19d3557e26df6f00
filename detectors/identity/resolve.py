"""Find a model's files: a local folder, or a Hub repo fetched through the Hub client (safetensors only).

``org/name`` or ``org/name@revision`` is resolved to its commit, then its files are downloaded
(pinned to that commit) into the Hugging Face cache folder; pickled weights (``*.bin``, ``*.pt``) are
never fetched nor loaded, and a repo that has only those is refused before anything is downloaded.

>>> split_ref("org/model@main")
('org/model', 'main')
>>> split_ref("org/model")
('org/model', None)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel

from provbot.detectors.errors import NotFoundError
from provbot.detectors.hub import PICKLE_SUFFIXES, HubClient, parse_ref
from provbot.detectors.identity.errors import ModelLoadError

# Everything a chat model needs to load and declare its system prompt and names (the card); never pickles.
WEIGHT_PATTERNS = ["*.safetensors", "*.safetensors.index.json"]
META_PATTERNS = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "README.md"]


class ResolvedModel(BaseModel):
    ref: str
    path: Path
    revision: str


def split_ref(ref: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> ``("org/name", "rev")`` (NotFoundError when it is not a Hub ref)."""
    return parse_ref(ref)


def fingerprint(path: Path) -> str:
    """A content id for a local model folder: hash of config, templates and each safetensors header and size.

    Cheap (headers only) yet changes whenever weights are rewritten, so cached answers stay honest.
    """
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if not f.is_file():
            continue
        h.update(f.name.encode())
        if f.suffix == ".safetensors":
            h.update(str(f.stat().st_size).encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 16))
        elif f.suffix in (".json", ".jinja", ".txt") and f.stat().st_size < (8 << 20):
            h.update(f.read_bytes())
    return "local-" + h.hexdigest()[:16]


def resolve_model(
    ref: str,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    weights: bool = True,
    client: HubClient | None = None,
) -> ResolvedModel:
    """Local folder or Hub repo -> a folder on disk. ``weights=False`` fetches only configs and templates."""
    local = Path(ref).expanduser()
    if local.is_dir():
        _require_safetensors(local, ref, weights)
        return ResolvedModel(ref=ref, path=local.resolve(), revision=fingerprint(local))
    try:
        repo, rev = parse_ref(ref)
    except NotFoundError:
        raise NotFoundError(f"{ref}: neither a local folder nor an org/name Hub repo") from None
    client = client or HubClient(endpoint, token)
    # Not found, access denied, unreachable and rate limited stay distinct errors from here on.
    info = client.model_info(repo, rev)
    names = info.filenames
    if weights and not any(n.endswith(".safetensors") for n in names):
        if any(n.lower().endswith(PICKLE_SUFFIXES) for n in names):
            raise ModelLoadError(f"{ref}: only pickled weights (.bin/.pt); provbot loads safetensors only")
        raise ModelLoadError(f"{ref}: no .safetensors weights found")
    patterns = META_PATTERNS + (WEIGHT_PATTERNS if weights else [])
    path = client.snapshot(repo, snapshots_dir(repo), revision=info.sha, allow=patterns, info=info)
    _require_safetensors(path, ref, weights)
    return ResolvedModel(ref=ref, path=path, revision=info.sha or path.name)


def snapshots_dir(repo: str) -> Path:
    """Where a Hub repo's files are kept: one folder per commit under the Hugging Face cache."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / "provbot" / ("models--" + repo.replace("/", "--"))


def _require_safetensors(path: Path, ref: str, weights: bool) -> None:
    if weights and not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise ModelLoadError(f"{ref}: only pickled weights (.bin/.pt); provbot loads safetensors only")
        raise ModelLoadError(f"{ref}: no .safetensors weights found")
    if not (path / "config.json").is_file() and weights:
        raise ModelLoadError(f"{ref}: no config.json")


__all__ = ["ResolvedModel", "resolve_model", "split_ref", "fingerprint"]
