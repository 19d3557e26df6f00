"""Discussions through HfApi, persistence across restarts, and webhook deliveries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from huggingface_hub import HfApi, WebhookPayload
from huggingface_hub.errors import HfHubHTTPError

from provbot.bot.localhub import LocalHub
from tests.localhub.helpers import single_repo

# huggingface_hub warns that hiding is irreversible each time a test hides a comment.
pytestmark = pytest.mark.filterwarnings("ignore:Hidden comments:UserWarning")


class Receiver:
    """A webhook endpoint on loopback recording (headers, json); answers ``fail_first`` 500s first."""

    def __init__(self, fail_first: int = 0):
        self.calls: list[tuple[dict[str, str], dict]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(500)
                else:
                    receiver.calls.append((dict(self.headers), json.loads(body)))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hub(localhub: LocalHub) -> LocalHub:
    localhub.add_token("tok-alice", "alice")
    localhub.add_token("tok-bot", "provbot")
    localhub.add_token("tok-acme", "acme")
    localhub.add_repo("acme/m", single_repo())
    return localhub


def api(hub: LocalHub, token: str | bool) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def test_discussion_lifecycle(hub: LocalHub) -> None:
    alice, bot, owner = api(hub, "tok-alice"), api(hub, "tok-bot"), api(hub, "tok-acme")
    d = alice.create_discussion("acme/m", "Is this a merge?", description="@provbot check please")
    assert d.num == 1 and d.author == "alice" and d.status == "open" and not d.is_pull_request
    assert d.events[0].content == "@provbot check please"
    reply = bot.comment_discussion("acme/m", 1, "Automated check: linear merge of a and b.")
    assert reply.author == "provbot" and reply.content.startswith("Automated")
    edited = bot.edit_discussion_comment("acme/m", 1, reply.id, "Automated check (v2).")
    assert edited.edited and edited.content == "Automated check (v2)."
    with pytest.raises(HfHubHTTPError) as exc:
        alice.edit_discussion_comment("acme/m", 1, reply.id, "hijack")
    assert exc.value.response.status_code == 403
    hidden = owner.hide_discussion_comment("acme/m", 1, d.events[0].id)
    assert hidden.hidden
    status = owner.change_discussion_status("acme/m", 1, "closed", comment="Answered.")
    assert status.new_status == "closed"
    details = api(hub, False).get_discussion_details("acme/m", 1)
    kinds = [e.type for e in details.events]
    assert kinds == ["comment", "comment", "status-change", "comment"]
    assert details.events[0].hidden and details.events[0].content != "@provbot check please"
    assert details.events[1].content == "Automated check (v2)." and details.status == "closed"


def test_listing_filters_and_pages(hub: LocalHub) -> None:
    alice, bot = api(hub, "tok-alice"), api(hub, "tok-bot")
    for i in range(3):
        alice.create_discussion("acme/m", f"Question {i}")
    bot.create_discussion("acme/m", "Provenance report", description="automated")
    alice.create_pull_request("acme/m", "Fix card")
    anon = api(hub, False)
    assert [d.title for d in anon.get_repo_discussions("acme/m", author="provbot")] == ["Provenance report"]
    assert [d.num for d in anon.get_repo_discussions("acme/m")] == [5, 4, 3, 2, 1]
    assert [d.num for d in anon.get_repo_discussions("acme/m", discussion_type="pull_request")] == [5]
    pr = anon.get_discussion_details("acme/m", 5)
    assert pr.is_pull_request and pr.target_branch == "refs/heads/main"
    bot.change_discussion_status("acme/m", 4, "closed")
    assert [d.num for d in anon.get_repo_discussions("acme/m", discussion_status="closed")] == [4]
    with pytest.raises(HfHubHTTPError) as exc:
        anon.create_discussion("acme/m", "anonymous")
    assert exc.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as bad:
        alice.create_discussion("acme/m", "x")  # too short a title
    assert bad.value.response.status_code == 400
    with pytest.raises(HfHubHTTPError) as missing:
        anon.get_discussion_details("acme/m", 99)
    assert missing.value.response.status_code == 404


def test_many_pages(hub: LocalHub) -> None:
    alice = api(hub, "tok-alice")
    for i in range(55):  # more than one page of 50
        alice.create_discussion("acme/m", f"Question {i}")
    assert len(list(api(hub, False).get_repo_discussions("acme/m"))) == 55


def test_discussions_survive_restart_and_repo_replacement(localhub_root, hub: LocalHub) -> None:
    api(hub, "tok-alice").create_discussion("acme/m", "Persisted?")
    hub.add_repo("acme/m", single_repo(seed=5))  # new files, same repo
    hub.stop()
    with LocalHub(localhub_root) as again:
        titles = [d.title for d in HfApi(endpoint=again.url, token=False).get_repo_discussions("acme/m")]
        assert titles == ["Persisted?"]


def test_webhooks_for_discussions_and_content(hub: LocalHub, receiver: Receiver) -> None:
    hub.add_webhook(receiver.url, secret="s3cret")
    alice = api(hub, "tok-alice")
    alice.create_discussion("acme/m", "Hello", description="hi @provbot")
    c = api(hub, "tok-bot").comment_discussion("acme/m", 1, "reply")
    api(hub, "tok-acme").hide_discussion_comment("acme/m", 1, c.id)
    new_sha = hub.update_repo("acme/m", {"model.safetensors": single_repo(seed=9)["model.safetensors"]})
    assert hub.webhooks.wait_idle()
    assert all(h.get("X-Webhook-Secret") == "s3cret" for h, _ in receiver.calls)
    payloads = [WebhookPayload.model_validate(p) for _, p in receiver.calls]
    scopes = [(p.event.action, p.event.scope) for p in payloads]
    assert scopes == [
        ("create", "discussion"),
        ("create", "discussion.comment"),
        ("update", "discussion.comment"),
        ("update", "repo.content"),
    ]
    assert payloads[0].comment.content == "hi @provbot" and payloads[0].discussion.num == 1
    assert payloads[1].comment.content == "reply" and payloads[0].repo.name == "acme/m"
    assert payloads[2].comment.hidden and payloads[2].comment.content is None
    assert payloads[3].repo.head_sha == new_sha and payloads[3].updatedRefs[0].newSha == new_sha


def test_webhook_retry(localhub: LocalHub) -> None:
    flaky = Receiver(fail_first=2)
    try:
        localhub.add_webhook(flaky.url)
        localhub.add_repo("acme/new", {"config.json": "{}"})
        assert localhub.webhooks.wait_idle()
        delivery = localhub.webhooks.deliveries[-1]
        assert delivery.ok and delivery.attempts == 3
        assert WebhookPayload.model_validate(flaky.calls[0][1]).event.scope == "repo.content"
    finally:
        flaky.close()
