"""Tokens, private and gated repos; injected faults (429 with RateLimit headers, 500, slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, hf_hub_url
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import get_session, parse_ratelimit_headers

from tests.localhub.helpers import single_repo


@pytest.fixture
def private_and_gated(localhub):
    localhub.add_token("tok-alice", "alice")
    localhub.add_token("tok-bob", "bob")
    localhub.add_repo("acme/secret", single_repo(), config={"private": True, "members": ["alice"]})
    localhub.add_repo("acme/gated", single_repo(), config={"gated": "manual", "members": ["alice"]})
    return localhub


def test_private_repo(private_and_gated) -> None:
    url = private_and_gated.url
    with pytest.raises(RepositoryNotFoundError) as anon:
        HfApi(endpoint=url, token=False).model_info("acme/secret")
    assert anon.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError) as other:
        HfApi(endpoint=url, token="tok-bob").model_info("acme/secret")
    assert other.value.response.status_code == 404  # the Hub does not reveal private repos
    assert HfApi(endpoint=url, token="tok-alice").model_info("acme/secret").private is True


def test_gated_repo(private_and_gated, tmp_path: Path) -> None:
    url = private_and_gated.url
    assert HfApi(endpoint=url, token=False).model_info("acme/gated").gated == "manual"
    with pytest.raises(GatedRepoError) as anon:
        hf_hub_download("acme/gated", "model.safetensors", endpoint=url, cache_dir=tmp_path, token=False)
    assert anon.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as bob:
        hf_hub_download("acme/gated", "model.safetensors", endpoint=url, cache_dir=tmp_path, token="tok-bob")
    assert bob.value.response.status_code == 403
    path = hf_hub_download("acme/gated", "model.safetensors", endpoint=url, cache_dir=tmp_path, token="tok-alice")
    assert Path(path).stat().st_size > 0
    # The card stays readable, as on the Hub.
    assert hf_hub_download("acme/gated", "README.md", endpoint=url, cache_dir=tmp_path, token=False)


def test_unknown_token_is_rejected(private_and_gated) -> None:
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(endpoint=private_and_gated.url, token="tok-wrong").model_info("acme/gated")
    assert exc.value.response.status_code == 401
    assert exc.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_whoami(private_and_gated) -> None:
    assert HfApi(endpoint=private_and_gated.url, token="tok-alice").whoami()["name"] == "alice"


def test_rate_limit_fault_carries_hub_headers(localhub) -> None:
    localhub.add_repo("acme/m", single_repo())
    localhub.rate_limit("/api/models/", count=2, reset_s=7)
    url = f"{localhub.url}/api/models/acme/m"
    session = get_session()
    for _ in range(2):
        r = session.get(url)
        assert r.status_code == 429
        info = parse_ratelimit_headers(r.headers)
        assert info is not None and info.remaining == 0 and info.reset_in_seconds == 7 and info.limit == 1000
    assert session.get(url).status_code == 200  # only the next N requests
    assert localhub.faults.fired == 2


def test_faults_match_prefix_and_method(localhub) -> None:
    localhub.add_repo("acme/m", single_repo())
    localhub.inject("/acme/m/resolve/", status=500, count=1, methods=["GET"])
    session = get_session()
    file_url = hf_hub_url("acme/m", "config.json", endpoint=localhub.url)
    assert session.get(f"{localhub.url}/api/models/acme/m").status_code == 200  # other prefix
    assert session.head(file_url).status_code == 200  # other method
    assert session.get(file_url).status_code == 500
    assert session.get(file_url).status_code == 200


def test_client_retries_through_a_transient_rate_limit(localhub, tmp_path: Path) -> None:
    # hf_hub_download's GET retries on 429 and waits for the advertised reset: one retry here.
    localhub.add_repo("acme/m", single_repo())
    localhub.inject("/acme/m/resolve/", status=429, count=1, methods=["GET"], reset_s=0)
    path = hf_hub_download("acme/m", "config.json", endpoint=localhub.url, cache_dir=tmp_path, token=False)
    assert b"llama" in Path(path).read_bytes()
    assert localhub.faults.fired == 1


def test_slow_fault_then_timeout(localhub) -> None:
    from huggingface_hub.utils import httpx

    localhub.add_repo("acme/m", single_repo())
    localhub.slow("/api/models/acme/m", delay_s=1.0, count=1)
    with pytest.raises(httpx.TimeoutException):
        get_session().get(f"{localhub.url}/api/models/acme/m", timeout=0.2)
    assert get_session().get(f"{localhub.url}/api/models/acme/m", timeout=5).status_code == 200


def test_secrets_stay_out_of_reprs(localhub) -> None:
    localhub.add_token("hf_very_secret_token", "alice")
    localhub.add_webhook("http://127.0.0.1:9/hook", secret="webhook-secret-value")
    shown = repr(localhub.options)
    assert "hf_very_secret_token" not in shown and "webhook-secret-value" not in shown
