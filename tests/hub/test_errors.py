"""The error map over real HTTP: what each fault costs (requests, sleeps) and how it reads."""

from __future__ import annotations

import json
import logging
import pickle
from datetime import UTC, datetime

import pytest

from provbot.detectors.errors import (
    AccessDeniedError,
    BadAnswerError,
    NotFoundError,
    RateLimitedError,
    RemoteError,
    UnreachableError,
)
from tests.bot.helpers import model_files
from tests.hub.conftest import FakeClock, make_client
from tests.hub.scripted import Answer, ScriptedServer, closed_port

TOKEN = "hf_SecretTokenValue0000001"
INFO = json.dumps({"id": "org/x", "sha": "a" * 40, "siblings": [{"rfilename": "config.json"}]}).encode()


def test_an_hour_away_429_raises_at_once_naming_the_time(scripted: ScriptedServer, clock: FakeClock) -> None:
    scripted.script("/api/models/org/x", Answer(429, b"{}", {"RateLimit": '"api";r=0;t=3600'}))
    client = make_client(scripted.url, clock)
    with pytest.raises(RateLimitedError) as info:
        client.model_info("org/x")
    reset = datetime.fromtimestamp(clock.now + 3600, UTC)
    assert f"rate limited until {reset:%H:%M} UTC" in str(info.value) and "model info of org/x" in str(info.value)
    assert info.value.reset_at == reset and info.value.retry_after == 3600
    assert clock.sleeps == [] and len(scripted.requests) == 1
    copy = pickle.loads(pickle.dumps(info.value))  # survives Ray
    assert str(copy) == str(info.value) and copy.reset_at == reset


def test_short_429s_are_waited_out_as_the_hub_says(localhub, clock: FakeClock) -> None:  # noqa: ANN001
    localhub.add_repo("lab/x", model_files())
    localhub.rate_limit("/api/models/lab/x", count=2, reset_s=7)
    client = make_client(localhub.url, clock)
    assert client.model_info("lab/x").id == "lab/x"
    assert clock.sleeps == [7.0, 7.0] and client.stats.rate_limited == 2 and client.stats.requests == 3


def test_too_many_429s_in_a_row_give_up(scripted: ScriptedServer, clock: FakeClock) -> None:
    scripted.script("/api/models/org/x", Answer(429, b"{}", {"Retry-After": "2"}))
    with pytest.raises(RateLimitedError, match="still after 3 waits"):
        make_client(scripted.url, clock, max_rate_limited=3).model_info("org/x")
    assert len(scripted.requests) == 4


def test_5xx_backs_off_then_fails_after_exactly_n_plus_one_requests(scripted: ScriptedServer, clock: FakeClock) -> None:
    scripted.script("/api/models/org/x", Answer(503, b"busy"))
    client = make_client(scripted.url, clock, max_retries=3, backoff_s=1.0)
    with pytest.raises(RemoteError) as info:
        client.model_info("org/x")
    assert len(scripted.requests) == 4 and clock.sleeps == [1.0, 2.0, 4.0]
    assert "model info of org/x" in str(info.value) and "failed after 4 tries (HTTP 503)" in str(info.value)
    assert not isinstance(info.value, UnreachableError | RateLimitedError)


def test_5xx_then_success(scripted: ScriptedServer, clock: FakeClock) -> None:
    scripted.script("/api/models/org/x", Answer(502), Answer(200, INFO))
    assert make_client(scripted.url, clock).model_info("org/x").sha == "a" * 40
    assert len(scripted.requests) == 2


def test_refused_connection_is_unreachable_after_one_try(clock: FakeClock) -> None:
    client = make_client(f"http://127.0.0.1:{closed_port()}", clock, max_retries=5)
    with pytest.raises(UnreachableError, match="cannot reach") as info:
        client.model_info("org/x")
    assert "not found" not in str(info.value)
    assert client.stats.requests == 1 and client.stats.retries == 0 and clock.sleeps == []


def test_unknown_host_is_unreachable_after_one_try(clock: FakeClock) -> None:
    client = make_client("http://no-such-host.invalid", clock, max_retries=5)
    with pytest.raises(UnreachableError):
        client.model_info("org/x")
    assert client.stats.requests == 1 and clock.sleeps == []


