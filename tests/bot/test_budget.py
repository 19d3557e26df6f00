"""Request budgets: when a job may start, from the rate-limit windows the Hub's answers reported."""

from __future__ import annotations

import doctest

from provbot.bot.service.queue import budget
from provbot.detectors.hub.windows import RateWindows


def test_docstring_examples() -> None:
    result = doctest.testmod(budget)
    assert result.attempted > 0 and result.failed == 0


def test_a_job_bigger_than_a_whole_window_waits_only_for_a_fresh_one() -> None:
    now = [0.0]
    w = RateWindows(clock=lambda: now[0])
    w.note({"RateLimit": '"resolvers";r=5000;t=300', "RateLimit-Policy": '"fixed window";"resolvers";q=5000;w=300'})
    assert budget.start_after(w, {"resolvers": 9000}) is None  # a fresh window: go
    w.note({"RateLimit": '"resolvers";r=4000;t=200'})
    assert budget.start_after(w, {"resolvers": 9000}) == 200.0
    now[0] = 250.0  # the window reset: unknown again, nothing held back
    assert budget.start_after(w, {"resolvers": 9000}) is None


def test_late_answers_of_one_window_do_not_raise_what_is_left() -> None:
    w = RateWindows(clock=lambda: 0.0)
    w.note({"RateLimit": '"api";r=10;t=100'})
    w.note({"RateLimit": '"api";r=12;t=100'})  # sent earlier, answered later
    assert w.left("api") == 10
