"""How the bot runs a weight-lineage scan: a pluggable callable, the real scan by default.

>>> req = ScanRequest(repo="org/m", revision="abc", parents=["org/a"])
>>> req.ref
'org/m@abc'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from pydantic import BaseModel, Field

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


def hub_scanner(endpoint: str, token: str | None, budget_mb: float | None = None) -> Scanner:
    """The real scan (``provbot.detectors.scan``) against ``endpoint``, passing only the options it accepts."""

    def run(request: ScanRequest) -> ScanResult:
        from provbot.detectors import scan
        from provbot.detectors.weights.scan import scan as real_scan

        params = inspect.signature(real_scan).parameters
        kwargs: dict[str, object] = {"parents": list(request.parents), "base": request.base}
        if budget_mb is not None:
            kwargs["budget_mb"] = budget_mb
        if "endpoint" in params:
            kwargs["endpoint"] = endpoint
        if "token" in params:
            kwargs["token"] = token
        return scan(request.ref, **kwargs)

    return run
