"""What strangers can send the bot (webhook bodies, cards, comments) never crashes it, leaks, or reaches a post as is."""

from __future__ import annotations

import socket
import time

import httpx
from huggingface_hub import HfApi

from provbot.bot.service.runner import BotService
from tests.bot.helpers import BOT_TOKEN, WEBHOOK_SECRET, approve_and_drain, model_files, upload_and_find, user_api
from tests.bot.test_service import _comment_payload, _start_thread, bot_comments, wait_for


def test_oversized_webhook_bodies_are_refused_before_they_are_read(service: BotService) -> None:
    url = f"{service.url}/webhook"
    headers = {"X-Webhook-Secret": WEBHOOK_SECRET}
    # Declared too large: refused on the header, whatever follows.
    r = httpx.post(url, content=b"x" * 300_000, headers=headers)
    assert r.status_code == 413
    # No length declared (chunked): refused once the limit is passed.
    r = httpx.post(url, content=(b"x" * 65_536 for _ in range(8)), headers=headers)
    assert r.status_code == 413
    # Without the secret nothing is read at all.
    assert httpx.post(url, content=b"x" * 300_000).status_code == 403
    assert service.ctx.queue.list() == []
    assert 'provbot_webhooks_total{outcome="rejected_413"} 2.0' in httpx.get(f"{service.url}/metrics").text


def test_a_caller_hanging_up_mid_body_is_a_normal_event(service: BotService, caplog) -> None:  # noqa: ANN001
    host, port = service.host, service.port
    with socket.create_connection((host, port)) as sock:
        head = (
            f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nX-Webhook-Secret: {WEBHOOK_SECRET}\r\n"
            "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"event": {"action": "cr')
    time.sleep(0.5)
    assert httpx.get(f"{service.url}/healthz").json()["status"] == "ok"
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info]


def test_invisible_characters_and_huge_card_fields_are_escaped_and_capped(service: BotService, hub) -> None:  # noqa: ANN001
    spoof = "lab/\u202eevil\u200b"
    # 60 names of 1,000 characters: under the card reader's 64 KiB; no Hub id is that long, so the one
    # lineage parser drops them (the comment's length cap: test_an_overlong_post_is_cut_keeping_its_marker).
    files = model_files(seed=11, base_model=[spoof] + [f"lab/{i}" + "x" * 1_000 for i in range(60)])
    finding = upload_and_find(service, hub, "sneaky/bidi", files)
    approve_and_drain(service, finding.id)
    discussions = list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("sneaky/bidi"))
    assert len(discussions) == 1
    text = bot_comments(hub, "sneaky/bidi", discussions[0].num)[0]
    assert "\u202e" not in text and "\u200b" not in text and "U\\+202E" in text and "U\\+200B" in text
    assert len(text) <= 60_000 and "x" * 1_000 not in text
    assert text.rstrip().endswith("-->")  # the hidden marker survives the cut


def test_an_overlong_post_is_cut_keeping_its_marker() -> None:
    from provbot.bot.service.publish.render import POST_MAX, cap_post

    text = cap_post("head\n" + "x" * (2 * POST_MAX) + "\n<!-- provbot:finding:1 -->\n")
    assert len(text) <= POST_MAX and "(truncated" in text and text.rstrip().endswith("-->")


def test_a_stranger_cannot_make_the_bot_echo_its_marker(service: BotService, hub) -> None:  # noqa: ANN001
    """A marker forged into a request comes back escaped, and the finding still gets its own post."""
    ctx = service.ctx
    hub.add_repo("alice/model", model_files(seed=12))
    forged = f"<!-- {ctx.markers.reply('c-anything', 'result')} --> <!-- provbot:finding:deadbeef -->"
    num = _start_thread(hub, "alice", "alice/model", f"@provbot scan against ../bad {forged}")
    wait_for(lambda: bot_comments(hub, "alice/model", num), what="the reply to a malformed request")
    reply = bot_comments(hub, "alice/model", num)[0]
    assert "deadbeef" not in reply and "c-anything" not in reply
    assert reply.count("<!-- provbot:") == 1 and reply.rstrip().endswith("-->")  # only its own, at the end


def test_a_strangers_malformed_requests_get_one_refusal_not_a_reply_each(service: BotService, hub, scanner) -> None:  # noqa: ANN001
    hub.add_repo("alice/model", model_files(seed=13))
    num = _start_thread(hub, "mallory", "alice/model", "@provbot scan against ../etc/passwd")
    wait_for(lambda: bot_comments(hub, "alice/model", num), what="refusal")
    for i in range(3):
        user_api(hub, "mallory").comment_discussion("alice/model", num, f"@provbot scan against ../x{i}")
    time.sleep(0.5)
    assert service.wait_idle(30)
    replies = bot_comments(hub, "alice/model", num)
    assert len(replies) == 1 and "could not read" not in replies[0]
    assert scanner.calls == []


def test_the_bots_token_marks_its_posts(service: BotService, hub) -> None:  # noqa: ANN001
    """Markers are keyed: another deployment (another token) cannot forge this bot's markers."""
    from provbot.bot.service.publish.markers import Markers

    theirs = Markers.from_secrets(None, "hf_SomeoneElse").finding("a/m", "abc")
    assert service.ctx.markers.finding("a/m", "abc") != theirs
    assert Markers.from_secrets(None, BOT_TOKEN).finding("a/m", "abc") == service.ctx.markers.finding("a/m", "abc")


def test_replayed_comment_payload_is_still_a_duplicate(service: BotService, hub) -> None:  # noqa: ANN001
    url = f"{service.url}/webhook"
    body = _comment_payload("alice/model", 1, "c1")
    first = httpx.post(url, content=body, headers={"X-Webhook-Secret": WEBHOOK_SECRET})
    again = httpx.post(url, content=body, headers={"X-Webhook-Secret": WEBHOOK_SECRET})
    assert first.status_code == 202 and again.json()["status"] == "duplicate"


def test_members_of_the_repos_organisation_may_ask_and_strangers_may_not(service: BotService, hub, scanner) -> None:  # noqa: ANN001
    hub.add_org("labcorp", ["alice"])
    hub.add_repo("labcorp/model", model_files(seed=14))
    num = _start_thread(hub, "alice", "labcorp/model", "@provbot scan against lab/base base lab/base")
    wait_for(lambda: bot_comments(hub, "labcorp/model", num), what="acknowledgement")
    assert "queued" in bot_comments(hub, "labcorp/model", num)[0]
    other = _start_thread(hub, "mallory", "labcorp/model", "@provbot scan against lab/base")
    wait_for(lambda: bot_comments(hub, "labcorp/model", other), what="refusal")
    assert "Sorry" in bot_comments(hub, "labcorp/model", other)[0]
    outcomes = {e.actor: e.data.get("outcome") for e in service.ctx.audit.query(kind="mention")}
    assert outcomes == {"alice": "accepted", "mallory": "refused"}
