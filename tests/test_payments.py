"""Payments: authorise (a hold on the subscriber's allowance, or a decline that holds
nothing), capture, void, refund, expiry, disputes, limits per period, idempotent replays and
who may see or act on which payment; the ledger stays balanced after every step (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from vpop.billing.service import (
    AmountTooLarge,
    BankDetailsInvalid,
    CaptureBody,
    IdempotencyConflict,
    LedgerAccount,
    LedgerEntry,
    PayeeExists,
    Payment,
    PaymentBody,
    PaymentState,
    PeriodInvalid,
    RefundBody,
    UnknownPayment,
    authorise_in,
    balance,
    capture_in,
    check_balances,
    check_bic,
    check_iban,
    check_period,
    dispute,
    events_of,
    expire_payments,
    in_transaction,
    list_payments,
    payee_for_caller,
    payment_for,
    period_bounds,
    period_of,
    refund_in,
    register_merchant,
    set_spending_limit,
    spending,
    unbalanced_entries,
    update_payee,
    void_in,
)
from vpop.catalogue.service import Isp, Line, Subscriber
from vpop.core.audit import AuditEntry
from vpop.core.db import dispose_engines, session_scope
from vpop.core.errors import BadInput
from vpop.core.migrate import upgrade
from vpop.selection.service import Caller, Forbidden

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ISP_A = Caller(name="token:1", role="isp", isp="isp-a")
ISP_B = Caller(name="token:2", role="isp", isp="isp-b")
SHOP_B = Caller(name="token:3", role="merchant", isp="isp-b", merchant="shop-b")
NOC = Caller(name="token:4", role="noc")
PORTAL = Caller(name="portal", role="portal")
ALLOWANCE = "subscriber:sub1.2026-12:EUR"
HOLDS, PAYEE_B = "holds:EUR", "payee:isp-b:EUR"


def seed(url: str) -> str:
    """Migrate ``url``: isp-a, isp-b and merchant shop-b under it; sub1 (two lines), sub2,
    sub3 (suspended) and sub4 (its only line inactive). Returns ``url``."""
    upgrade(url)
    with session_scope(url) as session:
        session.add_all([Isp(id="isp-a", name="ISP A"), Isp(id="isp-b", name="ISP B")])
        for sub in ("sub1", "sub2", "sub3", "sub4"):
            suspended = NOW - timedelta(days=1) if sub == "sub3" else None
            session.add(Subscriber(id=sub, name=sub.upper(), profile={}, suspended_at=suspended))
        session.flush()
        register_merchant(session, "shop-b", "isp-b", "Shop B", actor="noc")
        for k, sub in enumerate(("sub1", "sub1", "sub2", "sub3", "sub4"), start=1):
            session.add(
                Line(subscriber_id=sub, router="rc1", interface=f"l{k}",
                     prefix=f"192.0.2.{4 * k}/30", calling_number=f"+3120555000{k}",
                     circuit_id=f"rc1:l{k}", access_id=f"acc-{k}", active=sub != "sub4")
            )  # fmt: skip
    return url


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A seeded SQLite database."""
    yield seed(f"sqlite:///{tmp_path}/payments.sqlite")
    dispose_engines()


def body(amount: int = 1200, **fields: Any) -> PaymentBody:
    """A payment body: sub1 by default, EUR."""
    fields = fields or {"subscriber": "sub1"}
    return PaymentBody.parse(
        {"amount_minor": amount, "currency": "EUR", "item": "a book",
         "merchant_reference": "order #1", **fields}
    )  # fmt: skip


_keys = iter(range(10**9))


