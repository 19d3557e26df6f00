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


def _window(remaining: int, reset_s: float = 300, quota: int = 1000) -> dict[str, str]:
    return {
        "RateLimit": f'"resolvers";r={remaining};t={reset_s}',
        "RateLimit-Policy": f'"fixed window";"resolvers";q={quota};w=300',
    }


def test_jobs_starting_together_share_what_is_left_instead_of_each_seeing_all_of_it() -> None:
    w = RateWindows(clock=lambda: 0.0)
    w.note(_window(1000))
    r = budget.Reservations()
    assert r.start(w, 1, {"resolvers": 600}) is None
    assert r.start(w, 2, {"resolvers": 600}) == 300.0  # 1,000 left, 600 of it promised to job 1
    assert r.start(w, 3, {"resolvers": 400}) is None  # 400 fits beside job 1
    assert r.held(w) == {"resolvers": 1000}
    r.release(1)
    assert r.start(w, 2, {"resolvers": 600}) is None


def test_what_a_running_job_has_spent_is_no_longer_held_for_it() -> None:
    w = RateWindows(clock=lambda: 0.0)
    w.note(_window(1000))
    r = budget.Reservations()
    r.start(w, 1, {"resolvers": 600})
    w.note(_window(500, 290))  # job 1 spent 500 of its 600: 100 still promised
    assert r.held(w) == {"resolvers": 100}
    assert r.start(w, 2, {"resolvers": 400}) is None
    assert r.start(w, 3, {"resolvers": 100}) == 290.0  # 500 left, 100 + 400 promised


def test_a_job_that_started_before_the_reset_is_charged_what_the_new_window_lost() -> None:
    now = [0.0]
    w = RateWindows(clock=lambda: now[0])
    w.note(_window(1000, 10))
    r = budget.Reservations()
    r.start(w, 1, {"resolvers": 600})
    now[0] = 20.0  # reset; the next answer reports a fresh window with 200 spent since
    w.note(_window(800, 290))
    assert r.held(w) == {"resolvers": 400}
