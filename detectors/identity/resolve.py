"""Find a model's files: a local folder, or a Hub repo fetched through huggingface_hub (safetensors only).

``org/name`` or ``org/name@revision`` goes through ``snapshot_download`` against the configured endpoint
(the local Hub server in tests); pickled weights (``*.bin``, ``*.pt``) are never fetched nor loaded.

>>> split_ref("org/model@main")
('org/model', 'main')
>>> split_ref("org/model")
('org/model', None)
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pydantic import BaseModel

from provbot.detectors.errors import AccessDeniedError, NotFoundError, RemoteError
from provbot.detectors.identity.errors import ModelLoadError

_REPO = re.compile(r"^[\w.\-]+/[\w.\-]+$")
# Everything a chat model needs to load and declare its system prompt and names (the card); never pickles.
WEIGHT_PATTERNS = ["*.safetensors", "*.safetensors.index.json"]
META_PATTERNS = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "README.md"]


class ResolvedModel(BaseModel):
    ref: str
    path: Path
    revision: str


def split_ref(ref: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> ``("org/name", "rev")``."""
    repo, _, rev = ref.partition("@")
    return repo, (rev or None)


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
    ref: str, *, endpoint: str | None = None, token: str | None = None, weights: bool = True
) -> ResolvedModel:
    """Local folder or Hub repo -> a folder on disk. ``weights=False`` fetches only configs and templates."""
    local = Path(ref).expanduser()
    if local.is_dir():
        _require_safetensors(local, ref, weights)
        return ResolvedModel(ref=ref, path=local.resolve(), revision=fingerprint(local))
    repo, rev = split_ref(ref)
    if not _REPO.match(repo):
        raise NotFoundError(f"{ref}: neither a local folder nor an org/name Hub repo")
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download

    patterns = META_PATTERNS + (WEIGHT_PATTERNS if weights else [])
    try:
        path = Path(snapshot_download(repo, revision=rev, endpoint=endpoint, token=token, allow_patterns=patterns))
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError, hf_errors.EntryNotFoundError):
        raise NotFoundError(f"{ref}: repo or revision not found on {endpoint or 'the Hub'}") from None
    except hf_errors.GatedRepoError:
        raise AccessDeniedError(f"{ref}: access denied (gated or private; check the token)") from None
    except hf_errors.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise AccessDeniedError(f"{ref}: access denied (HTTP {status})") from None
        raise RemoteError(f"{ref}: Hub request failed (HTTP {status})") from None
    except (OSError, ValueError) as exc:  # connection refused, offline cache miss, bad repo id
        raise RemoteError(f"{ref}: could not download from {endpoint or 'the Hub'}: {type(exc).__name__}") from None
    _require_safetensors(path, ref, weights)
    return ResolvedModel(ref=ref, path=path, revision=path.name)


def _require_safetensors(path: Path, ref: str, weights: bool) -> None:
    if weights and not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise ModelLoadError(f"{ref}: only pickled weights (.bin/.pt); provbot loads safetensors only")
        raise ModelLoadError(f"{ref}: no .safetensors weights found")
    if not (path / "config.json").is_file() and weights:
        raise ModelLoadError(f"{ref}: no config.json")


__all__ = ["ResolvedModel", "resolve_model", "split_ref", "fingerprint"]
