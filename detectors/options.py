"""Typed options of the detectors, passed in by whoever calls them (the library reads no settings).

Defaults are the ones ``config/default.toml`` ships; the bot's settings (``provbot.bot.settings``)
extend these models, so ``Settings().scan`` *is* a :class:`ScanOptions`.

>>> ScanOptions().budget_mb, ScanOptions(max_requests=0).max_requests
(4.0, 0)
>>> ScanOptions(budget_mb=0)
Traceback (most recent call last):
pydantic_core._pydantic_core.ValidationError: 1 validation error for ScanOptions
...
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ScanOptions(BaseModel):
    """How a weight scan reads (see docs/reading.md)."""

    model_config = ConfigDict(extra="forbid")

    budget_mb: float = Field(4.0, gt=0, description="Bytes read per model by a sampled scan, in MiB.")
    max_requests: int = Field(
        256,
        ge=0,
        description="Most range requests per model a sampled scan plans, whatever the budget (the Hub "
        "rate-limits resolve calls); 0: no ceiling.",
    )
    concurrency: int = Field(16, ge=1, description="Concurrent range requests per model.")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda'.")
    compile: Literal["auto", "always", "never"] = Field(
        "auto",
        description="torch.compile the CPU Gram kernel of --full scans: auto = for reads of 2^28+ elements per "
        "model (compiling takes seconds once).",
    )


class IdentityOptions(BaseModel):
    """How the identity detector asks and where it keeps answers (see docs/identity.md)."""

    model_config = ConfigDict(extra="forbid")

    prompt_set: str = Field("identity-v1", description="Prompt set name in config/prompts/ or a TOML path.")
    samples: int | None = Field(None, ge=1, description="Times each prompt is asked; None: the prompt set's value.")
    backend: str = Field("local", pattern="^(local|openai)$", description="'local' (transformers) or 'openai'.")
    endpoint: str | None = Field(None, description="OpenAI-compatible endpoint for the openai backend.")
    api_key: SecretStr | None = Field(None, description="Bearer key for the endpoint; from the environment only.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout of the openai backend.")
    retries: int = Field(3, ge=0, description="Retries on timeouts, 429 and 5xx.")
    request_budget: int = Field(2000, ge=1, description="Most HTTP requests one run may make.")
    concurrency: int = Field(4, ge=1, description="Concurrent requests of the openai backend.")
    device: str = Field("auto", description="Local backend: 'auto' (CUDA when present), 'cpu' or 'cuda'.")
    batch_size: int = Field(16, ge=1, description="Local backend: chats per generate call.")
    cpu_threads: int | None = Field(
        None, ge=1, description="Local backend on CPU: torch threads while generating (None: torch's default)."
    )
    max_local_params_b_cpu: float = Field(1.0, gt=0, description="Largest model (billions) the bot runs on CPU.")
    max_local_params_b_gpu: float = Field(30.0, gt=0, description="Largest model (billions) the bot runs on the GPU.")
    cache_dir: str | None = Field(None, description="Where candidates' answers are cached; None: not cached.")
