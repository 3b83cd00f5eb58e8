"""Subscribers' bills: plan prices prorated across an ISP switch by service time, purchases
and refunds; closed once with a byte-identical statement and the plan booked to revenue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_settlement import NOV, Shop, at, base
from vpop.accounting.models import ServiceSession
from vpop.billing.service import (
    PeriodInvalid,
    bill_view,
    check_balances,
    close_bills,
    postings_of,
    running_bill,
    unbalanced_entries,
)
from vpop.catalogue.models import Isp, Line, Plan, Subscriber
from vpop.core.db import get_engine, session_scope
from vpop.core.errors import NotFound
from vpop.core.migrate import upgrade


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    database = f"sqlite:///{tmp_path}/bills.sqlite"
    upgrade(database)
    yield database
    get_engine(database).dispose()


def switched(url: str) -> None:
    """sub1 on isp-a (its chosen plan A2, 5000) until Nov 10 12:00, then on isp-b (2400)."""
    with session_scope(url) as session:
        shop = base(session)  # isp-b, shop1, sub1
        session.add(Isp(id="isp-a", name="ISP A", outbound_deny=[]))
        session.flush()
        a1 = Plan(isp_id="isp-a", name="A1", speed_mbps=5, monthly_price_minor=3000)
        a2 = Plan(isp_id="isp-a", name="A2", speed_mbps=50, monthly_price_minor=5000)
        b1 = Plan(isp_id="isp-b", name="B1", speed_mbps=20, monthly_price_minor=2400)
        b2 = Plan(isp_id="isp-b", name="B2", speed_mbps=90, monthly_price_minor=9900)
        session.add_all([a1, a2, b1, b2])
        session.flush()
        sub1 = session.get(Subscriber, "sub1")
        assert sub1 is not None
        sub1.profile = {"plans": {"isp-a": a2.id}}  # none chosen for isp-b: its first, B1
        line = Line(subscriber_id="sub1", router="rc1", interface="sub1", prefix="192.0.2.2/32")
        session.add(line)
        session.flush()
        for isp, start, end, source in (
            ("isp-a", at(25, 0, month=10), at(10, 12), "selection"),
            ("isp-b", at(10, 12), None, "selection"),
            ("isp-a", at(2), at(28), "radius"),  # RADIUS sessions are not plan time
        ):
            session.add(ServiceSession(source=source, line_id=line.id, subscriber_id="sub1",
                                       isp_id=isp, started_at=start, ended_at=end))  # fmt: skip
        shop.captured("song", "shop1", 1500, at(12))
        shop.refunded("song", 500, at(14))
        shop.captured("film", "shop1", 700, at(3, month=12))  # December's


def test_running_bill_prorates_plans_across_a_switch(url: str) -> None:
    switched(url)
    with session_scope(url) as session:
        bill = running_bill(session, "sub1", period=NOV, now=at(20, 12))
    # November: 30 days = 2592000 s.
    # isp-a A2 5000: Nov 1 00:00 -> Nov 10 12:00 = 9.5 days = 820800 s:
    #   (5000*820800 + 1296000)//2592000 = 4105296000//2592000 = 1583 (1583.33)
    # isp-b B1 2400 up to now, Nov 10 12:00 -> Nov 20 12:00 = 10 days = 864000 s:
    #   (2400*864000 + 1296000)//2592000 = 2074896000//2592000 = 800 (exactly 800)
    plan = [
        (x["isp"], x["seconds"], x["amount_minor"]) for x in bill["lines"] if x["kind"] == "plan"
    ]
    assert plan == [("isp-a", 820800, 1583), ("isp-b", 864000, 800)]
    others = [(x["kind"], x["amount_minor"]) for x in bill["lines"] if x["kind"] != "plan"]
    assert others == [("purchase", 1500), ("refund", -500)]
    assert (bill["plan_minor"], bill["purchases_minor"], bill["refunds_minor"]) == (2383, 1500, 500)
    assert bill["total_minor"] == 2383 + 1500 - 500 == 3383
    assert (bill["currency"], bill["final"]) == ("EUR", False)


def test_close_bills_once_with_identical_statement(url: str) -> None:
    switched(url)
    with session_scope(url) as session:
        with pytest.raises(PeriodInvalid, match="not ended"):
            close_bills(session, NOV, now=at(30), actor="noc")
        (bill,) = close_bills(session, NOV, now=at(1, 1, month=12), actor="noc")
        # isp-b B1 Nov 10 12:00 -> Dec 1 00:00 = 20.5 days = 1771200 s:
        #   (2400*1771200 + 1296000)//2592000 = 4252176000//2592000 = 1640 (exactly 1640)
        # plan 1583 + 1640 = 3223; total 3223 + 1500 - 500 = 4223
        view = bill_view(bill)
        assert (view["plan_minor"], view["purchases_minor"], view["refunds_minor"]) == (
            3223, 1500, 500)  # fmt: skip
        assert view["total_minor"] == 4223
        assert postings_of(session, f"bill:{bill.id}:plan") == [
            ("clearing:EUR", 3223), ("revenue:EUR", -3223)]  # fmt: skip
        first = (bill.id, bill.statement_json, bill.statement_sha256)
        document = json.loads(bill.statement_json)
        assert [x["kind"] for x in document["lines"]] == ["plan", "plan", "purchase", "refund"]
    with session_scope(url) as session:
        Shop(session, payments={"song": 1}, refunds={1: 1}).refunded("song", 100, at(2, month=12))
        (again,) = close_bills(session, NOV, now=at(5, month=12), actor="noc")
        assert (again.id, again.statement_json, again.statement_sha256) == first
        assert unbalanced_entries(session) == [] and check_balances(session) == []
        # the December refund and purchase are December's
        dec = running_bill(session, "sub1", period="2026-12", now=at(5, month=12))
        kinds = [(x["kind"], x["amount_minor"]) for x in dec["lines"] if x["kind"] != "plan"]
        assert kinds == [("refund", -100), ("purchase", 700)]


def test_unknown_subscriber(url: str) -> None:
    with session_scope(url) as session, pytest.raises(NotFound):
        running_bill(session, "nobody", period=NOV, now=at(20))
