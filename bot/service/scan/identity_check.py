"""The behaviour check the bot runs after a weight scan: the identity detector, when it can run here.

A mention-triggered scan (and, with ``bot.identity_on_polls``, a polled scan worth posting) asks the
child who it is, with and without its declared system prompt, and compares it with the scan's parents
(docs/identity.md). The outcome is an :class:`IdentityCheck` stored with the finding, so review and
posting render exactly the same text later. A check that cannot run or fails is recorded with its
reason; it never costs the weight finding.

>>> IdentityCheck(status="not_run", reason="12B parameters exceed the CPU limit of 1.0B").note
'identity test not run: 12B parameters exceed the CPU limit of 1.0B'
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from provbot.bot.settings import Settings
from provbot.detectors.errors import ProvbotError, RateLimitedError
from provbot.detectors.hub import HubClient
from provbot.detectors.identity.result import IdentityResult

log = logging.getLogger(__name__)

CheckStatus = Literal["ran", "not_run", "failed"]


class IdentityCheck(BaseModel):
    """What became of the behaviour check for one finding (JSON in ``bot_findings.identity``)."""

    status: CheckStatus
    reason: str | None = None
    params_b: float | None = None
    result: IdentityResult | None = None

    @property
    def note(self) -> str:
        """One line for the audit log and listings."""
        if self.status == "ran" and self.result is not None:
            return f"identity test: {self.result.verdict}"
        return f"identity test not run: {self.reason or 'unknown reason'}"

    def to_json(self) -> dict[str, Any]:
        # Individual answers stay out of the database row (they can be long); the rates keep their counts.
        return self.model_dump(mode="json", exclude={"result": {"conditions": {"__all__": {"answers"}}}})


def wants_identity(settings: Settings, *, from_mention: bool, would_post: bool) -> bool:
    """Whether this scan gets a behaviour check: mentions by default, polls only when configured and
    only for findings that would be posted (an unattended check costs minutes of compute).

    >>> s = Settings()
    >>> wants_identity(s, from_mention=True, would_post=False), wants_identity(s, from_mention=False, would_post=True)
    (True, False)
    """
    b = settings.bot
    if from_mention:
        return b.identity_on_mentions
    return b.identity_on_polls and would_post


def _token(settings: Settings) -> str | None:
    return settings.hub_token.get_secret_value() if settings.hub_token else None


def run_identity_check(
    settings: Settings, *, repo: str, revision: str, candidates: list[str], client: HubClient | None = None
) -> IdentityCheck:
    """Run the identity test on ``repo@revision`` against ``candidates`` if this machine (or a configured
    endpoint) allows it, reading the Hub through ``client`` (the service's, with its retry policy).
    Never raises for a failed run: the reason is in the returned check. A rate limit is the exception:
    it raises RateLimitedError so the queue runs the job again after the reset, where the check can run.
    """
    from provbot.detectors.identity import can_run_identity, run_identity

    ref = f"{repo}@{revision}"
    token = _token(settings)
    feasible = can_run_identity(ref, settings.identity, hub_endpoint=settings.hub_endpoint, token=token, client=client)
    if not feasible.ok:
        return IdentityCheck(status="not_run", reason=feasible.reason, params_b=feasible.params_b)
    # Candidates always run on the local backend (an endpoint serves only the child), so each must fit too.
    usable: list[str] = []
    skipped: list[str] = []
    for cand in dict.fromkeys(c for c in candidates if c != repo):
        fit = can_run_identity(
            cand,
            settings.identity,
            endpoint_configured=False,
            hub_endpoint=settings.hub_endpoint,
            token=token,
            client=client,
        )
        if fit.ok:
            usable.append(cand)
        else:
            skipped.append(f"{cand} ({fit.reason})")
    try:
        result = run_identity(
            ref,
            candidates=usable,
            system_prompt="declared",
            samples=settings.bot.identity_samples,
            prompt_limit=settings.bot.identity_prompt_limit,
            hub_endpoint=settings.hub_endpoint,
            hub_token=token,
            hub_client=client,
            options=settings.identity,
        )
    except RateLimitedError:
        raise
    except ProvbotError as exc:
        return IdentityCheck(status="failed", reason=str(exc), params_b=feasible.params_b)
    except Exception as exc:  # noqa: BLE001 - a detector bug (or CUDA OOM) must not lose the weight finding
        log.exception("identity test of %s failed unexpectedly", ref)
        return IdentityCheck(
            status="failed", reason=f"unexpected {type(exc).__name__} in the identity test", params_b=feasible.params_b
        )
    if skipped:
        result.notes.append("not compared (too large to run here): " + ", ".join(skipped))
    return IdentityCheck(status="ran", reason=feasible.reason, params_b=feasible.params_b, result=result)


def load_identity(raw: dict[str, Any] | None) -> IdentityCheck | None:
    """The stored behaviour check of a finding (None for findings without one).

    A row that no longer validates (written by another provbot version) must not block posting the
    weight finding: it renders as a check that could not be completed.
    """
    if not raw:
        return None
    try:
        return IdentityCheck.model_validate(raw)
    except ValidationError:
        log.warning("stored identity check does not validate; rendered as not completed")
        return IdentityCheck(status="failed", reason="the stored identity result could not be read")
