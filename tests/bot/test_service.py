"""End to end through real HTTP on loopback: the local Hub, the bot's webhook endpoint, the queue."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from huggingface_hub import HfApi

from provbot.bot.db.models_bot import Finding
from provbot.bot.service.review.decisions import Review
from provbot.bot.service.runner import BotService
from tests.bot.helpers import (
    BOT_TOKEN,
    WEBHOOK_SECRET,
    approve_and_drain,
    bot_settings,
    build_ctx,
    model_files,
    upload_and_find,
    user_api,
)


def wait_for(cond, timeout: float = 20.0, what: str = "condition"):  # noqa: ANN001, ANN201
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def bot_comments(hub, repo: str, num: int) -> list[str]:  # noqa: ANN001
    details = HfApi(endpoint=hub.url, token=False).get_discussion_details(repo, num)
    return [e.content for e in details.events if e.type == "comment" and e.author == "provbot"]


def test_poll_finds_new_upload_once_and_posts_after_approval(service: BotService, hub, scanner) -> None:  # noqa: ANN001
    ctx = service.ctx
    first = service.poller.poll()
    assert sum(len(r.enqueued) for r in first) == 2  # base and tuned (>= min size), each once
    hub.add_repo("sneaky/original", model_files(seed=3))
    hub.add_repo("tiny/small", model_files(seed=4, n_params=10))  # below the size threshold
    reports = service.poller.poll()
    enqueued = [e for r in reports for e in r.enqueued]
    assert [e.split("@")[0] for e in enqueued] == ["sneaky/original"]
    assert service.poller.poll()[0].enqueued == []  # nothing new: exactly once
    service.workers.wake()
    assert service.wait_idle(30)
    review = Review(ctx)
    pending = review.list()
    # lab/tuned declares lab/base but the scripted scan also names lab/tuned: so tuned is pending too.
    sneaky = next(f for f in pending if f.repo == "sneaky/original")
    assert scanner.calls[-1].parents == ["lab/base", "lab/tuned"]
    assert list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("sneaky/original")) == []  # held
    review.approve(sneaky.id, "mod")
    service.workers.wake()
    assert service.wait_idle(30)
    discussions = list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("sneaky/original"))
    assert len(discussions) == 1 and discussions[0].author == "provbot"
    body = bot_comments(hub, "sneaky/original", discussions[0].num)[0]
    assert "weighted merge" in body and "reviewed by a moderator" in body
    # A second post job for the same finding edits nothing and creates nothing.
    ctx.queue.enqueue("post", "post:again", {"finding_id": sneaky.id})
    service.workers.wake()
    assert service.wait_idle(30)
    assert len(list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("sneaky/original"))) == 1
    kinds = {e.kind for e in ctx.audit.query(limit=1000)}
    assert {"poll", "enqueue", "scan", "finding", "review", "post"} <= kinds


def test_declared_lineage_is_recorded_not_posted(service: BotService, hub, scanner) -> None:  # noqa: ANN001
    from tests.bot.helpers import merge_result

    scanner.table["lab/tuned"] = lambda req: merge_result(req.ref, ["lab/base"], [1.0])
    service.poller.poll()
    service.workers.wake()
    assert service.wait_idle(30)
    with service.ctx.db.session() as s:
        f = s.query(Finding).filter_by(repo="lab/tuned").one()
        assert f.status == "recorded" and "declared" in (f.reason or "")


def _start_thread(hub, user: str, repo: str, text: str) -> int:  # noqa: ANN001
    return user_api(hub, user).create_discussion(repo, "Question", description=text).num


def test_mention_gets_ack_then_result_and_replays_are_ignored(service: BotService, hub, scanner) -> None:  # noqa: ANN001
    hub.add_repo("alice/model", model_files(seed=5))
    num = _start_thread(hub, "alice", "alice/model", "Hi!")
    user_api(hub, "alice").comment_discussion(
        "alice/model", num, "@provbot scan against lab/base lab/tuned base lab/base"
    )
    wait_for(lambda: len(bot_comments(hub, "alice/model", num)) >= 1, what="acknowledgement")
    assert "queued" in bot_comments(hub, "alice/model", num)[0]
    assert service.wait_idle(30)
    review = Review(service.ctx)
    pending = [f for f in review.list() if f.repo == "alice/model"]
    assert len(pending) == 1 and pending[0].origin.startswith("mention:")
    review.approve(pending[0].id, "mod")
    service.workers.wake()
    wait_for(lambda: len(bot_comments(hub, "alice/model", num)) >= 2, what="result")
    replies = bot_comments(hub, "alice/model", num)
    assert "Result of the requested scan" in replies[1]
    assert scanner.calls[-1].parents == ["lab/base", "lab/tuned"] and scanner.calls[-1].base == "lab/base"
    # The Hub delivers the same webhook again: nothing new happens.
    n_jobs = len(service.ctx.queue.list())
    details = HfApi(endpoint=hub.url, token=False).get_discussion_details("alice/model", num)
    comment_id = [e.id for e in details.events if e.type == "comment" and e.author == "alice"][-1]
    payload = _comment_payload("alice/model", num, comment_id)
    r = httpx.post(f"{service.url}/webhook", content=payload, headers={"X-Webhook-Secret": WEBHOOK_SECRET})
    assert r.status_code == 200 and r.json()["status"] == "duplicate"
    assert len(service.ctx.queue.list()) == n_jobs
    assert len(bot_comments(hub, "alice/model", num)) == 2


def test_unauthorised_mention_is_refused_once(service: BotService, hub, scanner) -> None:  # noqa: ANN001
    hub.add_repo("alice/model", model_files(seed=5))
    num = _start_thread(hub, "mallory", "alice/model", "@provbot scan")
    wait_for(lambda: bot_comments(hub, "alice/model", num), what="refusal")
    user_api(hub, "mallory").comment_discussion("alice/model", num, "@provbot scan !!!")
    time.sleep(0.5)
    assert service.wait_idle(30)
    replies = bot_comments(hub, "alice/model", num)
    assert len(replies) == 1 and "Sorry" in replies[0]
    assert scanner.calls == []
    outcomes = [e.data.get("outcome") for e in service.ctx.audit.query(kind="mention")]
    assert outcomes == ["refused", "silent"]


def test_bot_ignores_its_own_comments_and_quoted_mentions(service: BotService, hub, scanner) -> None:  # noqa: ANN001
    hub.add_repo("alice/model", model_files(seed=5))
    num = _start_thread(hub, "alice", "alice/model", "> @provbot scan\n\nsomeone said that")
    HfApi(endpoint=hub.url, token=BOT_TOKEN).comment_discussion("alice/model", num, "I am @provbot scan")
    time.sleep(0.5)
    assert service.wait_idle(30)
    assert scanner.calls == [] and len(bot_comments(hub, "alice/model", num)) == 1


def _comment_payload(repo: str, num: int, comment_id: str) -> bytes:
    return json.dumps(
        {
            "event": {"action": "create", "scope": "discussion.comment"},
            "repo": {
                "type": "model",
                "name": repo,
                "id": "r",
                "private": False,
                "owner": {"id": "o"},
                "url": {"web": "w"},
            },
            "discussion": {
                "id": "d",
                "num": num,
                "author": {"id": "a"},
                "url": {"web": "w"},
                "title": "t",
                "isPullRequest": False,
                "status": "open",
            },
            "comment": {
                "id": comment_id,
                "author": {"id": "a"},
                "hidden": False,
                "content": "@provbot scan",
                "url": {"web": "w"},
            },
            "webhook": {"id": "h", "version": 3},
        }
    ).encode()


def test_webhook_rejects_bad_secret_and_malformed_payloads(service: BotService) -> None:
    url = f"{service.url}/webhook"
    good = _comment_payload("alice/model", 1, "c1")
    assert httpx.post(url, content=good, headers={"X-Webhook-Secret": "wrong"}).status_code == 403
    assert httpx.post(url, content=good).status_code == 403
    assert httpx.post(url, content=b"{not json", headers={"X-Webhook-Secret": WEBHOOK_SECRET}).status_code == 400
    assert httpx.post(url, content=b'{"event": {}}', headers={"X-Webhook-Secret": WEBHOOK_SECRET}).status_code == 400
    assert service.ctx.queue.list() == []
    health = httpx.get(f"{service.url}/healthz").json()
    assert health["status"] == "ok" and health["jobs"]["queued"] == 0
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'provbot_webhooks_total{outcome="rejected_403"} 2.0' in metrics
    assert 'provbot_webhooks_total{outcome="rejected_400"} 2.0' in metrics


def test_hub_faults_during_poll_read_and_post_are_retried(service: BotService, hub, scanner) -> None:  # noqa: ANN001
    ctx = service.ctx
    # A short 429 on the listing is waited out; reading model info inside the scan job and creating the discussion both fail once.
    hub.inject("/api/models/lab/base/revision", 500, count=1, methods=["GET"])
    hub.inject("/api/models/lab/base/discussions", 502, count=1, methods=["POST"])
    hub.rate_limit("/api/models", count=1, reset_s=1)
    reports = service.poller.poll()
    assert sum(len(r.enqueued) for r in reports) == 2
    service.workers.wake()
    assert service.wait_idle(30)
    base = next(f for f in Review(ctx).list() if f.repo == "lab/base")
    Review(ctx).approve(base.id, "mod")
    service.workers.wake()
    wait_for(lambda: list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("lab/base")), what="post")
    assert service.wait_idle(30)
    assert len(list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("lab/base"))) == 1
    assert all(j.state == "done" for j in ctx.queue.list())
    assert ctx.hub.stats.retries >= 1 and ctx.hub.stats.rate_limited >= 1  # retried in place
    post_jobs = [j for j in ctx.queue.list() if j.kind == "post"]
    assert post_jobs[0].attempts == 2  # the failed POST came back through the queue
    assert any(e.kind == "error" for e in ctx.audit.query(limit=1000))


def test_token_never_reaches_logs_or_audit(service: BotService, hub, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    import logging

    from provbot.bot.service.redact import RedactingFilter

    # The service installs this filter on the root handlers at start; caplog's handler came later.
    caplog.handler.addFilter(RedactingFilter(service.ctx.redactor))
    with caplog.at_level(logging.DEBUG):
        service.poller.poll()
        # Every read of lab/base fails: the scan job retries, logs and audits errors, then gives up.
        hub.inject("/api/models/lab/base", 500, count=100, methods=["GET"])
        service.workers.wake()
        assert service.wait_idle(30)
        logging.getLogger("provbot.test").warning("leak attempt %s", BOT_TOKEN)
    failed = [j for j in service.ctx.queue.list() if j.state == "failed"]
    assert failed and "HTTP 500" in (failed[0].last_error or "")
    dumped = " ".join(e.model_dump_json() for e in service.ctx.audit.query(limit=1000))
    assert "HTTP 500" in dumped
    assert BOT_TOKEN not in dumped and BOT_TOKEN not in caplog.text and "leak attempt [redacted]" in caplog.text
    assert BOT_TOKEN not in repr(service.ctx.settings)


def test_post_made_before_a_crash_is_found_by_marker_not_repeated(service: BotService, hub) -> None:  # noqa: ANN001
    """The bot posted, then died before recording it: the retry finds its post by marker and edits it."""

    ctx = service.ctx
    finding = upload_and_find(service, hub, "sneaky/m", model_files(seed=7))
    marker = ctx.markers.finding(finding.repo, finding.revision)
    HfApi(endpoint=hub.url, token=BOT_TOKEN).create_discussion(
        "sneaky/m", "Automated lineage check", description=f"old text\n<!-- {marker} -->"
    )
    approve_and_drain(service, finding.id)
    discussions = list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("sneaky/m"))
    assert len(discussions) == 1
    body = bot_comments(hub, "sneaky/m", discussions[0].num)[0]
    assert "weighted merge" in body and "old text" not in body  # edited in place
    assert [e.data["action"] for e in ctx.audit.query(kind="post")] == ["edited"]


def test_discussion_poll_finds_mentions_without_a_webhook(service: BotService, hub, scanner) -> None:  # noqa: ANN001
    hub.options.webhooks.clear()  # this repo has no webhook: only the discussion poll sees the mention
    hub.add_repo("alice/model", model_files(seed=5))
    num = _start_thread(hub, "alice", "alice/model", "@provbot scan against lab/base")
    service.ctx.settings.bot.watch_discussions = ["alice/model"]
    assert service.poller.poll_discussions() == 1
    assert service.poller.poll_discussions() == 0  # the same comment is queued once
    service.workers.wake()
    wait_for(lambda: bot_comments(hub, "alice/model", num), what="acknowledgement")
    assert service.wait_idle(30)
    assert scanner.calls[-1].parents == ["lab/base"]


def test_dry_run_posts_nothing_anywhere(hub, sqlite_url: str, scanner) -> None:  # noqa: ANN001
    hub.add_repo("lab/base", model_files(seed=1))
    hub.add_repo("alice/model", model_files(seed=5))
    ctx = build_ctx(bot_settings(hub.url, sqlite_url, mode="dry_run", candidates=["lab/base"]), scanner)
    with BotService(ctx, port=0, schedule=False) as svc:
        hub.add_webhook(f"{svc.url}/webhook", WEBHOOK_SECRET)
        num = _start_thread(hub, "alice", "alice/model", "@provbot scan")
        svc.poller.poll()
        svc.workers.wake()
        time.sleep(0.5)
        assert svc.wait_idle(30)
        with ctx.db.session() as s:
            statuses = {f.repo: (f.status, f.reason) for f in s.query(Finding)}
    assert statuses["alice/model"][0] == "recorded" and "dry run" in statuses["alice/model"][1]
    assert bot_comments(hub, "alice/model", num) == []
    assert list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("lab/base")) == []
    assert all(e.data.get("dry_run") for e in ctx.audit.query(kind="post"))


def test_approved_finding_also_opens_one_moderation_issue(service: BotService, hub) -> None:  # noqa: ANN001
    hub.add_repo("mods/queue", {"README.md": "moderation queue"})
    service.ctx.settings.bot.moderation_repo = "mods/queue"
    finding = upload_and_find(service, hub, "sneaky/m", model_files(seed=7))
    approve_and_drain(service, finding.id)
    issues = list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("mods/queue"))
    assert len(issues) == 1 and issues[0].title.startswith("[provbot] Automated lineage check: sneaky/m")
    body = bot_comments(hub, "mods/queue", issues[0].num)[0]
    assert "Finding for moderators" in body and "/sneaky/m/discussions/1" in body


def test_upload_webhook_enqueues_one_scan_shared_with_polling(service: BotService, hub, scanner) -> None:  # noqa: ANN001
    service.ctx.settings.bot.scan_uploads_from_webhooks = True
    sha = hub.add_repo("sneaky/pushed", model_files(seed=11))
    hub.add_repo("tiny/pushed", model_files(seed=12, n_params=10))  # too small: skipped
    wait_for(lambda: len(service.ctx.queue.list(kind="upload")) == 2, what="upload jobs")
    assert service.wait_idle(30)
    scans = [j.key for j in service.ctx.queue.list(kind="scan")]
    assert scans == [f"scan:sneaky/pushed@{sha}"]
    reports = service.poller.poll()  # the poll sees the same upload: no second scan
    assert all(f"sneaky/pushed@{sha}" not in r.enqueued for r in reports)
    assert [j.key for j in service.ctx.queue.list(kind="scan")].count(f"scan:sneaky/pushed@{sha}") == 1


def test_poll_takes_gguf_only_uploads_sized_by_their_gguf_model(service: BotService, hub, tmp_path) -> None:  # noqa: ANN001
    """A repo holding only a GGUF file has no safetensors count: the Hub's gguf summary sizes it."""
    import gguf
    import numpy as np

    def gguf_file(name: str, rows: int) -> object:
        path = tmp_path / name
        w = gguf.GGUFWriter(path, "llama")
        w.add_block_count(1)
        w.add_tensor("token_embd.weight", np.ones((rows, 32), dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path

    service.poller.poll()
    hub.add_repo("quant/big-GGUF", {"big-Q8_0.gguf": gguf_file("big.gguf", 64), "README.md": "# quantized"})
    hub.add_repo("quant/tiny-GGUF", {"tiny-Q8_0.gguf": gguf_file("tiny.gguf", 1)})  # 32 parameters: small
    hub.add_repo("quant/nothing", {"README.md": "# no weights"})
    reports = service.poller.poll()
    assert [e.split("@")[0] for r in reports for e in r.enqueued] == ["quant/big-GGUF"]
    skipped = reports[0].skipped
    assert (skipped["small"], skipped["no_weights"]) == (1, 1), skipped