def pay(
    url: str,
    amount: int = 1200,
    caller: Caller = ISP_B,
    when: datetime = NOW,
    fields: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Authorise (a fresh key) for ``fields`` (default sub1); the payment's view."""
    status, view, replayed = authorise_in(
        url, caller, body(amount, **(fields or {})), key=f"a{next(_keys)}", now=when
    )
    assert (status, replayed) == (201, False)
    return view


def take(url: str, payment: int, amount: int | None = None, caller: Caller = ISP_B,
         when: datetime = NOW) -> dict[str, Any]:  # fmt: skip
    """Capture (a fresh key); the payment's view."""
    return capture_in(url, caller, payment, CaptureBody(amount_minor=amount),
                      key=f"c{next(_keys)}", now=when)[1]  # fmt: skip


def give_back(url: str, payment: int, amount: int, caller: Caller = ISP_B) -> dict[str, Any]:
    """Refund (a fresh key); the payment's view."""
    return refund_in(url, caller, payment, RefundBody(amount_minor=amount, reason="broken"),
                     key=f"r{next(_keys)}", now=NOW)[1]  # fmt: skip


def balances(url: str, *codes: str) -> list[int]:
    """Balances (debit +, credit -); 0 for an account not opened yet."""
    with session_scope(url) as session:
        opened = set(session.scalars(select(LedgerAccount.code)))
        return [balance(session, code) if code in opened else 0 for code in codes]


def pending_holds(url: str) -> int:
    """How many holds are still pending."""
    with session_scope(url) as session:
        query = select(func.count(LedgerEntry.id)).where(LedgerEntry.status == "pending")
        return int(session.scalar(query) or 0)


def consistent(url: str) -> None:
    """Every entry balanced, every cached balance equal to its postings."""
    with session_scope(url) as session:
        assert unbalanced_entries(session) == [] and check_balances(session) == []


def kinds(url: str, payment: int) -> list[str]:
    """The payment's history, by kind."""
    with session_scope(url) as session:
        return [event.kind for event in events_of(session, payment)]


def available(url: str, when: datetime = NOW, sub: str = "sub1") -> int:
    """What sub1 may still spend in the period of ``when``."""
    with session_scope(url) as session:
        return int(spending(session, sub, now=when)["available_minor"])


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"subscriber": "sub1"}, 1),  # the subscriber's first line
        ({"calling_number": "+31205550002"}, 2),
        ({"circuit_id": "rc1:l2"}, 2),
        ({"access_id": "acc-1"}, 1),
        ({"source_address": "192.0.2.9"}, 2),  # inside 192.0.2.8/30
    ],
    ids=["subscriber", "calling-number", "circuit-id", "access-id", "source-address"],
)
def test_an_authorisation_holds_the_amount_on_the_allowance(
    url: str, fields: dict[str, str], line: int
) -> None:
    view = pay(url, 1200, fields=fields)
    kind = next(iter(fields))
    assert (view["status"], view["subscriber"], view["identified_by"]) == (
        "AUTHORISED", "sub1", kind)  # fmt: skip
    assert (view["payee"], view["isp"], view["decline_reason"]) == ("isp-b", "isp-b", None)
    assert view["expires_at"] == (NOW + timedelta(days=7)).isoformat()
    assert [(e["kind"], e["amount_minor"]) for e in view["events"]] == [("authorised", 1200)]
    assert balances(url, ALLOWANCE, HOLDS) == [-5000 + 1200, -1200]
    with session_scope(url) as session:
        stored = session.get(Payment, view["id"])
        assert stored is not None and stored.line_id == line and stored.period == "2026-12"
        assert stored.source_address == fields.get("source_address")
        assert spending(session, "sub1", now=NOW) == {
            "subscriber": "sub1", "period": "2026-12", "currency": "EUR", "limit_minor": 5000,
            "held_minor": 1200, "spent_minor": 0, "available_minor": 3800,
        }  # fmt: skip
    consistent(url)


