"""Can the identity test run on this machine? (the bot's "small enough for the hardware" rule)

The parameter count comes from safetensors headers only: a local folder's files, or the Hub's
safetensors metadata (a couple of small range requests), never the weights.

>>> Feasibility(ok=True, params_b=0.5, reason="0.5B parameters fit the CPU limit of 1.0B").ok
True
"""

from __future__ import annotations

from math import prod
from pathlib import Path

from pydantic import BaseModel

from provbot.detectors.errors import RateLimitedError
from provbot.detectors.hub import HubClient
from provbot.detectors.identity.resolve import split_ref
from provbot.detectors.options import IdentityOptions

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


class Feasibility(BaseModel):
    ok: bool
    params_b: float | None
    reason: str


def parameter_count(
    ref: str, *, endpoint: str | None = None, token: str | None = None, client: HubClient | None = None
) -> int | None:
    """Total parameters of ``ref`` from its safetensors headers (the weight reader's, local or ranged
    Hub reads); None if they cannot be read."""
    from provbot.detectors.weights.opening import open_source

    try:
        with open_source(ref, endpoint=endpoint, token=token, client=client) as src:
            return sum(prod(m.shape) for m in src.tensors().values()) or None
    except RateLimitedError:  # the caller reschedules for the reset rather than guessing the size
        raise
    except Exception:  # I/O, malformed headers, Hub errors (not found, gated, no safetensors): size unknown
        return None


def has_tokenizer(
    ref: str, *, endpoint: str | None = None, token: str | None = None, client: HubClient | None = None
) -> bool | None:
    """Whether ``ref`` ships tokenizer files the local backend can load; None if that cannot be told."""
    local = Path(ref).expanduser()
    try:
        if local.is_dir():
            return any((local / f).is_file() for f in TOKENIZER_FILES)
        repo, rev = split_ref(ref)
        names = (client or HubClient(endpoint, token)).model_info(repo, rev, expand=["siblings"]).filenames
        return any(f in names for f in TOKENIZER_FILES)
    except RateLimitedError:
        raise
    except Exception:  # Hub errors: let the run itself report them
        return None


def can_run_identity(
    ref: str,
    options: IdentityOptions | None = None,
    *,
    cuda: bool | None = None,
    endpoint_configured: bool | None = None,
    hub_endpoint: str | None = None,
    token: str | None = None,
    client: HubClient | None = None,
) -> Feasibility:
    """Whether the bot should run the identity test on ``ref``: an endpoint is configured, or the model
    fits ``identity.max_local_params_b_gpu`` (CUDA present) / ``..._cpu``. ``client``: the Hub client to
    read through (a service passes its own, with its retry policy); a rate limit raises RateLimitedError."""
    ident = options or IdentityOptions()
    if endpoint_configured is None:
        endpoint_configured = ident.backend == "openai" and bool(ident.endpoint)
    if endpoint_configured:
        return Feasibility(ok=True, params_b=None, reason="an OpenAI-compatible endpoint is configured")
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if has_tokenizer(ref, endpoint=hub_endpoint, token=token, client=client) is False:
        return Feasibility(
            ok=False, params_b=None, reason="the repo has no tokenizer files, so the local backend cannot run it"
        )
    limit = ident.max_local_params_b_gpu if cuda else ident.max_local_params_b_cpu
    where = "GPU" if cuda else "CPU"
    n = parameter_count(ref, endpoint=hub_endpoint, token=token, client=client)
    if n is None:
        return Feasibility(ok=False, params_b=None, reason="parameter count unknown (no readable safetensors headers)")
    b = n / 1e9
    if b > limit:
        return Feasibility(ok=False, params_b=b, reason=f"{b:.3g}B parameters exceed the {where} limit of {limit}B")
    return Feasibility(ok=True, params_b=b, reason=f"{b:.3g}B parameters fit the {where} limit of {limit}B")
