"""Hub calls: RateLimit-aware backoff, retries on 5xx, clear one-line errors, no retry on 404."""

from __future__ import annotations

import pytest

from provbot.bot.service.hub import HubClient
from provbot.detectors.errors import NotFoundError, RemoteError
from tests.bot.helpers import model_files


def test_429_waits_for_the_ratelimit_reset_then_succeeds(localhub) -> None:  # noqa: ANN001
    localhub.add_repo("lab/x", model_files())
    sleeps: list[float] = []
    client = HubClient(localhub.url, None, retries=3, backoff_max=60, sleep=sleeps.append)
    localhub.rate_limit("/api/models/lab/x", count=2, reset_s=7)
    assert client.model_info("lab/x").id == "lab/x"
    assert sleeps == [7.0, 7.0] and client.retried == 2


def test_persistent_5xx_gives_one_line_error_after_backoff(localhub) -> None:  # noqa: ANN001
    localhub.add_repo("lab/x", model_files())
    sleeps: list[float] = []
    client = HubClient(localhub.url, "hf_SecretTokenValue0000001", retries=2, backoff_base=1, sleep=sleeps.append)
    localhub.inject("/api/models/lab/x", 503, count=10)
    with pytest.raises(RemoteError) as info:
        client.model_info("lab/x")
    assert str(info.value) == "model lab/x: Hub answered HTTP 503" and len(sleeps) == 2
    assert 0.75 <= sleeps[0] <= 1.25 and 1.5 <= sleeps[1] <= 2.5  # exponential, with jitter


def test_missing_repo_is_not_retried(localhub) -> None:  # noqa: ANN001
    sleeps: list[float] = []
    with pytest.raises(NotFoundError):
        HubClient(localhub.url, None, retries=3, sleep=sleeps.append).model_info("nobody/nothing")
    assert sleeps == []
