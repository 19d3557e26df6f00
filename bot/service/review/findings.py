"""Turn a scan result into a finding: decide whether it is posted, held for review, or only recorded,
and render its texts.

A finding that matches what the model card declares (every parent found is a declared base_model)
is recorded, not posted: the bot speaks only about undisclosed lineage.

>>> from provbot.detectors.weights.result import ScanResult, ParentWeight
>>> r = ScanResult(child="org/m", relation="merge", parents=[ParentWeight(ref="org/a", weight=0.6, ci=(0.58, 0.62))])
>>> needs_post(r, {"base_model": ["org/a"]}), needs_post(r, {})
(False, True)
"""

from __future__ import annotations

from typing import Any

from provbot.bot.service.publish.render import Renderer, report_context, significant_parents
from provbot.detectors.hub import declared_from_card, is_repo_id
from provbot.detectors.weights.result import ScanResult


def declared_lineage(card_data: Any, tags: list[str] | None) -> dict[str, Any]:
    """``base_model`` (as a list) and ``base_model_relation`` from a model card, plus opt-out
    (the one lineage parser, :mod:`provbot.detectors.hub.card`, as a dict for templates and records)."""
    declared = declared_from_card(card_data, tags)
    return {
        "base_model": declared.base_models,
        "base_model_relation": declared.relation,
        "opt_out": declared.opt_out,
    }


def needs_post(result: ScanResult, declared: dict[str, Any]) -> bool:
    """True when the weights show a parent the card does not declare."""
    found = significant_parents(result)
    declared_bases = set(declared.get("base_model") or [])
    return bool(found) and not set(found) <= declared_bases


def finding_title(repo: str, result: ScanResult) -> str:
    """A plain-text title built only from validated repo ids."""
    found = [p for p in significant_parents(result) if is_repo_id(p)]
    name = repo if is_repo_id(repo) else "this model"
    if not found:
        return f"Automated lineage check of {name}"
    return f"Automated lineage check: {name} may derive from {' and '.join(found)}"


def render_finding(
    renderer: Renderer,
    *,
    template: str,
    repo: str,
    revision: str,
    result: ScanResult,
    declared: dict[str, Any],
    bot_username: str,
    marker: str,
    against: list[str] | None = None,
    base: str | None = None,
    reviewed_by: str | None = None,
    public_url: str | None = None,
    identity: Any | None = None,
) -> str:
    """Render one finding text; ``identity`` is the finding's stored behaviour check (an
    :class:`provbot.bot.service.identity_check.IdentityCheck`, or None when none was run)."""
    ctx = report_context(
        repo=repo,
        revision=revision,
        result=result,
        declared=declared,
        bot_username=bot_username,
        against=against,
        base=base,
        marker=marker,
        identity=identity,
    )
    ctx["reviewed_by"] = reviewed_by
    ctx["public_url"] = public_url
    return renderer.render(template, **ctx)
