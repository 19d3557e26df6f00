"""Rate-limit windows per token, with the Hub's plans, RateLimit headers, 429s and a time scale."""

from __future__ import annotations

import time

import httpx

from provbot.bot.localhub.quota import PLANS, QuotaWindows
from provbot.detectors.hub.client import HubClient
from provbot.detectors.hub.windows import RateWindows

FREE, PRO = "hf_free_token", "hf_pro_token"


def _setup(hub) -> None:  # noqa: ANN001
    hub.add_repo("win/m", {"config.json": '{"model_type": "llama"}'})
    hub.add_token(FREE, "freeuser")
    hub.add_token(PRO, "prouser")
    hub.options.rate_windows = True
    hub.options.pro_users = ["prouser"]


def _get(hub, path: str, token: str | None = None) -> httpx.Response:  # noqa: ANN001
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{hub.url}{path}", headers=headers)


def test_every_answer_carries_the_plan_of_its_token(localhub) -> None:  # noqa: ANN001
    _setup(localhub)
    for token, plan in ((FREE, "free"), (PRO, "pro"), (None, "free")):
        r = _get(localhub, "/api/models/win/m", token)
        assert r.status_code == 200
        assert r.headers["ratelimit-policy"] == f'"fixed window";"api";q={PLANS[plan]["api"]};w=300'
        assert r.headers["ratelimit"].startswith(f'"api";r={PLANS[plan]["api"] - 1};t=')
        r = _get(localhub, "/win/m/resolve/main/config.json", token)
        assert f"q={PLANS[plan]['resolvers']}" in r.headers["ratelimit-policy"]


def test_exceeding_a_window_is_429_and_the_time_scale_resets_it(localhub) -> None:  # noqa: ANN001
    _setup(localhub)
    localhub.options.quotas = {"api": 3}
    localhub.options.time_scale = 150  # a 300 s window passes in 2 s
    # Start just after a window began, so the requests share it.
    while (time.time() * 150) % 300 > 60:
        time.sleep(0.01)
    codes = [_get(localhub, "/api/models/win/m", FREE).status_code for _ in range(3)]
    refused = _get(localhub, "/api/models/win/m", FREE)
    assert codes == [200, 200, 200] and refused.status_code == 429
    wait = refused.headers["retry-after"]
    assert wait == "2" and refused.headers["ratelimit"] == f'"api";r=0;t={wait}'
    assert refused.headers["ratelimit-policy"] == '"fixed window";"api";q=3;w=2'
    assert _get(localhub, "/api/models/win/m", PRO).status_code == 200  # another token, its own window
    time.sleep(int(refused.headers["retry-after"]))
    assert _get(localhub, "/api/models/win/m", FREE).status_code == 200


def test_the_clients_windows_read_the_headers(localhub) -> None:  # noqa: ANN001
    _setup(localhub)
    client = HubClient(localhub.url, PRO)
    client.model_info("win/m")
    windows = client.transport.windows
    assert windows.get("api") is not None and windows.get("api").quota == PLANS["pro"]["api"]
    assert windows.left("api") <= PLANS["pro"]["api"] - 1


def test_windows_are_per_caller_and_reset_by_hub_time() -> None:
    now = [0.0]
    q = QuotaWindows({"resolvers": 2}, window_s=300, clock=lambda: now[0], time_scale=60)
    assert [q.take("resolvers", "a")[0] for _ in range(3)] == [True, True, False]
    assert q.take("resolvers", "b")[0]
    allowed, headers = q.take("resolvers", "a")
    assert not allowed and headers["Retry-After"] == "5"  # 300 Hub seconds are 5 real ones
    w = RateWindows(clock=lambda: now[0])
    w.note(headers)
    assert w.left("resolvers") == 0 and w.reset_at("resolvers") == 5.0
    now[0] = 5.0
    assert q.take("resolvers", "a")[0]
