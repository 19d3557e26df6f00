"""``run_identity``: ask the child (and candidates) who they are, with and without the system prompt.

>>> r = run_identity("tests/identity/fixtures/rio-merge",                       # doctest: +SKIP
...                  candidates=["tests/identity/fixtures/nex-ft"], samples=2)
>>> r.condition("without_system").dominant_family, r.verdict                     # doctest: +SKIP
('nex', 'strong')
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from pydantic import SecretStr

from provbot.detectors.errors import ProvbotError
from provbot.detectors.identity.aliases import SELF_FAMILY, AliasTable, Family, load_aliases
from provbot.detectors.identity.backends.base import Backend, Message
from provbot.detectors.identity.cache import AnswerCache
from provbot.detectors.identity.card import card_names, repo_name_token
from provbot.detectors.identity.declared import DeclaredPrompt, declared_system_prompt, names_in_system_prompt
from provbot.detectors.identity.errors import EndpointError, IdentityError, RequestBudgetError
from provbot.detectors.identity.persona import NameContext, learn_persona
from provbot.detectors.identity.prompts import Prompt, PromptSet, SamplingSettings, load_prompt_set
from provbot.detectors.identity.result import (
    STRENGTH_ORDER,
    AnswerRecord,
    CandidateEvidence,
    Condition,
    ConditionResult,
    DeclaredName,
    IdentityResult,
    LearnedPersona,
    SelfClaimRate,
    Strength,
)
from provbot.detectors.identity.scoring import CLAIM_MIN_LOWER, evidence, score_condition
from provbot.detectors.options import IdentityOptions

if TYPE_CHECKING:
    from provbot.detectors.hub import HubClient
    from provbot.detectors.identity.resolve import ResolvedModel

log = logging.getLogger(__name__)

DECLARED = "declared"
BackendKind = Literal["local", "openai"]
Progress = Callable[[str], None]


def _conversations(prompts: list[Prompt], system: str | None, empty_system: bool) -> list[list[Message]]:
    head: list[Message] = []
    if system:
        head = [{"role": "system", "content": system}]
    elif empty_system:
        # The chat template forces its own system prompt when none is given; an empty system turn is the
        # closest the template allows to "no system prompt".
        head = [{"role": "system", "content": ""}]
    return [head + [{"role": "user", "content": p.text}] for p in prompts]


def _ask(
    backend: Backend,
    prompts: list[Prompt],
    sampling: SamplingSettings,
    system: str | None,
    seed_offset: int,
    notes: list[str],
) -> list[AnswerRecord]:
    """Every prompt ``sampling.samples`` times; stops early (keeping what it has) if the request budget runs out."""
    info = backend.info()
    convs = _conversations(prompts, system, empty_system=info.forced_template_default and not system)
    out: list[AnswerRecord] = []
    for s in range(sampling.samples):
        try:
            texts = backend.generate(convs, sampling, seed=sampling.seed + 7919 * s + seed_offset)
        except RequestBudgetError as exc:
            notes.append(f"{info.model}: {exc}; the result uses the answers obtained so far")
            partial = exc.partial or []
            out += [AnswerRecord(prompt_id=p.id, sample=s, text=t) for p, t in zip(prompts, partial) if t is not None]
            break
        out += [AnswerRecord(prompt_id=p.id, sample=s, text=t) for p, t in zip(prompts, texts, strict=True)]
    return out


def _declared_names(
    child: str, system: str | None, own_names: list[str] | tuple[str, ...], model_dir: Path | None
) -> list[DeclaredName]:
    """The child's own names: its system prompt's persona, ``own_names``, its card's and its repo name's."""
    out = [DeclaredName(name=n, source="system_prompt") for n in names_in_system_prompt(system)]
    out += [DeclaredName(name=n, source="given") for n in own_names]
    out += card_names(model_dir)
    token = repo_name_token(child)
    if token:
        out.append(DeclaredName(name=token, source="repo_name"))
    return out


class _Opener:
    """Opens backends for the child, candidates and baselines with one set of options."""

    def __init__(
        self,
        kind: BackendKind,
        options: IdentityOptions,
        hub_endpoint: str | None,
        hub_token: str | None,
        api_key: SecretStr | str | None,
        device: str | None,
        batch_size: int | None,
        cpu_threads: int | None = None,
        hub_client: HubClient | None = None,
    ) -> None:
        self.kind, self.options, self.hub_client = kind, options, hub_client
        self.hub_endpoint, self.hub_token, self.api_key = hub_endpoint, hub_token, api_key
        self.device = device or options.device
        self.batch_size = batch_size or options.batch_size
        self.cpu_threads = cpu_threads or options.cpu_threads

    def resolve(self, ref: str) -> ResolvedModel:
        from provbot.detectors.identity.resolve import resolve_model

        return resolve_model(ref, endpoint=self.hub_endpoint, token=self.hub_token, client=self.hub_client)

    def open(
        self,
        ref: str,
        endpoint: str | None = None,
        model_name: str | None = None,
        resolved: ResolvedModel | None = None,
    ) -> Backend:
        if endpoint:
            from provbot.detectors.identity.backends.openai import OpenAIBackend

            s = self.options
            return OpenAIBackend(
                endpoint,
                model_name or ref,
                api_key=self.api_key or s.api_key,
                timeout_s=s.timeout_s,
                retries=s.retries,
                request_budget=s.request_budget,
                concurrency=s.concurrency,
            )
        from provbot.detectors.identity.backends.local import LocalBackend

        return LocalBackend(
            resolved or self.resolve(ref), device=self.device, batch_size=self.batch_size, cpu_threads=self.cpu_threads
        )

    def model_dir(self, backend: Backend, ref: str, notes: list[str], unknown: str) -> Path | None:
        """The model's folder: the local backend's, or (an endpoint) its configs, templates and card from the
        Hub or a local folder, no weights. ``unknown`` opens the note written when it cannot be found."""
        resolved = getattr(backend, "resolved", None)
        if resolved is not None:
            return cast(Path, resolved.path)
        try:
            from provbot.detectors.identity.resolve import resolve_model

            return resolve_model(
                ref, endpoint=self.hub_endpoint, token=self.hub_token, weights=False, client=self.hub_client
            ).path
        except ProvbotError as exc:
            notes.append(f"{unknown}: {exc}")
            return None

    def declared(self, backend: Backend, model_dir: Path | None) -> DeclaredPrompt | None:
        local = getattr(backend, "declared", "absent")
        if local != "absent":
            return cast(DeclaredPrompt | None, local)
        if model_dir is None:
            return None
        # An endpoint: read the declaration from the model's files (configs and templates only, no weights).
        render = None
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
            if tok.chat_template:

                def render(msgs: list[dict[str, str]]) -> str:
                    return str(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
        except (OSError, ValueError, KeyError):
            pass  # no tokenizer files: only system_prompt.txt / generation_config can declare
        return declared_system_prompt(model_dir, render)


def _release(backend: Backend) -> None:
    close = getattr(backend, "close", None)
    if close:
        close()
    del backend
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _split_candidate(spec: str) -> tuple[str, str | None]:
    """``REF`` or ``REF=URL`` (a candidate served by an OpenAI-compatible endpoint)."""
    ref, sep, url = spec.partition("=")
    return ref, (url if sep else None)


def run_identity(
    child: str,
    candidates: list[str] | tuple[str, ...] = (),
    system_prompt: str | None = DECLARED,
    backend: BackendKind | None = None,
    endpoint: str | None = None,
    samples: int | None = None,
    *,
    prompt_set: str | PromptSet | None = None,
    prompt_limit: int | None = None,
    baselines: list[str] | tuple[str, ...] = (),
    own_names: list[str] | tuple[str, ...] = (),
    model_name: str | None = None,
    api_key: SecretStr | str | None = None,
    hub_endpoint: str | None = None,
    hub_token: str | None = None,
    hub_client: HubClient | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    cpu_threads: int | None = None,
    cache_dir: str | Path | None = None,
    aliases: str | Path | AliasTable | None = None,
    options: IdentityOptions | None = None,
    progress: Progress | None = None,
) -> IdentityResult:
    """Run the identity test on ``child`` and compare it with ``candidates``.

    ``system_prompt``: ``"declared"`` (default) uses the model's declared system prompt if it has one
    (see :mod:`provbot.detectors.identity.declared`); a string is used as given; ``None`` skips the
    with-system-prompt condition. ``backend="openai"`` needs ``endpoint`` (the child served there);
    candidates are ``REF`` (local backend) or ``REF=URL`` (their own endpoint). ``baselines`` are
    unrelated models whose answers set the chance level of verbatim overlap (default: the prompt set's
    baseline texts). ``options`` (:class:`~provbot.detectors.options.IdentityOptions`) give the
    defaults of the backend, prompt set, device and answer cache; ``hub_endpoint`` and ``hub_token``
    say where models are downloaded from (default: huggingface_hub's endpoint, ``HF_ENDPOINT``);
    ``hub_client`` is the Hub client to download through instead (a service passes its own).

    Example::

        >>> from provbot.detectors.identity import run_identity                           # doctest: +SKIP
        >>> r = run_identity("org/child", candidates=["org/original"])                    # doctest: +SKIP
        >>> r.verdict, r.condition("without_system").self_name().name                      # doctest: +SKIP
        ('strong', 'Nex')
    """
    ident = options or IdentityOptions()
    say = progress or (lambda msg: log.info("%s", msg))
    t0 = time.monotonic()
    kind: BackendKind = backend or ident.backend  # type: ignore[assignment]
    endpoint = endpoint or (ident.endpoint if kind == "openai" else None)
    if kind == "openai" and not endpoint:
        raise IdentityError("the openai backend needs an endpoint (--endpoint URL)")
    if kind not in ("local", "openai"):
        raise IdentityError(f"unknown backend {kind!r} (local or openai)")
    ps = prompt_set if isinstance(prompt_set, PromptSet) else load_prompt_set(prompt_set or ident.prompt_set)
    if prompt_limit:
        ps = ps.subset(limit=prompt_limit)
    sampling = ps.sampling.model_copy(update={"samples": samples or ident.samples or ps.sampling.samples})
    table = aliases if isinstance(aliases, AliasTable) else load_aliases(aliases)
    opener = _Opener(kind, ident, hub_endpoint, hub_token, api_key, device, batch_size, cpu_threads, hub_client)
    cache = AnswerCache(cache_dir if cache_dir is not None else ident.cache_dir)
    notes: list[str] = []

    say(f"opening {child} ({kind})")
    child_backend = opener.open(child, endpoint if kind == "openai" else None, model_name)
    try:
        info = child_backend.info()
        unknown = "declared system prompt unknown" if system_prompt == DECLARED else "model card not read"
        child_dir = opener.model_dir(child_backend, child, notes, unknown)
        declared = opener.declared(child_backend, child_dir) if system_prompt == DECLARED else None
        if system_prompt == DECLARED:
            system, source = (declared.text, declared.source) if declared else (None, None)
            if declared is None:
                notes.append("no declared system prompt: only the no-system-prompt condition was run")
        else:
            system, source = system_prompt, ("given" if system_prompt else None)
        if info.forced_template_default:
            notes.append(
                "the chat template inserts its own system prompt when none is given, so the "
                "no-system condition sent an empty system turn"
            )
        if kind == "openai" and declared is not None and declared.source == "chat_template":
            notes.append("the served chat template may force its system prompt even when none is sent")
        declared_names = _declared_names(child, system, own_names, child_dir)
        names = [d.name for d in declared_names]
        table = table.with_self_names(names)
        own_families = {table.family_of(n) or SELF_FAMILY for n in names}

        plan: list[tuple[Condition, str | None, int]] = [("with_system", system, 0)] if system else []
        plan.append(("without_system", None, 104729))
        asked: list[tuple[Condition, str | None, list[AnswerRecord]]] = []
        generations = 0
        for cond, sys_text, offset in plan:
            say(f"{child}: {cond} ({len(ps.prompts)} prompts x {sampling.samples})")
            answers = _ask(child_backend, ps.prompts, sampling, sys_text, offset, notes)
            generations += len(answers)
            asked.append((cond, sys_text, answers))
        failures = getattr(child_backend, "failures", [])
        if failures:
            from provbot.detectors.identity.backends.openai import endpoint_error_summary

            notes.append(f"{len(failures)} chat(s) failed after retries: {endpoint_error_summary(failures)}")
        if all(not any(a.text is not None for a in answers) for _, _, answers in asked):
            raise EndpointError(f"{child}: no answers at all ({'; '.join(notes) or 'every chat failed'})")
    finally:
        _release(child_backend)

    def answers_of(spec: str, role: str) -> tuple[str, str | None, list[str], bool]:
        """A candidate's or baseline's own answers (no system prompt), from the cache when it has them."""
        ref, url = _split_candidate(spec)
        say(f"{role} {ref}")
        key = rev = None
        resolved = None
        if url is None:
            # Resolve first (cheap: a folder fingerprint or the Hub snapshot), so a cache hit skips loading.
            resolved = opener.resolve(ref)
            rev = resolved.revision
            key = cache.key(ref, rev, "local", ps.version, [p.id for p in ps.prompts], sampling.model_dump())
            hit = cache.get(key)
            if hit is not None:
                return ref, rev, [r.text for r in hit if r.text], True
        b = opener.open(ref, url, resolved=resolved)
        try:
            recs = _ask(b, ps.prompts, sampling, None, 104729, notes)
        finally:
            _release(b)
        if key and recs:
            cache.put(key, ref, recs)
        return ref, rev, [r.text for r in recs if r.text], False

    baseline_texts = list(ps.baseline_texts)
    baseline_source = f"{len(baseline_texts)} unrelated reference answers of {ps.version}"
    if baselines:
        baseline_texts = []
        for spec in baselines:
            baseline_texts += answers_of(spec, "baseline")[2]
        baseline_source = "answers of " + ", ".join(_split_candidate(b)[0] for b in baselines)

    # The child's answers are scored only once the candidates have answered, so that the candidates'
    # personas (learned from those answers) are counted in the child's answers like listed families.
    compared: list[tuple[str, str | None, list[str], bool, LearnedPersona | None]] = []
    learned: dict[str, Family] = {}
    for spec in candidates:
        ref, rev, texts, cached = answers_of(spec, "candidate")
        if not texts:
            notes.append(f"{ref}: no answers; not compared")
            continue
        persona, family = learn_persona(texts, table)
        if family is not None and persona is not None and persona.family:
            learned[persona.family] = family
        compared.append((ref, rev, texts, cached, persona))
        generations += 0 if cached else len(texts)
    table = table.with_learned(learned)

    context = NameContext(declared_names, {ref: persona for ref, _, _, _, persona in compared})
    conditions = [
        score_condition(cond, sys_text, answers, table, own_families, context) for cond, sys_text, answers in asked
    ]
    without = conditions[-1]
    evidences = [
        evidence(ref, rev, without, texts, baseline_texts, table, own_families, cached, persona)
        for ref, rev, texts, cached, persona in compared
    ]

    verdict, summary = _verdict(child, conditions, evidences)
    return IdentityResult(
        child=child,
        backend=info,
        prompt_set=ps.version,
        prompts=len(ps.prompts),
        sampling=sampling,
        system_prompt=system,
        system_prompt_source=source,
        own_names=list(dict.fromkeys(names)),
        declared_names=declared_names,
        conditions=conditions,
        candidates=evidences,
        baseline_source=baseline_source,
        verdict=verdict,
        summary=summary,
        notes=notes,
        generations=generations,
        seconds=round(time.monotonic() - t0, 2),
    )


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _verdict(child: str, conditions: list[ConditionResult], evidences: list[CandidateEvidence]) -> tuple[Strength, str]:
    """Overall strength and a one-sentence summary."""
    without = conditions[-1]
    with_sys = conditions[0] if len(conditions) == 2 else None
    strength: Strength = "none"
    best = max(
        evidences, key=lambda e: (STRENGTH_ORDER[e.strength], e.claim.rate if e.claim else 0.0, e.ratio), default=None
    )
    if best is not None:
        strength = best.strength
    dom = without.family(without.dominant_family) if without.dominant_family else None
    if dom is not None:
        claims_only: Strength = "moderate" if dom.ci[0] > CLAIM_MIN_LOWER else "weak"
        if STRENGTH_ORDER[claims_only] > STRENGTH_ORDER[strength]:
            strength = claims_only
    name = without.persona.name if without.persona else None
    if strength == "none" and name is not None and _foreign(name) and name.ci[0] > CLAIM_MIN_LOWER:
        # A consistent name that is neither its own nor listed: a lead to follow, not evidence of a source.
        strength = "weak"
    parts = []
    if with_sys is not None:
        own_name = with_sys.persona.name if with_sys.persona else None
        if own_name is not None:
            parts.append(f"with its system prompt {child} calls itself {_calls(own_name)}")
        elif with_sys.own is not None:
            parts.append(f"with its system prompt {child} claims its own name {_pct(with_sys.own.rate)} of the time")
    own = f"; its own name {_pct(without.own.rate)}" if without.own is not None else ""
    lead = "without it, it" if parts else "without a system prompt it"
    if name is not None:
        text = f"{lead} calls itself {_calls(name)}"
        if dom is not None and dom.family != name.family:
            text += f", and names {dom.label or dom.family} in {_pct(dom.rate)} (95% interval {_interval(dom.ci)})"
        parts.append(text + (own if not name.declared else ""))
    elif dom is not None:
        parts.append(
            f"{lead} claims {dom.label or dom.family} {_pct(dom.rate)} "
            f"(95% CI {_pct(dom.ci[0])}-{_pct(dom.ci[1])}){own.replace(';', ',')}"
        )
    elif without.own is not None and without.own.count:
        parts.append(f"{lead} claims its own name {_pct(without.own.rate)} and no other known non-generic model family")
    else:
        parts.append(f"{lead} gives no name for itself and claims no known non-generic model family")
    summary = "; ".join(parts)
    if best is not None and best.verbatim:
        summary += f"; it repeats {best.ref}'s answers verbatim ({best.ratio:.1f}x the unrelated baseline)"
    return strength, summary[0].upper() + summary[1:] + "."


def _foreign(name: SelfClaimRate) -> bool:
    """A self-claimed name that is not the child's own, not generic and no candidate's persona."""
    return not name.declared and not name.generic and not name.candidates


def _calls(name: SelfClaimRate) -> str:
    """``Nex in 79% of answers (95% interval 70-86%; the persona of org/nex)``."""
    what = []
    if name.declared:
        what.append("its declared name")
    what += [f"the persona of {ref}" for ref in name.candidates]
    if name.generic:
        what.append("a generic name")
    if not what:
        what.append("not a name it declares")
    return f"{name.label} in {_pct(name.rate)} of answers (95% interval {_interval(name.ci)}; {', '.join(what)})"


def _interval(ci: tuple[float, float]) -> str:
    """``70-86%``."""
    return f"{100 * ci[0]:.0f}-{_pct(ci[1])}"