@pytest.mark.parametrize(
    ("amount", "fields", "reason", "subscriber"),
    [
        (100, {"source_address": "198.51.100.7"}, "unknown_line", None),
        (100, {"subscriber": "nobody"}, "unknown_line", None),
        (100, {"subscriber": "sub4"}, "unknown_line", None),  # its only line is inactive
        (100, {"access_id": "acc-5"}, "unknown_line", None),  # sub4's inactive line
        (100, {"subscriber": "sub3"}, "suspended", "sub3"),
        (100, {"subscriber": "sub1", "currency": "USD"}, "currency", "sub1"),
        (5001, {"subscriber": "sub1"}, "limit", "sub1"),
    ],
    ids=[
        "no-line-has-it",
        "no-subscriber",
        "no-active-line",
        "inactive-line",
        "suspended",
        "currency",
        "limit",
    ],  # fmt: skip
)
def test_a_declined_payment_is_stored_and_holds_nothing(
    url: str, amount: int, fields: dict[str, str], reason: str, subscriber: str | None
) -> None:
    payload = {"amount_minor": amount, "currency": "EUR", "item": "a book",
               "merchant_reference": "order #1", **fields}  # fmt: skip
    status, view, _ = authorise_in(url, ISP_B, PaymentBody.parse(payload), key="k", now=NOW)
    assert (status, view["status"], view["decline_reason"]) == (201, "DECLINED", reason)
    assert view["subscriber"] == subscriber and view["expires_at"] is None
    assert [(e["kind"], e["amount_minor"], e["note"]) for e in view["events"]] == [
        ("declined", 0, reason)
    ]
    assert balances(url, HOLDS) == [0] and pending_holds(url) == 0
    with session_scope(url) as session:
        assert session.scalar(select(func.count(LedgerEntry.id)).where(
            LedgerEntry.kind == "hold")) == 0  # fmt: skip
    consistent(url)


def test_a_partial_capture_pays_the_payee_and_releases_the_rest(url: str) -> None:
    paid = pay(url, 1200)
    view = take(url, paid["id"], 700)
    assert (view["status"], view["captured_minor"]) == ("CAPTURED", 700)
    assert [(e["kind"], e["amount_minor"]) for e in view["events"]] == [
        ("authorised", 1200), ("captured", 700), ("released", 500)]  # fmt: skip
    assert balances(url, ALLOWANCE, HOLDS, PAYEE_B) == [-5000 + 700, 0, -700]
    assert available(url) == 4300
    consistent(url)


def test_a_full_capture_takes_the_authorised_amount(url: str) -> None:
    view = take(url, pay(url, 1200)["id"])
    assert (view["captured_minor"], kinds(url, view["id"])) == (1200, ["authorised", "captured"])
    assert balances(url, ALLOWANCE, HOLDS, PAYEE_B) == [-3800, 0, -1200]


def test_a_capture_above_the_authorised_amount_changes_nothing(url: str) -> None:
    paid = pay(url, 1200)
    with pytest.raises(AmountTooLarge):
        take(url, paid["id"], 1201)
    assert kinds(url, paid["id"]) == ["authorised"] and pending_holds(url) == 1
    assert take(url, paid["id"], 1200)["status"] == "CAPTURED"


@pytest.mark.parametrize("first", ["capture", "void"])
def test_only_an_authorised_payment_is_captured_or_voided(url: str, first: str) -> None:
    paid = pay(url, 1200)
    if first == "capture":
        take(url, paid["id"])
    else:
        void_in(url, ISP_B, paid["id"], key="v1", now=NOW)
    for action in (lambda: take(url, paid["id"]),
                   lambda: void_in(url, ISP_B, paid["id"], key="v2", now=NOW)):  # fmt: skip
        with pytest.raises(PaymentState):
            action()
    declined = pay(url, 9000)
    with pytest.raises(PaymentState):
        take(url, declined["id"])
    consistent(url)


def test_a_void_releases_the_whole_hold(url: str) -> None:
    paid = pay(url, 1200)
    status, view, _ = void_in(url, ISP_B, paid["id"], key="v", now=NOW)
    assert (status, view["status"]) == (200, "VOIDED")
    assert kinds(url, paid["id"]) == ["authorised", "voided"]
    assert balances(url, ALLOWANCE, HOLDS, PAYEE_B) == [-5000, 0, 0]
    consistent(url)


