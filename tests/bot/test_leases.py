"""The poller lease: one holder at a time, takeover only after expiry, fenced cursor writes, on both databases."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from provbot.bot.db.cursors import CursorStore
from provbot.bot.db.database import Database
from provbot.bot.db.leases import POLLER_LEASE, LeaseLost, LeaseStore
from provbot.bot.service.poll.ownership import PollOwnership
from provbot.bot.service.poll.poller import Poller
from provbot.bot.service.runner import BotService
from tests.bot.helpers import bot_settings, build_ctx, model_files

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def db(db_url: str):  # noqa: ANN201
    database = Database(db_url)
    database.migrate()
    yield database
    database.dispose()


def test_a_live_lease_is_refused_to_others_and_taken_over_only_after_expiry(db: Database) -> None:
    clock = Clock()
    leases = LeaseStore(db, clock=clock)
    first = leases.acquire(POLLER_LEASE, "a", 30)
    assert first is not None and first.fence == 1 and first.new_term and not first.took_over
    clock.advance(29)
    assert leases.acquire(POLLER_LEASE, "b", 30) is None  # 1 s before expiry: still a's
    clock.advance(2)
    taken = leases.acquire(POLLER_LEASE, "b", 30)
    assert taken is not None and (taken.fence, taken.previous_owner, taken.took_over) == (2, "a", True)
    view = leases.get(POLLER_LEASE)
    assert view is not None and view.owner == "b" and view.fence == 2
    assert view.expires_at == clock.now + timedelta(seconds=30)


def test_renewing_keeps_the_lease_and_its_fence(db: Database) -> None:
    clock = Clock()
    leases = LeaseStore(db, clock=clock)
    got = leases.acquire(POLLER_LEASE, "a", 30)
    assert got is not None
    for _ in range(5):  # 5 x 20 s: far past the first expiry, renewed each time
        clock.advance(20)
        assert leases.renew(got.proof, 30)
        assert leases.acquire(POLLER_LEASE, "b", 30) is None
    again = leases.acquire(POLLER_LEASE, "a", 30)  # the holder's acquire is a renewal: same term
    assert again is not None and again.fence == got.fence and not again.new_term


def test_a_fenced_cursor_write_from_the_deposed_holder_is_refused(db: Database) -> None:
    clock = Clock()
    leases, cursors = LeaseStore(db, clock=clock), CursorStore(db)
    a = leases.acquire(POLLER_LEASE, "a", 30)
    assert a is not None
    cursors.set("created_at", T0, {"x/one"}, fence=a.proof)
    clock.advance(31)  # a stalls past its expiry; b takes over and walks on
    b = leases.acquire(POLLER_LEASE, "b", 30)
    assert b is not None
    cursors.set("created_at", T0 + timedelta(hours=1), {"x/two"}, fence=b.proof)
    with pytest.raises(LeaseLost, match="held by b"):
        cursors.set("created_at", T0 + timedelta(hours=2), {"x/stale"}, fence=a.proof)
    assert cursors.get("created_at") == (T0 + timedelta(hours=1), {"x/two"})
    assert not leases.renew(a.proof, 30)  # nor can it renew its way back
    # Even after b's lease expires with nobody else around, a's old fence stays dead: a new term is needed.
    clock.advance(31)
    with pytest.raises(LeaseLost):
        cursors.set("created_at", T0 + timedelta(hours=2), {"x/stale"}, fence=a.proof)
    regained = leases.acquire(POLLER_LEASE, "a", 30)
    assert regained is not None and regained.fence == 3 and regained.took_over
    cursors.set("created_at", T0 + timedelta(hours=2), {"x/three"}, fence=regained.proof)
    assert cursors.get("created_at")[1] == {"x/three"}


def test_release_lets_another_take_over_at_once(db: Database) -> None:
    leases = LeaseStore(db)
    a = leases.acquire(POLLER_LEASE, "a", 600)
    assert a is not None and leases.release(a.proof)
    b = leases.acquire(POLLER_LEASE, "b", 600)
    assert b is not None and b.fence == 2 and b.previous_owner is None and not b.took_over
    assert not leases.release(a.proof)  # a released already; b's lease is untouched
    assert leases.get(POLLER_LEASE).owner == "b"  # type: ignore[union-attr]


def test_racing_takeovers_of_an_expired_lease_have_one_winner(db: Database) -> None:
    past = Clock()
    LeaseStore(db, clock=past).acquire(POLLER_LEASE, "dead", 1)  # long expired by the real clock
    winners: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def contend(name: str) -> None:
        try:
            start.wait()
            if LeaseStore(db).acquire(POLLER_LEASE, name, 60) is not None:
                winners.append(name)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(f"p{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(winners) == 1
    view = LeaseStore(db).get(POLLER_LEASE)
    assert view is not None and view.owner == winners[0] and view.fence == 2


def test_only_the_holder_polls_and_the_takeover_is_audited(hub, db_url: str, scanner) -> None:  # noqa: ANN001
    one = hub.add_repo("sneaky/one", model_files(seed=3))
    settings = bot_settings(hub.url, db_url, candidates=[], poll_lease_seconds=1.0)
    a_ctx, b_ctx = build_ctx(settings, scanner), build_ctx(settings, scanner)
    a = Poller(a_ctx, PollOwnership(a_ctx, owner="proc-a"))
    b = Poller(b_ctx, PollOwnership(b_ctx, owner="proc-b"))
    first = a.poll()
    assert [r.enqueued for r in first] == [[f"sneaky/one@{one}"], []]
    assert {(r.owner, r.fence) for r in first} == {("proc-a", 1)}
    two = hub.add_repo("sneaky/two", model_files(seed=4))
    assert b.poll() == []  # a holds the lease: b walks nothing, the second upload waits for a
    assert a_ctx.queue.by_key(f"scan:sneaky/two@{two}") is None
    time.sleep(1.2)  # a dies without renewing: its lease expires
    taken = b.poll()
    assert [r.enqueued for r in taken] == [[f"sneaky/two@{two}"], []]  # from a's cursor on
    assert {(r.owner, r.fence) for r in taken} == {("proc-b", 2)}
    assert a.poll() == []  # a comes back: b holds the lease now
    lease_log = [(e.message, e.data["owner"], e.data["fence"]) for e in a_ctx.audit.query(kind="lease")]
    assert lease_log == [
        ("poller lease acquired", "proc-a", 1),
        ("poller lease taken over from proc-a after it expired", "proc-b", 2),
        ("poller lease lost: now held by proc-b", "proc-a", 1),
    ]
    polls = [e.data["owner"] for e in a_ctx.audit.query(kind="poll")]
    assert polls == ["proc-a", "proc-a", "proc-b", "proc-b"]  # two listings per poll


def test_a_walk_that_lost_the_lease_moves_no_cursor(hub, db_url: str, scanner) -> None:  # noqa: ANN001
    one = hub.add_repo("sneaky/one", model_files(seed=3))
    settings = bot_settings(hub.url, db_url, candidates=[], poll_lease_seconds=30.0)
    ctx = build_ctx(settings, scanner)
    ownership = PollOwnership(ctx, owner="proc-a")
    fence = ownership.claim()
    assert fence is not None
    ownership.leases.release(fence)  # stands in for a takeover while the walk runs: the fence is stale
    LeaseStore(ctx.db).acquire(POLLER_LEASE, "proc-b", 30)

    class Stale(PollOwnership):
        def claim(self):  # noqa: ANN202 - a holder that still believes in its old fence
            return fence

    poller = Poller(ctx, Stale(ctx, owner="proc-a"))
    assert poller.poll() == []  # the walk enqueued its job, then its cursor write was refused
    assert ctx.cursors.get("created_at") == (None, set())
    assert ctx.queue.by_key(f"scan:sneaky/one@{one}") is not None  # a harmless duplicate later
    assert 'provbot_polls_total{outcome="fenced"} 1.0' in ctx.metrics.render().decode()


def test_health_and_metrics_name_the_process_that_polls(hub, db_url: str, scanner) -> None:  # noqa: ANN001
    settings = bot_settings(hub.url, db_url, candidates=[], poll_minutes=60.0, poll_lease_seconds=0.6)
    ctx_a, ctx_b = build_ctx(settings, scanner), build_ctx(settings, scanner)
    with BotService(ctx_a, port=0) as a:
        deadline = time.time() + 10
        while a.ownership.fence is None and time.time() < deadline:
            time.sleep(0.05)
        with BotService(ctx_b, port=0) as b:
            time.sleep(0.5)  # b's keeper tried and was refused
            ha, hb = httpx.get(f"{a.url}/healthz").json(), httpx.get(f"{b.url}/healthz").json()
            assert ha["poller"]["owner"] == hb["poller"]["owner"] == a.ownership.owner
            assert ha["poller"]["this_process"] and not hb["poller"]["this_process"] and ha["poller"]["live"]
            assert "provbot_poller_owner 1.0" in httpx.get(f"{a.url}/metrics").text
            assert "provbot_poller_owner 0.0" in httpx.get(f"{b.url}/metrics").text
            a.stop()  # a clean stop releases the lease: b's keeper takes it within a renewal interval
            deadline = time.time() + 10
            while b.ownership.fence is None and time.time() < deadline:
                time.sleep(0.05)
            assert httpx.get(f"{b.url}/healthz").json()["poller"]["owner"] == b.ownership.owner
            metrics = httpx.get(f"{b.url}/metrics").text
            assert 'provbot_poller_lease_changes_total{event="acquired"} 1.0' in metrics
            assert b.scheduler is not None  # the scheduler runs in the holder only


@pytest.mark.parametrize(
    "name", ["provbot.bot.db.leases", "provbot.bot.db.cursors", "provbot.bot.service.poll.ownership"]
)
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_migration_0005_keeps_cursors_and_goes_down_again(db_url: str) -> None:
    """0005 down to 0004 drops the lease table and the cursors' fence; up again keeps the cursors."""
    from sqlalchemy import inspect, text

    from tests.bot.helpers import migrated_down

    with migrated_down(db_url, "0004_console", "bot_poll_cursors") as (engine, step):
        assert "bot_leases" not in inspect(engine).get_table_names()
        assert "fence" not in {c["name"] for c in inspect(engine).get_columns("bot_poll_cursors")}
        with engine.begin() as conn:
            conn.execute(
                text(
                    "insert into bot_poll_cursors (name, position, boundary_ids, updated_at)"
                    " values ('created_at', '2026-01-01 00:00:00', '[\"o/m\"]', '2026-01-01 00:00:00')"
                )
            )
        step("upgrade", "head")
        with engine.begin() as conn:
            row = conn.execute(text("select name, fence from bot_poll_cursors")).one()
        assert tuple(row) == ("created_at", None) and "bot_leases" in inspect(engine).get_table_names()
