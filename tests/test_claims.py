"""The worker's claim and closes as plain statements (vpop.selection.claims), on SQLite and
PostgreSQL: what is claimed, with which runs, only under the router's lock, and what an order
that stopped waiting meanwhile gets (nothing); what a real run's close records (the orders,
the lines' selections, their service sessions cut at the push, the audit entry), and that a
lost lock records none of it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select

from tests.pg import postgres_cluster
from tests.sqlite_work import vm_steps
from vpop.accounting.service import ServiceSession, switch_line
from vpop.catalogue.models import Isp, Line, Selection, Subscriber
from vpop.core import locks
from vpop.core.audit import AuditEntry
from vpop.core.db import session_scope
from vpop.core.migrate import upgrade
from vpop.core.prepared import Prepared
from vpop.core.time import utcnow
from vpop.selection import claims
from vpop.selection.engine import has_waiting
from vpop.selection.locking import router_lock
from vpop.selection.models import Order, OrderStatus, Run, RunStatus
from vpop.selection.outcomes import Outcome, run_fields


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_cluster("pg-claims") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('claims') / 'vpop.sqlite'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    found: str = request.getfixturevalue(
        "pg_url" if request.param == "postgresql" else "sqlite_url"
    )
    return found


def _router_with_lines(url: str, count: int) -> tuple[str, list[int]]:
    """A new router name with ``count`` lines on it (and the ISP ``isp-c``)."""
    router = f"rc{uuid.uuid4().hex[:6]}"
    with session_scope(url) as session:
        if session.get(Isp, "isp-c") is None:
            session.add(Isp(id="isp-c", name="ISP C", outbound_deny=[]))
        lines = []
        for i in range(count):
            sub = f"s-{router}-{i}"
            session.add(Subscriber(id=sub, name=sub, profile={}))
            session.flush()
            line = Line(
                subscriber_id=sub,
                router=router,
                interface=f"{router}-{i}",
                prefix=f"192.0.2.{10 + i}/32",
                gateway="192.0.2.1/24",
                calling_number=f"+3120555{uuid.uuid4().int % 10**6:06d}",
            )
            session.add(line)
            session.flush()
            lines.append(line.id)
    return router, lines


def _orders(url: str, router: str, line_ids: list[int], dry_run: bool) -> list[int]:
    with session_scope(url) as session:
        orders = [
            Order(line_id=line, router=router, isp_id="isp-c", requester=f"r{i}", dry_run=dry_run)
            for i, line in enumerate(line_ids)
        ]
        session.add_all(orders)
        session.flush()
        return [order.id for order in orders]


def _state(url: str, ids: list[int]) -> dict[int, tuple[str, int | None]]:
    with session_scope(url) as session:
        rows = session.execute(
            select(Order.id, Order.status, Order.run_id).where(Order.id.in_(ids))
        )
        return {row[0]: (row[1], row[2]) for row in rows}


def _runs(url: str, router: str) -> dict[int, Any]:
    with session_scope(url) as session:
        return {run.id: run for run in session.scalars(select(Run).where(Run.router == router))}


def test_a_round_claims_the_oldest_dry_runs_and_the_oldest_real_order_per_line(url: str) -> None:
    router, (a, b) = _router_with_lines(url, 2)
    dry = _orders(url, router, [a] * 10, dry_run=True)
    real = _orders(url, router, [a, a, b], dry_run=False)
    with router_lock(router, url=url):
        dry_runs, real_run, taken = claims.claim(
            router, url, real_limit=256, dry_limit=8, coalesce=True
        )
    assert [d[0] for d in dry_runs] == dry[:8]
    assert [t[0] for t in taken] == [real[0], real[2]]  # the second order of line a waits
    state = _state(url, dry + real)
    runs = _runs(url, router)
    for order_id, run_id, line, isp in dry_runs:
        assert state[order_id] == (OrderStatus.RUNNING.value, run_id)
        assert (line, isp) == (a, "isp-c")
        assert runs[run_id].kind == "dry_run" and runs[run_id].trigger == f"order {order_id}"
        assert runs[run_id].status == RunStatus.RUNNING.value and runs[run_id].dry_run
    assert state[real[0]] == state[real[2]] == (OrderStatus.RUNNING.value, real_run)
    assert runs[real_run].trigger == f"orders {real[0]},{real[2]}"
    assert runs[real_run].requester == "r0, r2" and not runs[real_run].dry_run
    for waiting in dry[8:] + [real[1]]:
        assert state[waiting] == (OrderStatus.RECEIVED.value, None)
    assert len(runs) == 9


def test_without_coalescing_one_real_order_is_claimed(url: str) -> None:
    router, (a, b) = _router_with_lines(url, 2)
    real = _orders(url, router, [a, b], dry_run=False)
    with router_lock(router, url=url):
        _, _, taken = claims.claim(router, url, real_limit=256, dry_limit=8, coalesce=False)
    assert [t[0] for t in taken] == real[:1]


def test_an_order_that_stopped_waiting_since_the_read_is_left_out_without_a_run(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    router, (a,) = _router_with_lines(url, 1)
    kept, cancelled = _orders(url, router, [a, a], dry_run=True)
    with session_scope(url) as session:
        order = session.get(Order, cancelled)
        assert order is not None
        order.status = OrderStatus.RECONCILED.value
    # the read as it was a moment before the cancel: both still waiting
    waiting = claims._waiting(True, 8)
    read = Prepared(
        select(Order.id, Order.line_id, Order.isp_id, Order.requester)
        .where(Order.router == bindparam("router"))
        .order_by(Order.id),
        {},
    )
    monkeypatch.setattr(claims, "_waiting", lambda dry, n: read if dry else waiting)
    with router_lock(router, url=url):
        dry_runs, _, _ = claims.claim(router, url, real_limit=256, dry_limit=8, coalesce=True)
    assert [d[0] for d in dry_runs] == [kept]
    assert _state(url, [cancelled]) == {cancelled: (OrderStatus.RECONCILED.value, None)}
    assert list(_runs(url, router)) == [dry_runs[0][1]]


def test_nothing_is_claimed_once_the_lock_is_lost(url: str) -> None:
    router, (a,) = _router_with_lines(url, 1)
    ids = _orders(url, router, [a, a], dry_run=True) + _orders(url, router, [a], dry_run=False)
    with router_lock(router, url=url), pytest.raises(locks.LockLost):
        _take_over(url, locks.router_lock_name(router))  # another holder, after our lease
        claims.claim(router, url, real_limit=256, dry_limit=8, coalesce=True)
    assert set(_state(url, ids).values()) == {(OrderStatus.RECEIVED.value, None)}
    assert _runs(url, router) == {}


def _take_over(url: str, name: str) -> None:
    """Another holder takes the lock: its lease is made to have ended, then taken."""
    with session_scope(url) as session:
        row = session.get(locks.Lock, name)
        assert row is not None
        row.expires_at = utcnow()
    assert locks.try_acquire(name, "rival", 30, url) is not None


def test_closing_dry_runs_records_each_run_and_only_orders_still_running(url: str) -> None:
    router, (a,) = _router_with_lines(url, 1)
    ids = _orders(url, router, [a, a], dry_run=True)
    with router_lock(router, url=url):
        dry_runs, _, _ = claims.claim(router, url, real_limit=256, dry_limit=8, coalesce=True)
    with session_scope(url) as session:  # a reconcile ended the second meanwhile
        order = session.get(Order, ids[1])
        assert order is not None
        order.status = OrderStatus.RECONCILED.value
    outcome = Outcome(failed=False, diff="+ a line")
    at = utcnow()
    claims.close_dry_runs(
        url,
        [
            (d[1], run_fields(router, outcome, {"total": 0.0123}, RunStatus.SUCCESS))
            for d in dry_runs
        ],
        [
            {
                "oid": d[0],
                "diff": "+ a line",
                "status": "DONE_SUCCESS",
                "error": None,
                "finished_at": at,
            }
            for d in dry_runs
        ],
    )
    runs = _runs(url, router)
    for _, run_id, _, _ in dry_runs:
        assert runs[run_id].status == RunStatus.SUCCESS.value
        assert runs[run_id].diff == "+ a line" and runs[run_id].timings == {"total": 12.3}
        assert runs[run_id].result[router]["failed"] is False
        assert runs[run_id].finished_at is not None
    with session_scope(url) as session:
        first, second = (session.get(Order, i) for i in ids)
        assert first is not None and second is not None
        assert (first.status, first.diff, first.finished_at) == ("DONE_SUCCESS", "+ a line", at)
        assert second.status == OrderStatus.RECONCILED.value and second.finished_at is None


def _sessions(url: str, line: int) -> list[tuple[str, str | None, Any, Any, Any]]:
    """A line's service sessions, oldest first: (ISP, end reason, start, end, baseline)."""
    with session_scope(url) as session:
        rows = session.scalars(
            select(ServiceSession).where(ServiceSession.line_id == line).order_by(ServiceSession.id)
        )
        return [
            (
                r.isp_id,
                r.end_reason,
                r.started_at,
                r.ended_at,
                (
                    r.baseline_at,
                    r.baseline_bytes_in,
                    r.baseline_bytes_out,
                    r.baseline_packets_in,
                    r.baseline_packets_out,
                ),
            )  # fmt: skip
            for r in rows
        ]