def test_refunds_add_up_to_at_most_what_was_captured(url: str) -> None:
    paid = pay(url, 1200)
    with pytest.raises(PaymentState):  # nothing captured yet
        give_back(url, paid["id"], 100)
    take(url, paid["id"], 1000)
    assert give_back(url, paid["id"], 300)["refunded_minor"] == 300
    assert give_back(url, paid["id"], 300)["status"] == "CAPTURED"
    with pytest.raises(AmountTooLarge):
        give_back(url, paid["id"], 401)
    view = give_back(url, paid["id"], 400)
    assert (view["status"], view["refunded_minor"]) == ("REFUNDED", 1000)
    with pytest.raises(PaymentState):
        give_back(url, paid["id"], 1)
    assert [e["note"] for e in view["events"] if e["kind"] == "refunded"] == ["broken"] * 3
    assert balances(url, ALLOWANCE, PAYEE_B) == [-5000, 0]  # all of it spendable again
    with session_scope(url) as session:
        keys = session.scalars(select(LedgerEntry.key).where(LedgerEntry.kind == "refund"))
        assert sorted(keys) == [f"payment:{paid['id']}:refund:{n}" for n in (1, 2, 3)]
    consistent(url)


def test_an_authorisation_nobody_captures_expires(url: str) -> None:
    paid = pay(url, 1200)
    with session_scope(url) as session:
        assert expire_payments(session, now=NOW + timedelta(days=7, seconds=-1)) == []
    with pytest.raises(PaymentState, match="expired"):  # past its expiry: too late to capture
        take(url, paid["id"], when=NOW + timedelta(days=7))
    assert in_transaction(url, lambda s: expire_payments(s, now=NOW + timedelta(days=7))) == [
        paid["id"]
    ]
    assert kinds(url, paid["id"]) == ["authorised", "expired"]
    assert balances(url, ALLOWANCE, HOLDS) == [-5000, 0] and pending_holds(url) == 0
    with session_scope(url) as session:
        assert expire_payments(session, now=NOW + timedelta(days=30)) == []
        assert session.scalars(select(LedgerEntry.key).where(LedgerEntry.kind == "expire")).all(
        ) == [f"expire:payment:{paid['id']}:hold"]  # fmt: skip
    with pytest.raises(PaymentState):
        take(url, paid["id"], when=NOW + timedelta(days=8))
    consistent(url)


def test_the_payments_job_expires_what_is_due(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vpop.jobs.queue import monitor_task

    monkeypatch.setenv("VPOP_DATABASE_URL", url)
    old = pay(url, 100, when=datetime.now(UTC) - timedelta(days=8))
    fresh = pay(url, 100, when=datetime.now(UTC))
    assert monitor_task.call_local("payments", None) == [old["id"]]
    assert kinds(url, old["id"])[-1] == "expired" and kinds(url, fresh["id"]) == ["authorised"]


def test_an_idempotency_key_replays_its_first_answer(url: str) -> None:
    declined = authorise_in(url, ISP_B, body(9000), key="same", now=NOW)
    assert declined[1]["status"] == "DECLINED"
    assert authorise_in(url, ISP_B, body(9000), key="same", now=NOW) == (*declined[:2], True)
    first = authorise_in(url, ISP_B, body(1200), key="other", now=NOW)
    with pytest.raises(IdempotencyConflict):  # same key, another body
        authorise_in(url, ISP_B, body(1300), key="other", now=NOW)
    # another caller's key space is its own
    assert authorise_in(url, SHOP_B, body(1200), key="other", now=NOW)[2] is False
    captured = capture_in(url, ISP_B, first[1]["id"], CaptureBody(), key="cap", now=NOW)
    later = capture_in(url, ISP_B, first[1]["id"], CaptureBody(), key="cap", now=NOW)
    assert later == (*captured[:2], True)  # a retry of a done capture is answered, not refused
    with pytest.raises(IdempotencyConflict):  # the key belongs to that capture
        void_in(url, ISP_B, first[1]["id"], key="cap", now=NOW)
    with session_scope(url) as session:
        assert session.scalar(select(func.count(Payment.id))) == 3
    assert balances(url, ALLOWANCE, HOLDS, PAYEE_B) == [-5000 + 2400, -1200, -1200]


def test_a_limit_change_mid_period_regrants_the_difference(url: str) -> None:
    held = pay(url, 3000)
    assert available(url) == 2000
    with session_scope(url) as session:
        assert set_spending_limit(session, "sub1", 8000, actor="noc", now=NOW)[
            "available_minor"] == 5000  # fmt: skip
    with session_scope(url) as session:  # a cut takes back what is available now
        after = set_spending_limit(session, "sub1", 1000, actor="noc", now=NOW)
    assert (after["limit_minor"], after["available_minor"]) == (1000, 0)
    assert pay(url, 1)["decline_reason"] == "limit"
    void_in(url, ISP_B, held["id"], key="v", now=NOW)
    assert available(url) == 1000  # the released 3000 is not all spendable under 1000
    assert pay(url, 1001)["decline_reason"] == "limit"
    assert pay(url, 1000)["status"] == "AUTHORISED"
    with session_scope(url) as session:
        changes = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "payment.limit")).all()  # fmt: skip
        assert [entry.details["limit_minor"] for entry in changes] == [8000, 1000]
        assert session.get(Subscriber, "sub1").profile["spending_limit_minor"] == 1000  # type: ignore[union-attr]
    consistent(url)


