"""provbot's detectors: the tests it runs on a model's weights and on its behaviour.

A library: it reads no settings and no environment variables of provbot's own, and importing it
loads neither torch nor huggingface_hub (they load when a scan or an identity run starts). Options
come in as typed models; results are pydantic models.

>>> from provbot.detectors import ScanOptions, ScanResult
>>> ScanOptions(budget_mb=8).max_requests
256

Example::

    from provbot.detectors import scan
    result = scan("org/child", ["org/finetune", "org/base"], base="org/base")
    print(result.relation, [(p.ref, p.weight, p.ci) for p in result.parents])

huggingface_hub 2.x, before its first request, fetches a registry of AI agents from huggingface.co
(whatever endpoint is configured) unless telemetry is off: an application that must not reach that
host sets ``HF_HUB_DISABLE_TELEMETRY=1`` before importing huggingface_hub (the provbot CLI does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from provbot.detectors.errors import ProvbotError
from provbot.detectors.options import IdentityOptions, ScanOptions
from provbot.detectors.weights.result import (
    ComponentFit,
    DescentTest,
    LayerFit,
    ParentWeight,
    RelatedModel,
    ScanResult,
)

if TYPE_CHECKING:
    from provbot.detectors.hub import HubClient
    from provbot.detectors.identity.result import IdentityResult

__all__ = [
    "ComponentFit",
    "DescentTest",
    "IdentityOptions",
    "LayerFit",
    "ParentWeight",
    "ProvbotError",
    "RelatedModel",
    "ScanOptions",
    "ScanResult",
    "run_identity",
    "scan",
]


def scan(
    child: str,
    parents: Sequence[str] = (),
    *,
    base: str | None = None,
    full: bool = False,
    budget_mb: float | None = None,
    max_requests: int | None = None,
    options: ScanOptions | None = None,
    endpoint: str | None = None,
    token: str | SecretStr | None = None,
    device: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    client: HubClient | None = None,
) -> ScanResult:
    """Weight-lineage scan of ``child`` against candidate parents: copy, quantized, fine-tune, merge,
    related, unrelated or inconclusive, with the evidence. See :func:`provbot.detectors.weights.scan.scan`.

    Example::

        >>> r = scan("org/child", ["org/a", "org/b"], base="org/base")     # doctest: +SKIP
        >>> r.relation, r.method, [(p.ref, p.weight) for p in r.parents]   # doctest: +SKIP
        ('merge', 'linear', [('org/a', 0.6), ('org/b', 0.4)])
    """
    from provbot.detectors.weights.scan import scan as _scan

    return _scan(
        child,
        parents,
        base=base,
        full=full,
        budget_mb=budget_mb,
        max_requests=max_requests,
        options=options,
        endpoint=endpoint,
        token=token,
        device=device,
        progress=progress,
        client=client,
    )


def run_identity(
    child: str,
    candidates: Sequence[str] = (),
    *,
    system_prompt: str | None = "declared",
    samples: int | None = None,
    options: IdentityOptions | None = None,
    hub_endpoint: str | None = None,
    hub_token: str | None = None,
    cache_dir: str | Path | None = None,
) -> IdentityResult:
    """Identity test: what ``child`` says it is, with and without its system prompt, compared with
    what each candidate says. See :func:`provbot.detectors.identity.run_identity` for every option.

    Example::

        >>> r = run_identity("org/child", ["org/original"], samples=3)      # doctest: +SKIP
        >>> r.verdict, r.summary                                            # doctest: +SKIP
        ('strong', 'Without its system prompt it calls itself Nex in 79% of answers ...')
    """
    from provbot.detectors.identity.runner import run_identity as _run

    return _run(
        child,
        candidates=list(candidates),
        system_prompt=system_prompt,
        samples=samples,
        options=options,
        hub_endpoint=hub_endpoint,
        hub_token=hub_token,
        cache_dir=cache_dir,
    )
