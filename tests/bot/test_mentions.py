"""Parsing ``@provbot scan`` commands, who may ask, and webhook payload checks."""

from __future__ import annotations

import json

import pytest

from provbot.bot.db.database import Database
from provbot.bot.db.mentions import MentionStore
from provbot.bot.service.mentions.parse import parse_mention
from provbot.bot.service.mentions.policy import MentionPolicy
from provbot.bot.service.web.webhook import WebhookRejected, check_secret, parse_webhook


@pytest.mark.parametrize(
    ("text", "against", "base"),
    [
        ("@provbot scan", [], None),
        ("hey @ProvBot scan please", [], None),
        ("@provbot scan against org/a, org/b. base org/b", ["org/a", "org/b"], "org/b"),
        ("line one\n@provbot scan base org/q against org/a\nnot an arg org/z", ["org/a"], "org/q"),
    ],
)
def test_parse_commands(text: str, against: list[str], base: str | None) -> None:
    cmd = parse_mention(text, "provbot")
    assert cmd is not None and cmd.against == against and cmd.base == base and not cmd.problems


@pytest.mark.parametrize(
    "text",
    [
        "no mention here",
        "`@provbot scan`",
        "``use @provbot scan like `this` ``",
        "```\n@provbot scan\n```",
        "    @provbot scan (indented code)",
        "> @provbot scan\n\nquoting someone",
        "<!-- @provbot scan -->",
        "mail me at x@provbot scan",
        "@provbotty scan",
        "@provbot hello",
    ],
)
def test_non_commands_are_ignored(text: str) -> None:
    assert parse_mention(text, "provbot") is None


def test_bad_repo_names_are_reported() -> None:
    cmd = parse_mention("@provbot scan against ../etc/passwd org/ok", "provbot")
    assert cmd.against == ["org/ok"] and len(cmd.problems) == 1


def test_policy_owner_moderator_refusal_once_and_rate_limit(sqlite_url: str) -> None:
    from provbot.bot.db.models_bot import Mention, utcnow

    db = Database(sqlite_url)
    db.migrate()
    policy = MentionPolicy(
        MentionStore(db), bot_username="provbot", moderators=["mod"], per_user_per_day=2, per_repo_per_hour=5
    )
    assert policy.decide("alice", "alice/model").decision == "accept"  # owner
    assert policy.decide("mod", "someone/model").decision == "accept"  # moderator
    assert policy.decide("mallory", "alice/model").decision == "refuse"

    def record(author: str, repo: str, outcome: str, cid: str) -> None:
        with db.session() as s:
            s.add(
                Mention(
                    comment_id=cid, repo=repo, discussion_num=1, author=author, command={}, outcome=outcome, at=utcnow()
                )
            )

    record("mallory", "alice/model", "refused", "c1")
    assert policy.decide("mallory", "alice/model").decision == "silent"  # refused once only
    record("alice", "alice/model", "accepted", "c2")
    record("alice", "alice/model", "accepted", "c3")
    assert policy.decide("alice", "alice/model").decision == "refuse"  # over the per-user limit


def _payload(**over: object) -> bytes:
    body = {
        "event": {"action": "create", "scope": "discussion.comment"},
        "repo": {
            "type": "model",
            "name": "alice/m",
            "id": "1",
            "private": False,
            "owner": {"id": "o"},
            "url": {"web": "w"},
        },
        "discussion": {
            "id": "d",
            "num": 3,
            "author": {"id": "a"},
            "url": {"web": "w"},
            "title": "t",
            "isPullRequest": False,
            "status": "open",
        },
        "comment": {
            "id": "c9",
            "author": {"id": "a"},
            "hidden": False,
            "content": "@provbot scan",
            "url": {"web": "w"},
        },
        "webhook": {"id": "h", "version": 3},
    }
    body.update(over)
    return json.dumps(body).encode()


def test_webhook_parsing() -> None:
    ev = parse_webhook(_payload())
    assert (ev.repo, ev.discussion_num, ev.comment_id) == ("alice/m", 3, "c9")
    assert parse_webhook(_payload(event={"action": "update", "scope": "discussion.comment"})) is None
    for bad in (b"not json", b"{}", _payload(webhook={"id": "h", "version": 2}), _payload(repo={"name": 1})):
        with pytest.raises(WebhookRejected) as info:
            parse_webhook(bad)
        assert info.value.status == 400


def test_secret_check() -> None:
    check_secret("s3cret", "s3cret")
    for given, expected in (("wrong", "s3cret"), (None, "s3cret"), ("x", None)):
        with pytest.raises(WebhookRejected) as info:
            check_secret(given, expected)
        assert info.value.status == 403


def test_repo_content_webhook_becomes_an_upload_event() -> None:
    from provbot.bot.service.events import UploadEvent

    sha = "ab" * 20
    body = json.loads(_payload(event={"action": "update", "scope": "repo.content"}))
    body.pop("discussion"), body.pop("comment")
    body["updatedRefs"] = [{"ref": "refs/heads/dev", "newSha": "cd" * 20}, {"ref": "refs/heads/main", "newSha": sha}]
    assert parse_webhook(json.dumps(body).encode()) == UploadEvent(repo="alice/m", revision=sha)
    body["updatedRefs"] = [{"ref": "refs/heads/main", "newSha": "not-a-sha; rm -rf"}]
    assert parse_webhook(json.dumps(body).encode()) is None