def test_a_new_period_starts_with_a_fresh_allowance(url: str) -> None:
    late_december, january = (
        datetime(2026, 12, 31, 23, tzinfo=UTC),
        datetime(2027, 1, 2, tzinfo=UTC),
    )
    december = pay(url, 4000, when=late_december)
    assert pay(url, 4000, when=late_december)["decline_reason"] == "limit"
    assert pay(url, 4000, when=january)["status"] == "AUTHORISED"
    assert available(url, january) == 1000 and available(url, late_december) == 1000
    take(url, december["id"], 3000, when=january)  # counts on December's allowance
    assert available(url, late_december) == 2000 and available(url, january) == 1000
    assert balances(url, ALLOWANCE, "subscriber:sub1.2027-01:EUR") == [-2000, -1000]
    consistent(url)


def test_who_sees_a_payment(url: str) -> None:
    isp_b_sale = pay(url, 100)["id"]
    shop_sale = pay(url, 100, caller=SHOP_B)["id"]
    with session_scope(url) as session:
        assert payment_for(session, NOC, shop_sale).payee_id == "shop-b"
        assert payment_for(session, ISP_B, shop_sale).isp_id == "isp-b"  # its merchant's
        assert payment_for(session, SHOP_B, shop_sale).id == shop_sale
        for caller, payment in ((SHOP_B, isp_b_sale), (ISP_A, isp_b_sale), (ISP_A, shop_sale),
                                (PORTAL, shop_sale), (NOC, 999)):  # fmt: skip
            with pytest.raises(UnknownPayment):
                payment_for(session, caller, payment)


@pytest.mark.parametrize(
    ("owner", "intruder"),
    [(ISP_B, ISP_A), (ISP_B, SHOP_B), (SHOP_B, ISP_B), (ISP_B, NOC)],
    ids=["other-isp", "its-merchant", "the-merchants-isp", "noc"],
)
def test_only_the_payee_captures_voids_and_refunds(
    url: str, owner: Caller, intruder: Caller
) -> None:
    paid = pay(url, 1200, caller=owner)["id"]
    for action in (
        lambda: take(url, paid, caller=intruder),
        lambda: void_in(url, intruder, paid, key="v", now=NOW),
        lambda: give_back(url, paid, 1, caller=intruder),
    ):
        with pytest.raises(UnknownPayment):
            action()
    assert kinds(url, paid) == ["authorised"]


