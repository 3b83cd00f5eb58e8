"""The same schema, orders and idempotency on a real PostgreSQL (a throwaway cluster)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from tests.pg import PG_BIN, postgres_cluster
from vpop.catalogue.models import Isp, Line, Plan, Subscriber
from vpop.core.db import session_scope
from vpop.core.migrate import upgrade
from vpop.selection.models import Order
from vpop.selection.service import Caller, IdempotencyConflict, SelectionRequest, submit_selection

pytestmark = pytest.mark.skipif(not PG_BIN.exists(), reason="PostgreSQL 15 is not installed")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary directory, on a unix socket only."""
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="module")
def seeded(pg_url: str) -> str:
    upgrade(pg_url)
    with session_scope(pg_url) as session:
        session.add(Isp(id="isp-b", name="ISP B", outbound_deny=[]))
        session.add(Subscriber(id="sub1", name="sub1", profile={}))
        session.flush()
        session.add(Plan(isp_id="isp-b", name="Fibre", speed_mbps=500, monthly_price_minor=4500))
        session.add(
            Line(
                subscriber_id="sub1",
                router="rc1",
                interface="sub1",
                prefix="192.0.2.2/32",
                gateway="192.0.2.1/30",
                calling_number="+31205550001",
            )
        )
    return pg_url


def test_migrations_and_orders_work_on_postgresql(seeded: str) -> None:
    caller = Caller("token:1", "noc")
    req = SelectionRequest(isp="isp-b", subscriber="sub1")
    first, created = submit_selection(req, caller, "key-1", seeded)
    again, created_again = submit_selection(req, caller, "key-1", seeded)
    assert created and not created_again and first.id == again.id
    with pytest.raises(IdempotencyConflict):
        submit_selection(
            SelectionRequest(isp="isp-b", subscriber="sub1", dry_run=True), caller, "key-1", seeded
        )


def test_concurrent_replays_make_one_order_on_postgresql(seeded: str) -> None:
    caller = Caller("token:2", "noc")
    req = SelectionRequest(isp="isp-b", calling_number="+31205550001")
    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = set(
            pool.map(lambda _: submit_selection(req, caller, "same", seeded)[0].id, range(32))
        )
    assert len(ids) == 1
    with session_scope(seeded) as session:
        count = session.scalar(select(func.count(Order.id)).where(Order.requester == "token:2"))
    assert count == 1
    assert os.environ.get("VPOP_DATABASE_URL", "") != seeded  # the suite's default is untouched


def test_poll_bulk_insert_works_on_postgresql(seeded: str) -> None:
    from vpop.core.time import utcnow
    from vpop.monitoring.bulk import Table_, _insert_many
    from vpop.monitoring.models import CounterSample

    now = utcnow()
    rows = [
        {
            "router": "rc1",
            "kind": "line",
            "name": f"b{i}",
            "at": now,
            "rx_bytes": i,
            "tx_bytes": 2 * i,
            "rx_packets": 1,
            "tx_packets": 1,
            "errors": 0,
            "drops": 0,
            "seconds": 5.0,
            "rx_bps": 8.0 * i,
            "tx_bps": 1.0,
            "rx_pps": 0.2,
            "tx_pps": 0.2,
            "new_errors": 0,
            "new_drops": 0,
            "note": None,
        }
        for i in range(50)
    ]
    with session_scope(seeded) as session:
        _insert_many(session, Table_(CounterSample), rows)
    with session_scope(seeded) as session:
        stored = session.scalars(select(CounterSample).where(CounterSample.name == "b7")).one()
        assert (stored.tx_bytes, stored.rx_bps, stored.at) == (14, 56.0, now)
        assert session.scalar(select(func.count(CounterSample.id))) == 50


def test_the_largest_accepted_price_is_stored_on_postgresql(seeded: str) -> None:
    from vpop.leasing.models import Lease

    largest = 10**12  # the most create_lease accepts for price_minor
    with session_scope(seeded) as session:
        session.add(
            Lease(
                isp_id="isp-b", router="rc1", uplink="isp-b", committed_mbps=10, price_minor=largest
            )
        )
        session.add(Plan(isp_id="isp-b", name="Gold", speed_mbps=1000, monthly_price_minor=largest))
    with session_scope(seeded) as session:
        assert session.scalar(select(func.max(Lease.price_minor))) == largest
        assert session.scalar(select(func.max(Plan.monthly_price_minor))) == largest
