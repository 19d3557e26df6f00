"""Fixtures for the Hub client tests: a scripted server and a clock that sleeps instantly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provbot.detectors.hub import HubClient, RetryPolicy
from tests.hub.scripted import ScriptedServer


class FakeClock:
    """Wall time that moves only when something sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # 2027-01-15 08:00 UTC
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


def make_client(url: str, clock: FakeClock, token: str | None = None, **policy: float) -> HubClient:
    retry = RetryPolicy(sleep=clock.sleep, clock=clock.time, jitter=0.0, **policy)  # type: ignore[arg-type]
    return HubClient(url, token, retry=retry, timeout_s=5)