@pytest.mark.parametrize("caller", [NOC, PORTAL, Caller(name="admin", role="admin")])
def test_only_isp_and_merchant_tokens_charge(url: str, caller: Caller) -> None:
    with pytest.raises(Forbidden):
        authorise_in(url, caller, body(), key="k", now=NOW)


def test_a_merchant_is_paid_as_itself_under_its_isp(url: str) -> None:
    view = take(url, pay(url, 500, caller=SHOP_B)["id"], caller=SHOP_B)
    assert (view["payee"], view["isp"]) == ("shop-b", "isp-b")
    assert balances(url, "payee:shop-b:EUR", PAYEE_B) == [-500, 0]


def test_a_subscriber_disputes_a_captured_purchase_once(url: str) -> None:
    paid = pay(url, 1200)["id"]
    with session_scope(url) as session, pytest.raises(PaymentState):
        dispute(session, "sub1", paid, "never came", now=NOW)
    take(url, paid)
    with session_scope(url) as session, pytest.raises(UnknownPayment):
        dispute(session, "sub2", paid, "not mine", now=NOW)
    with session_scope(url) as session:
        done = dispute(session, "sub1", paid, "never came", now=NOW)
        assert (done.dispute_reason, done.disputed_at) == ("never came", NOW)
    with session_scope(url) as session, pytest.raises(PaymentState):
        dispute(session, "sub1", paid, "again", now=NOW)
    assert kinds(url, paid)[-1] == "disputed"
    with session_scope(url) as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "payment.dispute")
                                ).one()  # fmt: skip
        assert (entry.actor, entry.object) == ("subscriber:sub1", f"payment:{paid}")


def test_payments_list_newest_first_with_filters(url: str) -> None:
    first = pay(url, 100)["id"]
    second = pay(url, 200, when=NOW + timedelta(hours=1), caller=SHOP_B)["id"]
    third = pay(url, 300, when=NOW + timedelta(hours=2), fields={"subscriber": "sub2"})["id"]
    with session_scope(url) as session:
        assert [p.id for p in list_payments(session)] == [third, second, first]
        assert [p.id for p in list_payments(session, payee="shop-b")] == [second]
        assert [p.id for p in list_payments(session, isp="isp-b", subscriber="sub1")] == [
            second, first]  # fmt: skip
        window = list_payments(
            session, since=NOW + timedelta(hours=1), until=NOW + timedelta(hours=2)
        )
        assert [p.id for p in window] == [second]
        assert [p.id for p in list_payments(session, status="AUTHORISED", limit=1)] == [third]
        with pytest.raises(BadInput):
            list_payments(session, limit=0)


def test_merchants_are_registered_checked_and_audited(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VPOP_CALLBACK_ALLOW_PRIVATE", raising=False)
    with session_scope(url) as session:
        shop = register_merchant(session, "shop-c", "isp-b", "Shop C",
                                 iban="DE89 3704 0044 0532 0130 00", bic="cobadeffxxx",
                                 fee_bp=250, fee_fixed_minor=10, actor="noc")  # fmt: skip
        assert (shop.iban, shop.bic, shop.kind) == ("DE89370400440532013000", "COBADEFFXXX",
                                                    "merchant")  # fmt: skip
        refusals: list[tuple[type[Exception], str, str | None]] = [
            (PayeeExists, "isp-a", None),
            (PayeeExists, "shop-b", None),
            (BankDetailsInvalid, "shop-d", "DE00"),
        ]
        for problem, merchant, iban in refusals:
            with pytest.raises(problem):
                register_merchant(session, merchant, "isp-b", "X", iban=iban, actor="noc")
        with pytest.raises(BadInput) as refused:
            update_payee(session, "shop-c", actor="noc", callback_url="http://127.0.0.1:9/cb")
        assert refused.value.code == "VPOP-400-CALLBACK-URL"
        assert update_payee(session, "shop-c", actor="noc", fee_bp=100).fee_bp == 100
        assert payee_for_caller(session, ISP_A).id == "isp-a"  # an ISP's payee, made on use
        with pytest.raises(Forbidden):
            payee_for_caller(session, NOC)
    with session_scope(url) as session:
        actions = session.scalars(select(AuditEntry.action).where(
            AuditEntry.object == "payee:shop-c")).all()  # fmt: skip
        assert actions == ["payee.register", "payee.update"]


def test_periods_are_calendar_months_in_utc() -> None:
    assert period_of(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)) == "2026-12"
    assert period_of(datetime(2027, 1, 1, tzinfo=UTC)) == "2027-01"
    assert period_bounds("2026-12") == (datetime(2026, 12, 1, tzinfo=UTC),
                                        datetime(2027, 1, 1, tzinfo=UTC))  # fmt: skip
    for bad in ("2026-13", "2026-1", "26-01", "2026-00", " 2026-01", "0000-01"):
        with pytest.raises(PeriodInvalid):
            period_bounds(bad)
    assert check_period("2026-12", NOW) == "2026-12"
    with pytest.raises(PeriodInvalid, match="not started"):
        check_period("2027-01", NOW)


