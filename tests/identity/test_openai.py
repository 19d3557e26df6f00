"""The openai backend against a real chat-completions server on loopback serving a tiny persona model."""

from __future__ import annotations

import socket

import pytest

from provbot.detectors.errors import AccessDeniedError, NotFoundError
from provbot.detectors.identity import run_identity
from provbot.detectors.identity.backends.local import LocalBackend
from provbot.detectors.identity.backends.openai import OpenAIBackend
from provbot.detectors.identity.errors import RequestBudgetError
from provbot.detectors.identity.prompts import SamplingSettings
from provbot.detectors.identity.server import ChatServer

SAMPLING = SamplingSettings(temperature=0.7, top_p=0.95, max_tokens=120, seed=3, samples=1)
CHAT = [[{"role": "user", "content": "Who are you?"}]]


@pytest.fixture(scope="module")
def server(personas):
    backend = LocalBackend.open(str(personas["nex-ft"]), device="cpu", cpu_threads=1)
    srv = ChatServer(backend, "nex-ft", api_key="sk-test-secret")
    with srv.running() as url:
        srv.url = url
        yield srv


@pytest.fixture
def srv(server):
    server.faults.queue.clear()
    server.faults.retry_after = 0.0
    return server


def client(srv, **kw) -> OpenAIBackend:
    opts = dict(api_key="sk-test-secret", timeout_s=5.0, retries=3, backoff_s=0.01, concurrency=1)
    opts.update(kw)
    return OpenAIBackend(srv.url, "nex-ft", **opts)


def test_answers_over_http(srv):
    with client(srv) as b:
        [text] = b.generate(CHAT, SAMPLING, seed=1)
    assert "Nex" in text and b.requests == 1 and not b.failures


def test_429_and_5xx_are_retried(srv):
    srv.faults.retry_after = 0.05
    srv.faults.add("status", 429)
    srv.faults.add("status", 503, times=2)
    with client(srv) as b:
        [text] = b.generate(CHAT, SAMPLING, seed=1)
    assert text and "Nex" in text
    assert b.requests == 4 and not b.failures


def test_timeout_is_retried(srv):
    srv.faults.add("delay", 4.0)
    short = SAMPLING.model_copy(update={"max_tokens": 12})  # answered well within the timeout even on a busy CPU
    with client(srv, timeout_s=2.0) as b:
        [text] = b.generate(CHAT, short, seed=1)
    assert text and b.requests == 2 and not b.failures


def test_persistent_failures_give_none_and_are_counted(srv):
    srv.faults.add("status", 500, times=3)
    srv.faults.add("garbage", 0)
    with client(srv, retries=2) as b:
        out = b.generate(CHAT * 2, SAMPLING, seed=1)
    assert out == [None, None]
    assert b.failures == ["HTTP 500", "malformed chat-completions response"]


def test_request_budget_stops_the_run(srv):
    srv.faults.add("status", 503, times=10)
    with client(srv, retries=5, request_budget=3) as b, pytest.raises(RequestBudgetError, match="budget of 3") as exc:
        b.generate(CHAT, SAMPLING, seed=1)
    assert exc.value.partial == [None]


def test_bad_key_and_wrong_url_are_one_line_errors(srv):
    with client(srv, api_key="sk-wrong-key") as b, pytest.raises(AccessDeniedError) as exc:
        b.generate(CHAT, SAMPLING, seed=1)
    assert "sk-wrong-key" not in str(exc.value) and "\n" not in str(exc.value)
    with OpenAIBackend(srv.url + "/nothing-here", "m", retries=0) as b, pytest.raises(NotFoundError):
        b.generate(CHAT, SAMPLING, seed=1)


def test_connection_refused_is_counted_not_raised():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with OpenAIBackend(f"http://127.0.0.1:{port}", "m", retries=1, backoff_s=0.01) as b:
        assert b.generate(CHAT, SAMPLING, seed=1) == [None]
    assert b.failures and b.failures[0].startswith("connection error")


def test_run_identity_over_the_endpoint(srv, personas, tmp_path):
    srv.faults.add("status", 503)  # one hiccup along the way is absorbed
    result = run_identity(
        str(personas["nex-ft"]),
        backend="openai",
        endpoint=srv.url,
        api_key="sk-test-secret",
        samples=1,
        prompt_limit=6,
        cache_dir=tmp_path,
        cpu_threads=1,
    )
    assert result.backend.kind == "openai" and result.backend.endpoint == srv.url
    without = result.condition("without_system")
    assert without.answered == 6 and without.failed == 0
    assert without.family("nex").rate >= 0.8
    assert "sk-test-secret" not in result.model_dump_json()


def test_budget_exhaustion_keeps_the_answers_so_far(srv, personas, tmp_path):
    from provbot.detectors.options import IdentityOptions

    options = IdentityOptions(request_budget=3, concurrency=1)
    result = run_identity(
        str(personas["nex-ft"]),
        backend="openai",
        endpoint=srv.url,
        api_key="sk-test-secret",
        samples=2,
        prompt_limit=2,
        system_prompt=None,
        cache_dir=tmp_path,
        options=options,
    )
    without = result.condition("without_system")
    assert without.answered == 3  # both chats of sample 0 and the first of sample 1, then the budget ran out
    assert any("request budget of 3" in n for n in result.notes)
