"""Can the identity test run on this machine? (the bot's "small enough for the hardware" rule)

The parameter count comes from safetensors headers only: a local folder's files, or the Hub's
safetensors metadata (a couple of small range requests), never the weights.

>>> Feasibility(ok=True, params_b=0.5, reason="0.5B parameters fit the CPU limit of 1.0B").ok
True
"""

from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path

from pydantic import BaseModel

from detectors.identity.resolve import split_ref

_MAX_HEADER = 25_000_000


class Feasibility(BaseModel):
    ok: bool
    params_b: float | None
    reason: str


def _local_params(path: Path) -> int:
    total = 0
    for f in sorted(path.glob("*.safetensors")):
        with f.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ValueError(f"{f.name}: truncated")
            (n,) = struct.unpack("<Q", raw)
            if n > _MAX_HEADER:
                raise ValueError(f"{f.name}: header too large")
            header = json.loads(fh.read(n))
        total += sum(prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


def parameter_count(ref: str, *, endpoint: str | None = None, token: str | None = None) -> int | None:
    """Total parameters of ``ref`` from safetensors headers; None if they cannot be read."""
    local = Path(ref).expanduser()
    try:
        if local.is_dir():
            return _local_params(local) or None
        from huggingface_hub import HfApi

        repo, rev = split_ref(ref)
        meta = HfApi(endpoint=endpoint, token=token).get_safetensors_metadata(repo, revision=rev)
        return sum(meta.parameter_count.values()) or None
    except Exception:  # I/O, malformed headers, Hub errors (not found, gated, no safetensors): size unknown
        return None


def can_run_identity(ref: str, settings=None, *, cuda: bool | None = None, endpoint_configured: bool | None = None,
                     hub_endpoint: str | None = None, token: str | None = None) -> Feasibility:
    """Whether the bot should run the identity test on ``ref``: an endpoint is configured, or the model
    fits ``identity.max_local_params_b_gpu`` (CUDA present) / ``..._cpu``."""
    if settings is None:
        from bot.settings import get_settings

        settings = get_settings()
    ident = settings.identity
    if endpoint_configured is None:
        endpoint_configured = ident.backend == "openai" and bool(ident.endpoint)
    if endpoint_configured:
        return Feasibility(ok=True, params_b=None, reason="an OpenAI-compatible endpoint is configured")
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    limit = ident.max_local_params_b_gpu if cuda else ident.max_local_params_b_cpu
    where = "GPU" if cuda else "CPU"
    n = parameter_count(ref, endpoint=hub_endpoint or settings.hub_endpoint, token=token)
    if n is None:
        return Feasibility(ok=False, params_b=None, reason="parameter count unknown (no readable safetensors headers)")
    b = n / 1e9
    if b > limit:
        return Feasibility(ok=False, params_b=b, reason=f"{b:.3g}B parameters exceed the {where} limit of {limit}B")
    return Feasibility(ok=True, params_b=b, reason=f"{b:.3g}B parameters fit the {where} limit of {limit}B")
