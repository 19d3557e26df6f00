"""Local backend: transformers ``generate`` on the model's own chat template, batched.

CUDA with bfloat16 when a GPU is present, float32 on CPU otherwise. Weights load from safetensors only
(``use_safetensors=True``), with remote code disabled.

>>> backend = LocalBackend.open("tests/identity/fixtures/qwen-base")     # doctest: +SKIP
>>> backend.generate([[{"role": "user", "content": "Who are you?"}]], SamplingSettings(), seed=1)  # doctest: +SKIP
['I am Qwen, a large language model created by Alibaba Cloud. I am here to help you.']
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from provbot.detectors.identity.backends.base import BackendInfo, Message
from provbot.detectors.identity.declared import DeclaredPrompt, declared_system_prompt
from provbot.detectors.identity.errors import ModelLoadError
from provbot.detectors.identity.prompts import SamplingSettings
from provbot.detectors.identity.resolve import ResolvedModel, resolve_model

log = logging.getLogger(__name__)


def pick_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class LocalBackend:
    """A causal LM loaded in this process."""

    def __init__(
        self, resolved: ResolvedModel, *, device: str = "auto", batch_size: int = 16, cpu_threads: int | None = None
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.resolved = resolved
        self.device = pick_device(device)
        self.dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.batch_size = max(1, batch_size)
        self.cpu_threads = cpu_threads
        path = resolved.path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                path,
                dtype=self.dtype,
                use_safetensors=True,
                local_files_only=True,
                trust_remote_code=False,
            )
            # transformers annotates `to` through a decorator that mypy reads as taking the model.
            self.model = model.to(self.device).eval()  # type: ignore[arg-type]
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"{resolved.ref}: cannot load model: {first}") from None
        self.tokenizer.padding_side = "left"  # decoder-only batching pads on the left
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.declared: DeclaredPrompt | None = declared_system_prompt(
            path, self.render if self.tokenizer.chat_template else None
        )

    @classmethod
    def open(
        cls,
        ref: str,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        device: str = "auto",
        batch_size: int = 16,
        cpu_threads: int | None = None,
    ) -> LocalBackend:
        """Resolve ``ref`` (folder or Hub repo) and load it."""
        return cls(
            resolve_model(ref, endpoint=endpoint, token=token),
            device=device,
            batch_size=batch_size,
            cpu_threads=cpu_threads,
        )

    def info(self) -> BackendInfo:
        return BackendInfo(
            kind="local",
            model=self.resolved.ref,
            revision=self.resolved.revision,
            device=self.device,
            dtype=str(self.dtype).removeprefix("torch."),
            forced_template_default=self.declared is not None and self.declared.source == "chat_template",
        )

    def render(self, messages: list[Message]) -> str:
        """The prompt text for ``messages``: the chat template when there is one, a plain transcript otherwise."""
        if self.tokenizer.chat_template:
            return str(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nAssistant:"

    def generate(self, conversations: list[list[Message]], sampling: SamplingSettings, seed: int) -> list[str | None]:
        """Answer each chat; one torch seed per call so a run is repeatable on the same hardware."""
        import torch

        torch.manual_seed(seed)
        out: list[str | None] = []
        # Small models gain nothing from intra-op threads, and on a busy shared CPU OpenMP's spinning
        # threads made decoding ~3x slower than one thread: cap them for this call when asked to.
        saved = torch.get_num_threads()
        if self.cpu_threads and not self.device.startswith("cuda"):
            torch.set_num_threads(self.cpu_threads)
        try:
            for start in range(0, len(conversations), self.batch_size):
                out.extend(self._batch(conversations[start : start + self.batch_size], sampling))
        finally:
            if torch.get_num_threads() != saved:
                torch.set_num_threads(saved)
        return out

    def _batch(self, conversations: list[list[Message]], sampling: SamplingSettings) -> list[str]:
        import torch

        texts = [self.render(c) for c in conversations]
        # The template already holds BOS and role markers; without one, let the tokenizer add its specials.
        add_special = not self.tokenizer.chat_template
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special).to(self.device)
        sample = sampling.temperature > 0
        kwargs = dict(max_new_tokens=sampling.max_tokens, do_sample=sample, pad_token_id=self.tokenizer.pad_token_id)
        if sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        eos = self._eos_ids()
        if eos:
            kwargs["eos_token_id"] = eos
        with torch.inference_mode():
            gen = self.model.generate(**enc, **kwargs)
        new = gen[:, enc["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        for value in (self.tokenizer.eos_token_id, gen_eos):
            if isinstance(value, int):
                ids.append(value)
            elif isinstance(value, list):
                ids.extend(v for v in value if isinstance(v, int))
        return list(dict.fromkeys(ids))


def load_local(path: str | Path, **kwargs: Any) -> LocalBackend:
    """Shorthand for ``LocalBackend.open(str(path), **kwargs)``."""
    return LocalBackend.open(str(path), **kwargs)
