"""Fault injection: scripted errors and slow answers for the next N matching requests.

>>> faults = FaultInjector()
>>> faults.add(FaultRule(prefix="/api/", status=429, count=1))
>>> faults.take("GET", "/api/models/a/b").status
429
>>> faults.take("GET", "/api/models/a/b") is None
True
"""

from __future__ import annotations

import threading

from provbot.bot.localhub.models import FaultRule


class FaultInjector:
    """Thread-safe queue of FaultRules; each matching request consumes one use of the first rule."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._left: list[int] = []
        self.fired = 0  # how many requests got a fault, for assertions

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)
            self._left.append(rule.count)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._left.clear()

    def pending(self) -> int:
        """Uses left across all rules."""
        with self._lock:
            return sum(self._left)

    def take(self, method: str, path: str) -> FaultRule | None:
        """The rule to apply to this request, consuming one use; None when no rule matches."""
        with self._lock:
            for i, rule in enumerate(self._rules):
                if self._left[i] <= 0 or not path.startswith(rule.prefix):
                    continue
                if rule.methods is not None and method.upper() not in {m.upper() for m in rule.methods}:
                    continue
                self._left[i] -= 1
                self.fired += 1
                if self._left[i] == 0:
                    del self._rules[i], self._left[i]
                return rule
        return None


def ratelimit_headers(reset_s: int, quota: int = 1000, kind: str = "api") -> dict[str, str]:
    """The Hub's 429 headers (parsed by huggingface_hub.utils.parse_ratelimit_headers)."""
    return {
        "RateLimit": f'"{kind}";r=0;t={reset_s}',
        "RateLimit-Policy": f'"fixed window";"{kind}";q={quota};w=300',
        "Retry-After": str(reset_s),
    }
