"""The identity (behaviour) check inside the bot: run after mention-triggered scans, stored with the
finding, rendered next to the weight evidence, and never at the cost of the weight finding.

Everything goes through the local Hub over loopback: the committed tiny persona models
(tests/identity/fixtures/) are uploaded as repos and the mention is a real discussion comment.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from provbot.bot.db.models_bot import Finding
from provbot.bot.service.events import MentionEvent
from provbot.bot.service.handlers import HANDLERS
from provbot.bot.service.queue.workers import WorkerPool
from provbot.bot.service.review.decisions import Review
from provbot.bot.service.review.findings import render_finding
from provbot.bot.service.scan.identity_check import load_identity
from provbot.bot.settings import IdentitySettings, Settings
from tests.bot.helpers import ScriptedScanner, bot_settings, build_ctx, user_api
from tests.support.personas import PERSONA_DIRS

CHILD = "alice/rio-merge"  # alice owns it, so her mention is accepted
PARENTS = ["lab/qwen-base", "lab/nex-ft"]


@pytest.fixture
def persona_hub(hub):  # noqa: ANN001, ANN201
    for path in PERSONA_DIRS.values():
        if not (path / "model.safetensors").is_file():
            pytest.fail(f"persona fixture missing: {path} (run tests/identity/make_personas.py)")
    hub.add_repo("lab/qwen-base", PERSONA_DIRS["qwen-base"])
    hub.add_repo("lab/nex-ft", PERSONA_DIRS["nex-ft"])
    hub.add_repo(CHILD, PERSONA_DIRS["rio-merge"])
    return hub


def settings_for(hub, db_url: str, tmp_path: Path, identity: dict | None = None, **bot: object) -> Settings:  # noqa: ANN001
    """Bot settings for these tests: a small identity run (6 prompts, 1 sample) on one CPU thread."""
    ident = {"cache_dir": str(tmp_path / "identity-cache"), "device": "cpu", "cpu_threads": 1, "batch_size": 48}
    ident.update(identity or {})
    fields: dict[str, object] = {"identity_samples": 1, "identity_prompt_limit": 6}
    fields.update(bot)
    s = bot_settings(hub.url, db_url, **fields)
    return s.model_copy(update={"identity": IdentitySettings.model_validate(ident)})


def mention_and_run(ctx, hub, text: str = "@provbot scan against lab/qwen-base lab/nex-ft") -> int:  # noqa: ANN001
    """Alice opens a discussion on her repo that mentions the bot; run every job it leads to."""
    num = user_api(hub, "alice").create_discussion(CHILD, "Where does this come from?", description=text).num
    ctx.enqueue("mention", f"mention:test:{CHILD}#{num}", MentionEvent(repo=CHILD, discussion_num=num).model_dump())
    drain(ctx)
    return num


def drain(ctx) -> None:  # noqa: ANN001
    pool = WorkerPool(ctx, HANDLERS, concurrency=1)
    for _ in range(50):
        if pool.run_once() is None:
            return
    raise AssertionError("jobs kept coming")


def bot_comments(hub, num: int) -> list[str]:  # noqa: ANN001
    details = HfApi(endpoint=hub.url, token=False).get_discussion_details(CHILD, num)
    return [e.content for e in details.events if e.type == "comment" and e.author == "provbot"]


def the_finding(ctx) -> Finding:  # noqa: ANN001
    with ctx.db.session() as s:
        return s.query(Finding).filter_by(repo=CHILD).one()


def test_mention_scan_of_rio_merge_reports_the_behaviour_check(persona_hub, sqlite_url, tmp_path) -> None:  # noqa: ANN001
    ctx = build_ctx(settings_for(persona_hub, sqlite_url, tmp_path), None)  # the real weight scan
    num = mention_and_run(ctx, persona_hub)

    finding = the_finding(ctx)
    assert finding.status == "pending" and finding.relation == "merge"
    check = load_identity(finding.identity)
    assert check is not None and check.status == "ran"
    without = check.result.condition("without_system")
    assert without.dominant_family == "nex" and without.family("nex").ci[0] > 0.2
    assert check.result.condition("with_system").system_prompt == "You are Rio."
    assert check.result.verdict in ("strong", "moderate")
    assert all(not c.answers for c in check.result.conditions)  # answers stay out of the row

    # The moderator sees the section; approval posts the same text, re-rendered from the stored check.
    preview = Review(ctx).preview(finding.id)
    assert "Behaviour check" in preview and "Without a system prompt" in preview
    behaviour = preview.split("Behaviour check")[1]
    without_row = next(line for line in behaviour.splitlines() if line.startswith("| Without a system prompt"))
    assert "| Nex " in without_row and "95% interval" in without_row
    assert "Rio (its own name)" in behaviour and "You are Rio." in behaviour
    assert "pointing to lab/nex-ft" in behaviour
    # The sentence a finding quotes: the name it gives itself without its system prompt, with its interval.
    said = next(line for line in behaviour.splitlines() if line.startswith("Without its system prompt it calls itself"))
    assert "**Nex** in " in said and "of answers (" in said and "; 95% interval " in said
    assert "the persona of lab/nex-ft" in said and "made by **Nex-AGI**" in said
    assert any(
        line.startswith("With its declared system prompt it calls itself **Rio**") and "its declared name" in line
        for line in behaviour.splitlines()
    )
    Review(ctx).approve(finding.id, "mod")
    drain(ctx)
    replies = bot_comments(persona_hub, num)
    result = next(r for r in replies if "Result of the requested scan" in r)
    section = result.split("Behaviour check")[1]
    assert "Verdict strength" in section and "Nex" in section.split("Without a system prompt")[1]
    assert preview.split("Behaviour check")[1].split("---")[0] == section.split("---")[0]
    audit = ctx.audit.query(kind="identity")
    assert len(audit) == 1 and audit[0].data["status"] == "ran" and audit[0].data["candidates"]

    # Model output is untrusted text: a hostile shared passage or claim label cannot inject markup or mentions.
    top = check.result.top_candidate()
    top.verbatim = True
    top.overlap.passages = ["[click](http://evil.example) @mallory <img src=x> # heading"]
    without.claims[0].label = "**Nex** @mallory"
    without.persona.name.label = "[Nex](http://evil.example) @mallory <b>"
    without.persona.name.candidates = ["lab/nex-ft) @mallory"]
    without.persona.maker.label = "**Nex-AGI** www.evil.example"
    body = render_finding(
        ctx.renderer,
        template="finding_discussion.md.j2",
        repo=CHILD,
        revision=finding.revision,
        result=ctx_result(finding),
        declared={},
        bot_username="provbot",
        marker="provbot:t:1",
        identity=check,
    )
    assert "@mallory" not in body and "](http" not in body and "<img" not in body and "**Nex**" not in body
    assert "<b>" not in body and "www.evil" not in body and "**Nex-AGI**" not in body
    assert "calls itself **\\[Nex\\]" in body  # our bold around the escaped model text
    assert "&#64;mallory" in body


def ctx_result(finding: Finding):  # noqa: ANN201
    from provbot.detectors.weights.result import ScanResult

    return ScanResult.model_validate(finding.result)


def test_model_too_large_for_this_machine_is_not_run_and_the_finding_still_posts(persona_hub, db_url, tmp_path) -> None:  # noqa: ANN001
    tiny = {"max_local_params_b_cpu": 1e-6, "max_local_params_b_gpu": 1e-6}  # the fixture has ~0.84M parameters
    settings = settings_for(
        persona_hub, db_url, tmp_path, identity=tiny, mode="auto", mention_replies_need_review=False
    )
    ctx = build_ctx(settings, ScriptedScanner())
    num = mention_and_run(ctx, persona_hub)

    finding = the_finding(ctx)
    assert finding.status == "posted" and finding.relation == "merge"
    check = load_identity(finding.identity)
    assert check.status == "not_run" and "exceed" in check.reason and check.params_b == pytest.approx(0.00084, rel=0.01)
    reply = next(r for r in bot_comments(persona_hub, num) if "Result of the requested scan" in r)
    assert "Behaviour check: identity test not run:" in reply and "exceed the" in reply
    assert "lab/nex-ft" in reply  # the weight evidence is there
    [rec] = ctx.audit.query(kind="identity")
    assert rec.data["status"] == "not_run" and "identity test not run" in rec.message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_broken_identity_endpoint_does_not_lose_the_weight_finding(persona_hub, sqlite_url, tmp_path) -> None:  # noqa: ANN001
    endpoint = f"http://127.0.0.1:{_closed_port()}/v1"  # nothing listens there
    broken = {"backend": "openai", "endpoint": endpoint, "retries": 0, "timeout_s": 2.0}
    ctx = build_ctx(settings_for(persona_hub, sqlite_url, tmp_path, identity=broken), ScriptedScanner())
    mention_and_run(ctx, persona_hub)

    finding = the_finding(ctx)
    assert finding.status == "pending" and finding.relation == "merge"
    check = load_identity(finding.identity)
    assert check.status == "failed" and check.reason
    assert Review(ctx).get(finding.id).identity["reason"] == check.reason  # moderators see why
    [rec] = ctx.audit.query(kind="identity")
    assert rec.data["status"] == "failed" and rec.data["reason"] == check.reason
    assert [j.state for j in ctx.queue.list() if j.kind == "scan"] == ["done"]
    preview = Review(ctx).preview(finding.id)
    # Posts say that it failed, without the internal endpoint's address; the audit log keeps the details.
    assert "identity test not run: it could not be completed" in preview and "127.0.0.1" not in preview
    assert "lab/nex-ft" in preview


def test_a_rate_limit_in_the_identity_check_reschedules_the_job_for_the_reset(
    persona_hub, sqlite_url, tmp_path
) -> None:  # noqa: ANN001
    """The identity check reads the Hub through the service's client: a rate limit an hour away is not
    slept through in the worker nor recorded as a failed check; the job runs again after the reset."""
    from datetime import UTC, datetime, timedelta

    from provbot.bot.db.models_bot import Job

    scanner = ScriptedScanner()
    ctx = build_ctx(settings_for(persona_hub, sqlite_url, tmp_path), scanner)
    num = (
        user_api(persona_hub, "alice")
        .create_discussion(CHILD, "Origin?", description="@provbot scan against lab/qwen-base lab/nex-ft")
        .num
    )
    ctx.enqueue("mention", f"mention:test:{CHILD}#{num}", MentionEvent(repo=CHILD, discussion_num=num).model_dump())
    pool = WorkerPool(ctx, HANDLERS, concurrency=1)
    assert pool.run_once() is not None  # the mention: it queues the scan
    # Every read of the child's files answers 429 from now on, for an hour (the scripted weight scan reads none).
    persona_hub.rate_limit(f"/{CHILD}/resolve/", count=1000, reset_s=3600)
    started = datetime.now(UTC)
    assert pool.run_once() is not None  # the scan job: weight scan, then the identity check
    assert len(scanner.calls) == 1  # the weight scan ran; the 429 came in the identity check
    assert (datetime.now(UTC) - started).total_seconds() < 20  # not slept through
    with ctx.db.session() as s:
        job = s.query(Job).filter(Job.kind == "scan").one()
        assert job.state == "queued" and "rate limited until" in (job.last_error or "")
        run_after = job.run_after if job.run_after.tzinfo else job.run_after.replace(tzinfo=UTC)
        assert run_after >= started + timedelta(minutes=55)
        assert s.query(Finding).filter_by(repo=CHILD).count() == 0
    assert ctx.audit.query(kind="identity") == []