def _claimed_run(url: str, router: str, lines: list[int]) -> tuple[int, list[int]]:
    ids = _orders(url, router, lines, dry_run=False)
    with router_lock(router, url=url):
        _, run_id, taken = claims.claim(router, url, real_limit=256, dry_limit=8, coalesce=True)
    assert [t[0] for t in taken] == ids
    return run_id, ids


def test_closing_a_real_run_confirms_its_done_orders_moves_their_sessions_and_audits_it(
    url: str,
) -> None:
    router, (a, b) = _router_with_lines(url, 2)
    with session_scope(url) as session:
        if session.get(Isp, "isp-a") is None:
            session.add(Isp(id="isp-a", name="ISP A", outbound_deny=[]))
    before = utcnow() - timedelta(hours=1)
    with session_scope(url) as session:  # line a is routed through isp-a since an hour
        switch_line(session, line_id=a, isp_id="isp-a", at=before)
        session.add(Selection(line_id=a, isp_id="isp-a"))
    run_id, ids = _claimed_run(url, router, [a, b])
    confirmed = claims.running_orders(url, run_id)
    assert [(c.order_id, c.line_id, c.isp_id, c.router, c.interface) for c in confirmed] == [
        (ids[0], a, "isp-c", router, f"{router}-0"),
        (ids[1], b, "isp-c", router, f"{router}-1"),
    ]
    assert confirmed[0].subscriber_id == f"s-{router}-0"
    cut_at = utcnow()
    outcome = Outcome(failed=False, diff="+ pbr")
    ends = [
        {"oid": i, "diff": "+ pbr", "status": "DONE_SUCCESS", "error": None, "finished_at": cut_at}
        for i in ids
    ]
    with router_lock(router, url=url):
        claims.close_run(
            url,
            router,
            run_id,
            run_fields(router, outcome, {"total": 0.02}, RunStatus.SUCCESS),
            ends,
            confirmed,
            (cut_at, {f"{router}-0": (100, 200, 3, 4)}),  # line b's counters were not read
            ("r0, r1", "run.success", {"orders": ids}),
        )
    assert _state(url, ids) == {i: (OrderStatus.DONE_SUCCESS.value, run_id) for i in ids}
    assert _runs(url, router)[run_id].status == RunStatus.SUCCESS.value
    with session_scope(url) as session:
        chosen = {s.line_id: (s.isp_id, s.order_id) for s in session.scalars(select(Selection))}
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.object == f"run:{run_id}")
        ).one()
    assert chosen[a] == ("isp-c", ids[0]) and chosen[b] == ("isp-c", ids[1])
    assert (entry.actor, entry.action, entry.details) == ("r0, r1", "run.success", {"orders": ids})
    (old, new_a) = _sessions(url, a)
    assert old[:2] == ("isp-a", "moved") and old[2] == before
    assert new_a[:2] == ("isp-c", None) and new_a[4] == (cut_at, 100, 200, 3, 4)
    assert old[3] == new_a[2]  # the old one ends where the new one starts
    ((isp_b, reason_b, _, ended_b, baseline_b),) = _sessions(url, b)
    assert (isp_b, reason_b, ended_b, baseline_b) == ("isp-c", None, None, (None,) * 5)