def test_offline_mode_is_unreachable(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UnreachableError, match="offline"):
        make_client("http://127.0.0.1:9", clock).model_info("org/x")


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (Answer(200, b"<html>hello</html>"), "not JSON"),
        (Answer(200, b"[" * 200 + b"]" * 200), "nested deeper"),
        (Answer(200, b'{"id": "org/x", "siblings": "oops"}'), "wrong shape at siblings"),
        (Answer(200, b'{"id": "org/x", "siblings": [{"rfilename": "../../etc/passwd"}]}'), "wrong shape at siblings"),
        (Answer(200, b'{"id": "org/x", "sha": "not-a-sha"}'), "wrong shape at sha"),
        (Answer(200, b'{"id": "other/y"}'), "answer is about 'other/y'"),
        (Answer(200, b'{"id": "org/x", "pad": "' + b"x" * 5000 + b'"}'), "larger than 4096 bytes"),
        (Answer(302, b"", {"Location": "/api/models/org/x"}), "redirect loop"),
    ],
)
def test_bad_answers_are_clear_errors_naming_repo_and_call(
    scripted: ScriptedServer, clock: FakeClock, answer: Answer, why: str
) -> None:
    scripted.script("/api/models/org/x", answer)
    client = make_client(scripted.url, clock)
    client.transport.max_answer_bytes = 4096
    with pytest.raises(BadAnswerError, match=why) as info:
        client.model_info("org/x")
    assert str(info.value).startswith("model info of org/x on ")
    assert clock.sleeps == []


def test_status_errors(localhub, clock: FakeClock) -> None:  # noqa: ANN001
    localhub.add_repo("lab/private", model_files(), config={"private": True})
    client = make_client(localhub.url, clock)
    with pytest.raises(NotFoundError):
        client.model_info("nobody/nothing")
    with pytest.raises((AccessDeniedError, NotFoundError)):
        client.model_info("lab/private")
    assert clock.sleeps == []


def test_the_token_never_shows(scripted: ScriptedServer, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    scripted.script("/api/models/org/x", Answer(503), Answer(401, b"{}"))
    client = make_client(scripted.url, clock, token=TOKEN)
    with pytest.raises(AccessDeniedError) as info:
        client.model_info("org/x")
    assert scripted.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    shown = [repr(client), repr(client.transport), str(info.value), repr(info.value), caplog.text]
    assert not any(TOKEN in s for s in shown)


def test_no_token_sends_no_authorization(scripted: ScriptedServer, clock: FakeClock, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("HF_TOKEN", "hf_CachedOnTheMachine")
    scripted.script("/api/models/org/x", Answer(200, INFO))
    make_client(scripted.url, clock).model_info("org/x")
    assert "authorization" not in scripted.requests[0].headers


def test_writes_are_not_resent_after_a_503_but_are_after_a_429(scripted: ScriptedServer, clock: FakeClock) -> None:
    path = "/api/models/org/x/discussions/1/comment"
    scripted.script(path, Answer(503))
    client = make_client(scripted.url, clock, token=TOKEN)
    with pytest.raises(RemoteError, match="may have been applied"):
        client.comment("org/x", 1, "hello")
    assert len(scripted.requests) == 1
    event = {"id": "c1", "type": "comment", "author": {"name": "bot"}, "data": {"latest": {"raw": "hello"}}}
    scripted.script(
        path,
        Answer(429, b"{}", {"RateLimit": '"api";r=0;t=3'}),
        Answer(200, json.dumps({"newMessage": event}).encode()),
    )
    assert client.comment("org/x", 1, "hello").content == "hello"
    assert len(scripted.requests) == 3 and clock.sleeps == [3.0]


def test_the_token_does_not_follow_a_redirect_to_another_host(scripted: ScriptedServer, clock: FakeClock) -> None:
    with ScriptedServer() as cdn:
        cdn.script("/", Answer(200, b"x" * 10))
        cdn_url = cdn.url.replace("127.0.0.1", "localhost")
        scripted.script("/org/x/resolve/main/f", Answer(302, b"", {"Location": f"{cdn_url}/blob/f"}))
        assert make_client(scripted.url, clock, token=TOKEN).read_file("org/x", "f") == b"x" * 10
        assert scripted.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
        assert "authorization" not in cdn.requests[0].headers


def test_a_renamed_repo_is_followed(scripted: ScriptedServer, clock: FakeClock) -> None:
    scripted.script("/api/models/old/x", Answer(307, b"", {"Location": "/api/models/org/x"}))
    scripted.script("/api/models/org/x", Answer(200, INFO))
    assert make_client(scripted.url, clock).model_info("old/x").id == "org/x"
