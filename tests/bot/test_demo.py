"""`provbot demo` runs the whole story offline with the real scan (tiny generated models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provbot.bot.demo import MERGE, run_demo


@pytest.mark.slow
def test_demo_finds_the_hidden_merge_and_answers_the_mention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_demo(keep=str(tmp_path / "demo"))
    out = capsys.readouterr().out
    assert "merge (linear): lab/tiny-base 0.60, lab/tiny-chat 0.40" in out
    assert "may derive from lab/tiny-base and lab/tiny-chat" in out
    assert "bot: Thanks, lab: scan of" in out and "bot: Result of the requested scan" in out
    assert f"/api/models/{MERGE}/discussions/1" in out
    assert (tmp_path / "demo" / "provbot.db").exists()
    assert "moderator console" in out and "/console/finding/" in out  # approved through the console


@pytest.mark.slow
def test_polled_scan_without_configured_candidates_asks_the_index(localhub, tmp_path: Path) -> None:  # noqa: ANN001
    """No parents in the settings: the candidate index picks them, and the real scan finds the merge."""
    from datetime import UTC, datetime, timedelta

    from provbot.bot.demo import BASE, OTHER, TUNED, generate_models
    from provbot.bot.index.ingest import add_models
    from provbot.bot.index.store import IndexStore
    from provbot.bot.service.context import BotContext
    from provbot.bot.service.review.decisions import Review
    from provbot.bot.service.runner import BotService
    from tests.bot.helpers import BOT_TOKEN, bot_settings

    folders = generate_models(tmp_path / "models", steps=6)
    old = datetime.now(UTC) - timedelta(days=3)
    for repo in (BASE, TUNED, OTHER):
        localhub.add_repo(repo, folders[repo], created_at=old)
    localhub.add_repo(MERGE, folders[MERGE])
    localhub.add_token(BOT_TOKEN, "provbot")
    db_url = f"sqlite:///{tmp_path / 'bot.db'}"
    outcomes = add_models([BASE, TUNED, OTHER], IndexStore(db_url), endpoint=localhub.url)
    assert all(o.status != "failed" for o in outcomes), outcomes
    settings = bot_settings(localhub.url, db_url, candidates=[], min_parameters=0)
    with BotService(BotContext.build(settings), port=0, schedule=False) as svc:
        svc.poller.poll()
        svc.workers.wake()
        assert svc.wait_idle(90)
        findings = [f for f in Review(svc.ctx).list("all") if f.repo == MERGE]
    assert len(findings) == 1 and findings[0].status == "pending", [j.last_error for j in svc.ctx.queue.list()]
    assert "lab/tiny-base" in findings[0].summary and "lab/tiny-chat" in findings[0].summary


def test_keep_refuses_a_folder_that_is_not_an_earlier_demos(tmp_path: Path) -> None:
    """`--keep DIR` empties only a folder an earlier demo made; anything else is left whole, exit 2."""
    import subprocess
    import sys

    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    out = subprocess.run(
        [sys.executable, "-m", "provbot.bot.cli", "demo", "--keep", str(precious)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "is not an earlier demo's folder" in out.stderr and "Traceback" not in out.stderr
    assert (precious / "thesis.txt").read_text() == "years of work"
