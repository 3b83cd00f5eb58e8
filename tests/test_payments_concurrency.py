"""Payments under concurrency, on SQLite and on a real PostgreSQL: twenty captures of one
payment with different keys capture it once; one key sent from several threads does the
work once and replays it to the others; concurrent authorisations never hold more than the
subscriber's limit."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from tests.pg import PG_BIN, postgres_cluster
from tests.test_payments import ISP_B, NOW, body, consistent, seed
from vpop.billing.service import (
    AmountTooLarge,
    CaptureBody,
    LedgerEntry,
    Payment,
    PaymentEvent,
    PaymentState,
    RefundBody,
    authorise_in,
    balance,
    capture_in,
    expire_payments,
    in_transaction,
    refund_in,
    spending,
    void_in,
)
from vpop.core.db import get_engine, session_scope

THREADS = 20
Answer = tuple[int, dict[str, Any], bool]
Outcome = Answer | str


def answers(outcomes: list[Outcome]) -> list[Answer]:
    """The outcomes that are answers (not refusals)."""
    return [outcome for outcome in outcomes if not isinstance(outcome, str)]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """One throwaway PostgreSQL cluster for this module."""
    if not PG_BIN.exists():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql)")
    with postgres_cluster("payments") as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A seeded database on SQLite, then on PostgreSQL (a fresh database in the cluster)."""
    if request.param == "sqlite":
        database = f"sqlite:///{tmp_path}/payments.sqlite"
    else:
        server = request.getfixturevalue("pg_server")
        name = f"payments_{uuid.uuid4().hex[:10]}"
        with get_engine(server).connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.execute(text(f"CREATE DATABASE {name}"))
        database = server.replace("/postgres?", f"/{name}?")
    yield seed(database)
    get_engine(database).dispose()


def race(attempt: Callable[[int], Outcome], threads: int = THREADS) -> list[Outcome]:
    """Run ``attempt(n)`` for n in 0..threads-1 at once; a PaymentState is ``"state"``."""

    def guarded(n: int) -> Outcome:
        try:
            return attempt(n)
        except PaymentState:
            return "state"

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(guarded, range(threads)))


def authorised(url: str, amount: int = 1200) -> int:
    """A new AUTHORISED payment of sub1 to isp-b; its id."""
    status, view, _ = authorise_in(url, ISP_B, body(amount), key=uuid.uuid4().hex, now=NOW)
    assert (status, view["status"]) == (201, "AUTHORISED")
    return int(view["id"])


def counted(url: str, payment: int) -> tuple[int, int]:
    """How many ``captured`` events and ledger posts the payment has."""
    with session_scope(url) as session:
        events = session.scalar(select(func.count(PaymentEvent.id)).where(
            PaymentEvent.payment_id == payment, PaymentEvent.kind == "captured"))  # fmt: skip
        key = f"payment:{payment}:capture"
        posts = session.scalar(
            select(func.count(LedgerEntry.id)).where(
                LedgerEntry.kind == "post", LedgerEntry.key == key
            )
        )
    return int(events or 0), int(posts or 0)


def test_twenty_captures_with_different_keys_capture_once(url: str) -> None:
    payment = authorised(url)

    def attempt(n: int) -> Outcome:
        amount = CaptureBody(amount_minor=100 + n)
        return capture_in(url, ISP_B, payment, amount, key=f"capture-{n}", now=NOW)

    outcomes = race(attempt)
    won = answers(outcomes)
    assert len(won) == 1 and outcomes.count("state") == THREADS - 1
    status, view, replayed = won[0]
    assert (status, view["status"], replayed) == (200, "CAPTURED", False)
    winner = 100 + outcomes.index(won[0])
    assert view["captured_minor"] == winner
    assert counted(url, payment) == (1, 1)
    with session_scope(url) as session:
        assert balance(session, "payee:isp-b:EUR") == -winner
        assert balance(session, "subscriber:sub1.2026-12:EUR") == -5000 + winner
    consistent(url)


def test_one_key_from_several_threads_captures_once_and_replays(url: str) -> None:
    payment = authorised(url)
    outcomes = race(
        lambda n: capture_in(url, ISP_B, payment, CaptureBody(), key="one-key", now=NOW),
        threads=8,
    )
    assert "state" not in outcomes  # the waiting calls replay; none is refused
    distinct = {(status, repr(view)) for status, view, _ in answers(outcomes)}
    assert len(distinct) == 1 and next(iter(distinct))[0] == 200
    assert sorted(replayed for _, _, replayed in answers(outcomes)) == [False] + [True] * 7
    assert counted(url, payment) == (1, 1)


def test_one_authorisation_key_from_several_threads_makes_one_payment(url: str) -> None:
    outcomes = race(lambda n: authorise_in(url, ISP_B, body(700), key="auth", now=NOW), 8)
    assert "state" not in outcomes and len({repr(view) for _, view, _ in answers(outcomes)}) == 1
    assert sorted(replayed for _, _, replayed in answers(outcomes)) == [False] + [True] * 7
    with session_scope(url) as session:
        assert session.scalar(select(func.count(Payment.id))) == 1
        assert balance(session, "holds:EUR") == -700
    consistent(url)


def test_concurrent_authorisations_never_hold_more_than_the_limit(url: str) -> None:
    outcomes = race(lambda n: authorise_in(url, ISP_B, body(1000), key=f"buy-{n}", now=NOW))
    statuses = [view["status"] for _, view, _ in answers(outcomes)]
    assert statuses.count("AUTHORISED") == 5 and statuses.count("DECLINED") == THREADS - 5
    with session_scope(url) as session:
        assert balance(session, "subscriber:sub1.2026-12:EUR") == 0
        assert balance(session, "holds:EUR") == -5000
        grants = session.scalars(select(LedgerEntry.key).where(LedgerEntry.kind == "limit"))
        assert list(grants) == ["limit:sub1:EUR:2026-12:0"]  # granted once
    consistent(url)


def test_the_payment_rules_hold_on_both_databases(url: str) -> None:
    first = authorised(url, 3000)
    assert authorise_in(url, ISP_B, body(2001), key="over", now=NOW)[1]["decline_reason"] == (
        "limit"
    )
    capture_in(url, ISP_B, first, CaptureBody(amount_minor=1000), key="c", now=NOW)
    refund_in(url, ISP_B, first, RefundBody(amount_minor=400), key="r1", now=NOW)
    with pytest.raises(AmountTooLarge):
        refund_in(url, ISP_B, first, RefundBody(amount_minor=601), key="r2", now=NOW)
    second = authorised(url, 500)
    void_in(url, ISP_B, second, key="v", now=NOW)
    third = authorised(url, 700)
    later = NOW + timedelta(days=7)
    assert in_transaction(url, lambda session: expire_payments(session, now=later)) == [third]
    with session_scope(url) as session:
        assert spending(session, "sub1", now=NOW)["available_minor"] == 5000 - 600
        assert balance(session, "payee:isp-b:EUR") == -600
        assert balance(session, "holds:EUR") == 0
        statuses = session.execute(select(Payment.id, Payment.status).order_by(Payment.id))
        assert [status for _, status in statuses] == [
            "CAPTURED", "DECLINED", "VOIDED", "EXPIRED"]  # fmt: skip
    consistent(url)
