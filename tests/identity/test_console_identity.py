"""The console's finding page draws the identity test as bars with CIs (bot/service/console/views.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from provbot.bot.db.findings import FindingView
from provbot.bot.service.console.views import finding_page
from provbot.bot.service.scan.identity_check import IdentityCheck
from provbot.detectors.identity import IdentityResult
from tests.bot.helpers import merge_result


def test_identity_bars_with_and_without_the_system_prompt_and_overlap(rio_result: IdentityResult) -> None:
    check = IdentityCheck(status="ran", result=rio_result)
    f = FindingView(
        id=1,
        repo="lab/rio-merge",
        revision="c" * 40,
        origin="poll",
        relation="merge",
        status="pending",
        summary="merge",
        result=merge_result("lab/rio-merge", ["lab/nex-ft", "lab/qwen-base"]).model_dump(mode="json"),
        declared={"base_model": []},
        reason=None,
        reviewer=None,
        created_at=datetime.now(UTC),
        decided_at=None,
        identity=check.to_json(),
    )
    data = finding_page(f, "text", "provbot")
    svg = data["identity_svg"]
    assert svg.startswith("<svg") and "(with system prompt)" in svg and "(without system prompt)" in svg
    assert "backstory overlap" in svg and svg.count("<line") >= 3  # CI whiskers