def test_bank_details_are_checked_and_canonical() -> None:
    assert check_iban("de89 3704 0044 0532 0130 00") == "DE89370400440532013000"
    assert check_bic("COBADEFF") == "COBADEFF"
    for bad in ("DE89370400440532013001", "XX00", "", "DE89 3704 0044 0532 0130 00 00"):
        with pytest.raises(BankDetailsInvalid):
            check_iban(bad)
    with pytest.raises(BankDetailsInvalid):
        check_bic("COBA")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"subscriber": "sub1", "calling_number": "+31205550001"}, "VPOP-400-LINE-ID"),
        ({}, "VPOP-400-LINE-ID"),
        ({"subscriber": "sub1", "amount_minor": 0}, "VPOP-400"),
        ({"subscriber": "sub1", "amount_minor": 2**53 + 1}, "VPOP-400"),
        ({"subscriber": "sub1", "amount_minor": "12"}, "VPOP-400-TYPE"),
        ({"subscriber": "sub1", "currency": "eur"}, "VPOP-400"),
        ({"subscriber": "sub1", "merchant_reference": "a;b"}, "VPOP-400"),
        ({"subscriber": "sub1", "item": "x\ny"}, "VPOP-400"),
        ({"subscriber": "sub1", "tip": 1}, "VPOP-400-UNKNOWN-FIELD"),
    ],
    ids=[
        "two-ids",
        "no-id",
        "zero",
        "above-2^53",
        "string-amount",
        "currency-case",
        "reference-chars",
        "item-newline",
        "unknown-field",
    ],  # fmt: skip
)
def test_a_payment_body_is_refused_with_the_house_codes(payload: dict[str, Any], code: str) -> None:
    full = {"amount_minor": 1, "currency": "EUR", "item": "a", "merchant_reference": "r",
            **payload}  # fmt: skip
    with pytest.raises(BadInput) as refused:
        PaymentBody.parse(full)
    assert refused.value.code == code


def test_the_monitor_queues_the_payments_job_at_its_interval() -> None:
    import threading
    import time

    from vpop.jobs.scheduler import Monitor
    from vpop.monitoring.service import MonitorSettings

    quiet = MonitorSettings(counters_seconds=0, probes_seconds=0, prune_seconds=0)
    seen: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def record(job: str, router: str | None) -> None:
        with lock:
            seen.append((job, router))

    monitor = Monitor(record, quiet, lease_seconds=0, payment_seconds=0.3)
    started = time.monotonic()
    monitor.start()
    try:
        deadline = started + 10
        while time.monotonic() < deadline:
            with lock:
                if len(seen) >= 2:
                    break
            monitor.stop_event.wait(0.05)
    finally:
        monitor.stop_event.set()
        monitor.join(timeout=5)
    assert len(seen) >= 2 and set(seen) == {("payments", None)}
    assert time.monotonic() - started >= 0.6  # the first one interval after the start