def test_a_confirmed_choice_the_line_already_has_keeps_its_open_session(url: str) -> None:
    router, (a,) = _router_with_lines(url, 1)
    first = utcnow() - timedelta(minutes=5)
    with session_scope(url) as session:
        kept = switch_line(session, line_id=a, isp_id="isp-c", at=first).id
        again = switch_line(session, line_id=a, isp_id="isp-c", at=utcnow()).id
    assert again == kept
    assert [s[:4] for s in _sessions(url, a)] == [("isp-c", None, first, None)]


def test_a_session_never_ends_before_it_started(url: str) -> None:
    router, (a,) = _router_with_lines(url, 1)
    with session_scope(url) as session:
        if session.get(Isp, "isp-a") is None:
            session.add(Isp(id="isp-a", name="ISP A", outbound_deny=[]))
    started = utcnow()
    with session_scope(url) as session:
        switch_line(session, line_id=a, isp_id="isp-c", at=started)
    with session_scope(url) as session:  # a clock step back: the move is dated earlier
        switch_line(session, line_id=a, isp_id="isp-a", at=started - timedelta(seconds=30))
    (old, new) = _sessions(url, a)
    assert (old[1], old[2], old[3]) == ("moved", started, started)
    assert new[0] == "isp-a" and new[2] == started - timedelta(seconds=30)


