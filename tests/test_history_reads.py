"""Reads on paths that run all the time do as much work with a long history as with a short
one: accepting a selection that names a subscriber (the lines of every other subscriber are
not read), the sweep's look for runs left RUNNING (finished runs are not read), RADIUS finding
a line by its NAS port, the stale RADIUS session sweep and the payment expiry check.

The work is counted in SQLite's virtual machine steps, the same whatever the machine's speed.
The worker's claims have their own such test in tests/test_claims.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from tests.dbtemplate import migrated_sqlite
from tests.sqlite_work import vm_steps, with_history
from vpop.aaa.accounting import close_stale
from vpop.aaa.resolver import Identifiers, resolve
from vpop.billing.payments import expire_payments
from vpop.catalogue.models import Isp, Line, Subscriber
from vpop.core.db import dispose_engines, session_scope
from vpop.selection.models import RunStatus
from vpop.selection.recovery import recover_abandoned
from vpop.selection.service import Caller, SelectionRequest, submit_selection


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url = migrated_sqlite(tmp_path / "vpop.sqlite")
    with session_scope(url) as session:
        session.add(Isp(id="isp-b", name="Beta"))
    try:
        yield url
    finally:
        dispose_engines()


def add_lines(url: str, start: int, count: int) -> None:
    """Subscribers ``s<start>``... with one line each on rc1."""
    with session_scope(url) as session:
        session.execute(
            insert(Subscriber),
            [{"id": f"s{i}", "name": f"s{i}", "profile": {}} for i in range(start, start + count)],
        )
        session.execute(
            insert(Line),
            [
                {
                    "subscriber_id": f"s{i}",
                    "router": "rc1",
                    "interface": f"if{i}",
                    "prefix": f"2001:db8::{i:x}/128",
                }
                for i in range(start, start + count)
            ],
        )


def test_accepting_a_selection_reads_as_much_however_many_lines(url: str) -> None:
    caller = Caller("portal", "portal")

    def select(subscriber: str, key: str) -> Callable[[], object]:
        request = SelectionRequest(subscriber=subscriber, isp="isp-b", dry_run=True)
        return lambda: submit_selection(request, caller, key, url=url)

    # each time the subscriber named is the newest: a walk of the table meets it last
    add_lines(url, 0, 20)
    add_lines(url, 10_000, 1)
    few = vm_steps(url, select("s10000", "k1"))
    add_lines(url, 20, 4000)
    add_lines(url, 10_001, 1)
    many = vm_steps(url, select("s10001", "k2"))
    assert many <= few * 1.25, (few, many)


AT = "2026-12-01 00:00:00.000000"


def test_the_sweep_reads_as_much_however_many_runs_ended(url: str) -> None:
    def ended(i: int) -> dict[str, object]:
        return {
            "router": "rc1",
            "kind": "dry_run",
            "trigger": f"history {i}",
            "requester": "history",
            "status": RunStatus.SUCCESS.value,
            "started_at": AT,
        }

    few, many = with_history(url, "runs", ended, lambda: recover_abandoned(url))
    assert many <= few * 1.25, (few, many)


def test_radius_finds_a_line_by_nas_port_however_many_lines(url: str) -> None:
    def find(port: str) -> Callable[[], object]:
        def work() -> None:
            with session_scope(url) as session:
                assert resolve(session, Identifiers(nas_port_id=port)).nas_port_id == port

        return work

    def port_line(i: int) -> None:
        add_lines(url, i, 1)
        with session_scope(url) as session:
            session.execute(
                update(Line).where(Line.interface == f"if{i}").values(nas_port_id=f"p{i}")
            )

    add_lines(url, 0, 20)
    port_line(10_000)  # each time the newest: a walk of the table meets it last
    few = vm_steps(url, find("p10000"))
    add_lines(url, 20, 4000)
    port_line(10_001)
    many = vm_steps(url, find("p10001"))
    assert many <= few * 1.25, (few, many)


def test_the_stale_radius_sweep_reads_as_much_however_many_sessions_ended(url: str) -> None:
    def stopped(i: int) -> dict[str, object]:
        return {
            "nas": "bng1",
            "acct_session_id": f"a{i}",
            "decision_id": "",
            "started_at": AT,
            "updated_at": AT,
            "stopped_at": AT,
        }

    few, many = with_history(url, "radius_sessions", stopped, lambda: close_stale(url))
    assert many <= few * 1.25, (few, many)


def test_the_payment_expiry_check_reads_as_much_however_many_payments(url: str) -> None:
    def captured(i: int) -> dict[str, object]:
        return {
            "payee_id": "shop",
            "isp_id": "isp-b",
            "subscriber_id": "s0",
            "currency": "EUR",
            "amount_minor": 100,
            "captured_minor": 100,
            "status": "CAPTURED",
            "item": "history",
            "merchant_reference": f"r{i}",
            "period": "2026-12",
            "created_at": AT,
            "updated_at": AT,
            "expires_at": AT,
            "created_by": "history",
        }

    def check() -> None:
        with session_scope(url) as session:
            assert expire_payments(session) == []

    few, many = with_history(url, "payments", captured, check)
    assert many <= few * 1.25, (few, many)
