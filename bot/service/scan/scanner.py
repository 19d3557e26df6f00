"""How the bot runs a weight-lineage scan: a pluggable callable, the real scan by default.

>>> req = ScanRequest(repo="org/m", revision="abc", parents=["org/a"])
>>> req.ref
'org/m@abc'
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field

from provbot.detectors.hub import HubClient
from provbot.detectors.options import ScanOptions
from provbot.detectors.weights.result import ScanResult


class ScanRequest(BaseModel):
    repo: str
    revision: str
    parents: list[str] = Field(default_factory=list)  # empty: the candidate index chooses
    base: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.repo}@{self.revision}"


Scanner = Callable[[ScanRequest], ScanResult]


def hub_scanner(
    endpoint: str, token: str | None, options: ScanOptions | None = None, client: HubClient | None = None
) -> Scanner:
    """The real scan (``provbot.detectors.scan``) against ``endpoint``, with the service's scan options
    and, when given, the service's Hub client (its retry policy: long rate limits reschedule the job)."""

    def run(request: ScanRequest) -> ScanResult:
        from provbot.detectors import scan

        return scan(
            request.ref,
            list(request.parents),
            base=request.base,
            options=options,
            endpoint=endpoint,
            token=token,
            client=client,
        )

    return run
