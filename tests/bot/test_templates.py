"""Rendered texts: hedged, complete, and immune to markdown/link/mention injection."""

from __future__ import annotations

import re

from provbot.bot.service.publish.markers import Markers, marker_comment
from provbot.bot.service.publish.render import Renderer, Trusted, md_escape
from provbot.bot.service.review.findings import render_finding
from provbot.detectors.weights.result import ParentWeight, ScanResult
from tests.bot.helpers import merge_result

MARKERS = Markers(b"test-key")

HOSTILE = "evil/x](https://phish.example) @everyone <img src=x onerror=alert(1)> **bold** | col\n# Heading"


def _bare_mentions(text: str) -> list[str]:
    return re.findall(r"(?<![\w&#])@\w+", text)


def test_md_escape_neutralises_markup() -> None:
    out = md_escape(HOSTILE)
    assert "\n" not in out
    assert "<img" not in out and "](" not in out and "**" not in out
    assert "https://" not in out  # no autolink
    assert _bare_mentions(out) == []
    assert "\\|" in out  # cannot split a table cell


def test_finding_discussion_is_complete_and_hedged() -> None:
    result = merge_result("org/child@abc", ["org/nex", "org/qwen"])
    text = render_finding(
        Renderer(),
        template="finding_discussion.md.j2",
        repo="org/child",
        revision="abc123",
        result=result,
        declared={"base_model": ["org/qwen"], "base_model_relation": "finetune"},
        bot_username="provbot",
        marker=MARKERS.finding("org/child", "abc123"),
        reviewed_by="mod",
    )
    assert "appear to be a weighted merge" in text  # hedged, not an accusation
    assert "0.600" in text and "0.590 to 0.610" in text  # weight and CI
    assert "0.998" in text and "1412.5" in text  # fit quality and sigma
    assert "Per-layer consistency" in text
    assert "**Not declared in the card:** org/nex" in text
    assert "base_model org/qwen (relation: finetune)" in text
    assert "provbot scan org/child@abc123 --parent org/nex --parent org/qwen --base org/qwen" in text
    assert "automated tool" in text and "reviewed by a moderator" in text
    assert "provbot-opt-out" in text and "contest" in text
    assert marker_comment(MARKERS.finding("org/child", "abc123")) in text


def test_hostile_names_in_results_and_cards_are_escaped() -> None:
    result = ScanResult(
        child="x",
        relation="merge",
        parents=[ParentWeight(ref=HOSTILE, weight=0.5, ci=(0.4, 0.6))],
        notes=["see @someone [here](http://bad.example)"],
    )
    text = render_finding(
        Renderer(),
        template="finding_discussion.md.j2",
        repo="org/m",
        revision="abc",
        result=result,
        declared={"base_model": ["@admin <b>x</b>"]},
        bot_username="provbot",
        marker="provbot:finding:1",
    )
    body = text.split("<!--")[0]
    assert _bare_mentions(body) == []
    assert "](http" not in body and "<img" not in body and "<b>" not in body
    assert "\n# Heading" not in body
    # The reproduce command holds an invalid name, so it is escaped rather than printed raw.
    assert "--parent evil/x\\]" in body


def test_mention_reply_escapes_requester_and_marks_itself_automated() -> None:
    text = Renderer().render(
        "mention_refusal.md.j2",
        requester="@root](x)",
        reason="not allowed.",
        bot="provbot",
        marker=Trusted(marker_comment("provbot:reply:1")),
    )
    assert "automated" in text and _bare_mentions(text) == [] and "](x)" not in text


def test_a_sibling_finding_names_the_base_and_lists_the_sibling_apart() -> None:
    from provbot.bot.service.review.findings import finding_title, needs_post
    from provbot.detectors.weights.result import DescentTest, LayerShare, RelatedModel

    test = DescentTest(
        ref="org/x",
        base="org/base",
        share=0.57,
        ci=(0.48, 0.65),
        spread=0.08,
        outcome="sibling",
        layers=[LayerShare(layer=0, share=0.64, ci=(0.6, 0.68)), LayerShare(layer=1, share=0.44, ci=(0.34, 0.55))],
        reason="the child carries 57% of org/x's delta from org/base",
    )
    result = ScanResult(
        child="org/c@abc",
        relation="finetune",
        base="org/base",
        base_source="declared",
        parents=[ParentWeight(ref="org/base", weight=1.0, ci=(1.0, 1.0))],
        related=[RelatedModel(ref="org/x", role="sibling", share=0.57, ci=(0.48, 0.65))],
        descent=[test],
    )
    assert finding_title("org/c", result) == "Automated lineage check: org/c may derive from org/base"
    text = render_finding(
        Renderer(),
        template="finding_discussion.md.j2",
        repo="org/c",
        revision="abc123",
        result=result,
        declared={},
        bot_username="provbot",
        marker="provbot:finding:2",
    )
    assert "appear to be a fine-tune" in text and "declared in a candidate's model card" in text
    assert "| org/x | sibling | 0.570 | 0.480 to 0.650 |" in text
    assert "| org/x | org/base | 0.570 | 0.480 to 0.650 | 0.440 to 0.640 | sibling |" in text
    # The declared base is found again by a rerun: the command does not force it.
    assert "--base" not in text.split("provbot scan")[1].split("\n")[0]
    related = result.model_copy(update={"relation": "related", "parents": []})
    assert not needs_post(related, {}) and "could not be determined" in render_finding(
        Renderer(),
        template="finding_discussion.md.j2",
        repo="org/c",
        revision="abc123",
        result=related,
        declared={},
        bot_username="provbot",
        marker="provbot:finding:3",
    )
