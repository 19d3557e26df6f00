"""The local Hub's OAuth provider: authorize checks the app and its redirect URI exactly, codes are
single-use, short-lived and bound to their PKCE challenge, userinfo needs the access token."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from provbot.bot.localhub import LocalHub
from provbot.detectors.errors import ConfigError

REDIRECT = "http://127.0.0.1:8080/console/oauth/callback"
VERIFIER = "v" * 43


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def params(**kw: str) -> dict[str, str]:
    base = {
        "client_id": "app",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid profile",
        "state": "st-1",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
    }
    return {**base, **kw}


@pytest.fixture
def hub(localhub: LocalHub) -> LocalHub:
    localhub.add_oauth_app("app", "app-secret", [REDIRECT])
    localhub.add_token("hf_ann", "ann")
    localhub.add_org("acme", ["ann"])
    localhub.add_org("other", ["bob"])
    return localhub


def code_for(hub: LocalHub, **kw: str) -> str:
    r = httpx.get(f"{hub.url}/oauth/authorize", params=params(**kw), headers={"Authorization": "Bearer hf_ann"})
    assert r.status_code == 302
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert r.headers["location"].startswith(REDIRECT + "?") and q["state"] == [kw.get("state", "st-1")]
    return q["code"][0]


def exchange(
    hub: LocalHub, code: str, verifier: str = VERIFIER, secret: str = "app-secret", **kw: str
) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    return httpx.post(f"{hub.url}/oauth/token", data={**form, **kw}, auth=("app", secret))


def test_the_whole_flow_gives_the_users_identity_and_orgs(hub: LocalHub) -> None:
    r = exchange(hub, code_for(hub))
    assert r.status_code == 200 and r.json()["token_type"] == "bearer" and r.json()["scope"] == "openid profile"
    info = httpx.get(f"{hub.url}/oauth/userinfo", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    body = info.json()
    assert body["preferred_username"] == "ann" and body["sub"] and body["name"] == "ann"
    assert [o["preferred_username"] for o in body["orgs"]] == ["acme"]


def test_authorize_refuses_unknown_apps_and_other_redirect_uris_without_redirecting(hub: LocalHub) -> None:
    auth = {"Authorization": "Bearer hf_ann"}
    r = httpx.get(f"{hub.url}/oauth/authorize", params=params(client_id="nope"), headers=auth)
    assert r.status_code == 400 and "location" not in r.headers
    for uri in (REDIRECT + "x", REDIRECT.replace("8080", "8081"), "http://evil.example/console/oauth/callback"):
        r = httpx.get(f"{hub.url}/oauth/authorize", params=params(redirect_uri=uri), headers=auth)
        assert r.status_code == 400 and "location" not in r.headers


def test_authorize_sends_errors_back_to_the_app(hub: LocalHub) -> None:
    auth = {"Authorization": "Bearer hf_ann"}
    for kw, error in (
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid write-repos"}, "invalid_scope"),
    ):
        r = httpx.get(f"{hub.url}/oauth/authorize", params=params(**kw), headers=auth)
        assert r.status_code == 302 and parse_qs(urlsplit(r.headers["location"]).query)["error"] == [error]


def test_the_login_form_approves_with_a_token_or_denies(hub: LocalHub) -> None:
    page = httpx.get(f"{hub.url}/oauth/authorize", params=params())
    assert page.status_code == 200 and 'name="token"' in page.text and 'id="deny"' in page.text
    assert httpx.post(f"{hub.url}/oauth/authorize", data={**params(), "token": "wrong"}).status_code == 401
    r = httpx.post(f"{hub.url}/oauth/authorize", data={**params(), "token": "hf_ann"})
    assert r.status_code == 302 and "code=" in r.headers["location"]
    r = httpx.post(f"{hub.url}/oauth/authorize", data={**params(), "deny": "1"})
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["access_denied"]


def test_a_code_works_once_and_only_with_its_verifier_secret_and_redirect(hub: LocalHub) -> None:
    code = code_for(hub)
    assert exchange(hub, code, secret="wrong").json()["error"] == "invalid_client"
    assert exchange(hub, code).status_code == 200  # a refused client did not use the code up
    again = exchange(hub, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    code = code_for(hub)
    assert exchange(hub, code, verifier="w" * 43).json()["error"] == "invalid_grant"
    assert exchange(hub, code).json()["error"] == "invalid_grant"  # a wrong try used the code up
    assert exchange(hub, code_for(hub), redirect_uri=REDIRECT + "x").json()["error"] == "invalid_grant"
    hub.app.oauth.code_seconds = 0
    assert exchange(hub, code_for(hub)).json()["error"] == "invalid_grant"  # expired


def test_userinfo_needs_an_access_token_from_the_token_endpoint(hub: LocalHub) -> None:
    assert httpx.get(f"{hub.url}/oauth/userinfo").status_code == 401
    r = httpx.get(f"{hub.url}/oauth/userinfo", headers={"Authorization": "Bearer hf_ann"})  # an API token
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_registering_an_app_without_redirect_uris_is_a_config_error(localhub: LocalHub) -> None:
    with pytest.raises(ConfigError, match="redirect_uris"):
        localhub.add_oauth_app("app", "s", [])
