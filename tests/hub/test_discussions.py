"""Discussions round trip on the local Hub, and org membership."""

from __future__ import annotations

from tests.bot.helpers import model_files
from tests.hub.conftest import FakeClock, make_client

TOKEN = "hf_BotTokenValue000000000001"


def test_discussion_round_trip(localhub, clock: FakeClock) -> None:  # noqa: ANN001
    localhub.add_repo("lab/x", model_files())
    localhub.add_token(TOKEN, "provbot")
    client = make_client(localhub.url, clock, token=TOKEN)
    created = client.create_discussion("lab/x", "Provenance finding", "first words")
    assert created.num >= 1 and created.author == "provbot"
    first = next(e for e in created.events if e.type == "comment")
    assert first.content == "first words"
    reply = client.comment("lab/x", created.num, "second words")
    edited = client.edit_comment("lab/x", created.num, reply.id, "second words, edited")
    assert edited.content == "second words, edited"
    listed = client.list_discussions("lab/x", author="provbot")
    assert [d.num for d in listed] == [created.num]
    client.change_discussion_status("lab/x", created.num, "closed", comment="done")
    details = client.discussion_details("lab/x", created.num)
    assert details.status == "closed"
    assert [e.content for e in details.events if e.type == "comment"][:2] == ["first words", "second words, edited"]
    assert client.discussion_url("lab/x", 3) == f"{localhub.url}/lab/x/discussions/3"


def test_org_members(localhub, clock: FakeClock) -> None:  # noqa: ANN001
    localhub.add_org("lab", ["Alice", "bob"])
    client = make_client(localhub.url, clock)
    assert client.org_members("lab") == {"alice", "bob"}
    assert client.org_members("just-a-user") == set()