def test_closing_a_real_run_records_nothing_once_the_lock_is_lost(url: str) -> None:
    router, (a,) = _router_with_lines(url, 1)
    run_id, ids = _claimed_run(url, router, [a])
    confirmed = claims.running_orders(url, run_id)
    ends = [
        {
            "oid": ids[0],
            "diff": "",
            "status": "DONE_SUCCESS",
            "error": None,
            "finished_at": utcnow(),
        }
    ]
    fields = run_fields(router, Outcome(failed=False), {}, RunStatus.SUCCESS)
    with router_lock(router, url=url), pytest.raises(locks.LockLost):
        _take_over(url, locks.router_lock_name(router))
        claims.close_run(
            url, router, run_id, fields, ends, confirmed, None, ("r0", "run.success", {})
        )
    assert _state(url, ids) == {ids[0]: (OrderStatus.RUNNING.value, run_id)}
    assert _runs(url, router)[run_id].status == RunStatus.RUNNING.value
    assert _sessions(url, a) == []
    with session_scope(url) as session:
        assert session.get(Selection, a) is None


def _finished(url: str, router: str, line: int, count: int) -> None:
    """``count`` finished orders of ``router``'s history."""
    with session_scope(url) as session:
        session.execute(
            insert(Order),
            [
                {
                    "line_id": line,
                    "router": router,
                    "isp_id": "isp-c",
                    "requester": "history",
                    "dry_run": True,
                    "status": OrderStatus.DONE_SUCCESS.value,
                }
                for _ in range(count)
            ],
        )


def test_a_claim_reads_as_much_however_long_the_router_s_history(sqlite_url: str) -> None:
    """The worker asks ``has_waiting`` and claims after every round: their reads must not
    walk the router's finished orders. With only an index on the router, a claim's read
    took 3.3 ms at 13,000 finished orders per router, growing with every order."""
    url = sqlite_url
    router, (line,) = _router_with_lines(url, 1)

    def round_() -> int:
        waiting = _orders(url, router, [line] * 3, dry_run=True)

        def work() -> None:
            assert has_waiting(router, url)
            with router_lock(router, url=url):
                dry_runs, _, _ = claims.claim(
                    router, url, real_limit=256, dry_limit=8, coalesce=True
                )
            assert [d[0] for d in dry_runs] == waiting

        return vm_steps(url, work)

    _finished(url, router, line, 100)
    short = round_()
    _finished(url, router, line, 5000)  # older than the next waiting orders
    long = round_()
    assert long <= short * 1.2, (short, long)
