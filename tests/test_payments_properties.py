"""A stateful property test of payments and settlement: authorise, capture (whole and part),
void, refund, expiry as time moves on, interim and final settlement runs, and replays of
idempotency keys, in random order on SQLite, checked after every step against a model kept
here.

After every step: every ledger entry and every currency sums to zero and the accounts' cached
sums equal their postings; no account is beyond its floor; no payment is captured twice (one
``post`` per hold, at most one ``captured`` event per payment); ``0 <= refunded <= captured
<= authorised`` for every payment, equal to the model's; each subscriber's allowance is the
model's; a replayed key answers the same and writes nothing; every settlement's statement
re-renders byte-identically from the database with its stored SHA-256; no event is in two
settlements; and the settlements of each payee add up to the model's captures - refunds -
fees - lease charges (payouts plus what is still carried).

Each run starts from a copy of one migrated template file (ISPs, subscribers and their lines,
two payees, a lease), so a run costs a file copy, not a migration.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vpop.billing.service import (
    AmountTooLarge,
    BillingRequest,
    CaptureBody,
    IdempotencyConflict,
    LedgerAccount,
    LedgerEntry,
    LedgerPosting,
    Payment,
    PaymentBody,
    PaymentEvent,
    PaymentState,
    RefundBody,
    Settlement,
    SettlementLine,
    SpendingPeriod,
    authorise,
    authorise_in,
    canonical_json,
    capture,
    capture_in,
    check_balances,
    ensure_isp_payee,
    expire_payments,
    in_transaction,
    refund,
    refund_in,
    register_merchant,
    render_statement,
    run_settlement,
    statement_sha,
    unbalanced_entries,
    update_payee,
    void,
    void_in,
)
from vpop.catalogue.service import Isp, Line, Subscriber
from vpop.core.db import dispose_engines, get_engine, session_scope
from vpop.core.migrate import upgrade
from vpop.core.settings import load_settings
from vpop.leasing.service import Lease, LeaseVersion
from vpop.selection.service import Caller

START = datetime(2026, 1, 20, 9, tzinfo=UTC)
CURRENCY = load_settings().billing_currency
HOLD = timedelta(days=load_settings().hold_days)
#: subscriber -> (spending limit per period, suspended)
SUBSCRIBERS = {"sub1": (6000, False), "sub2": (3000, False), "sub3": (5000, True)}
#: payee -> (fee basis points, fixed fee, caller acting for it)
PAYEES = {
    "isp-b": (150, 0, Caller("token:1", "isp", isp="isp-b")),
    "shop-a": (250, 7, Caller("token:2", "merchant", isp="isp-a", merchant="shop-a")),
}
LEASE_PRICE = 1500  # isp-b's lease, in force all the time: a whole month each period
ACTOR = "props"
# in memory where the host has a tmpfs: a run commits after every step, and a disk's fsync
# would cost more than the step
SHM = Path("/dev/shm")
TEMPLATE = Path(tempfile.mkdtemp(prefix="vpop-payment-props-", dir=SHM if SHM.is_dir() else None))
atexit.register(shutil.rmtree, TEMPLATE, True)
RUN_URL = f"sqlite:///{TEMPLATE}/run.sqlite"
TABLES = (
    Payment,
    PaymentEvent,
    BillingRequest,
    SpendingPeriod,
    LedgerEntry,
    LedgerPosting,
    Settlement,
    SettlementLine,
)


def _template() -> Path:
    """A migrated database with ISPs, subscribers, lines, payees and a lease, made once."""
    path = TEMPLATE / "template.sqlite"
    if path.exists():
        return path
    url = f"sqlite:///{TEMPLATE}/building.sqlite"
    upgrade(url)
    with session_scope(url) as session:
        session.add_all([Isp(id="isp-a", name="Alpha Net"), Isp(id="isp-b", name="Beta Fibre")])
        session.flush()
        for k, (sub, (limit, suspended)) in enumerate(SUBSCRIBERS.items(), start=1):
            session.add(
                Subscriber(
                    id=sub,
                    name=f"Subscriber {k}",
                    profile={"spending_limit_minor": limit},
                    suspended_at=START - timedelta(days=3) if suspended else None,
                )
            )
            session.flush()
            session.add(
                Line(
                    subscriber_id=sub,
                    router="rc1",
                    interface=sub,
                    prefix=f"192.0.2.{4 * k + 2}/32",
                    calling_number=f"+3120555{k:04d}",
                    circuit_id=f"rc1:{sub}",
                    access_id=f"acc-{sub}",
                )
            )
        begun = START - timedelta(days=90)
        lease = Lease(
            isp_id="isp-b", router="rc1", uplink="isp-b", committed_mbps=100,
            price_minor=LEASE_PRICE, currency=CURRENCY, starts_at=begun, status="active",
        )  # fmt: skip
        session.add(lease)
        session.flush()
        session.add(
            LeaseVersion(
                lease_id=lease.id, version=1, valid_from=begun, valid_to=None,
                committed_mbps=100, peak_pct=125, price_minor=LEASE_PRICE, currency=CURRENCY,
                ends_at=None, reason="create", actor=ACTOR,
            )
        )  # fmt: skip
        ensure_isp_payee(session, "isp-b")
        fee_bp, fee_fixed, _ = PAYEES["isp-b"]
        update_payee(session, "isp-b", actor=ACTOR, fee_bp=fee_bp, fee_fixed_minor=fee_fixed)
        fee_bp, fee_fixed, _ = PAYEES["shop-a"]
        register_merchant(
            session, "shop-a", "isp-a", "Shop A", fee_bp=fee_bp, fee_fixed_minor=fee_fixed,
            actor=ACTOR,
        )  # fmt: skip
    dispose_engines()
    (TEMPLATE / "building.sqlite").rename(path)
    return path


def period_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def period_end(period: str) -> datetime:
    year, month = (int(part) for part in period.split("-"))
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


def fee(payee: str, amount: int) -> int:
    """The routing centre's fee on one captured amount (basis points half up, plus fixed)."""
    fee_bp, fee_fixed, _ = PAYEES[payee]
    return (amount * fee_bp + 5000) // 10000 + fee_fixed


@dataclass
class Pay:
    """The model of one payment."""

    id: int
    subscriber: str | None
    payee: str
    amount: int
    period: str
    expires_at: datetime
    status: str
    captured: int = 0
    refunded: int = 0


@dataclass
class Event:
    """A captured or refunded event: what settles."""

    id: int
    payment: int
    payee: str
    kind: str
    amount: int
    at: datetime
    settled_in: int | None = None


@dataclass
class Keyed:
    """A keyed call that succeeded, to replay: same answer, nothing written."""

    call: Callable[..., tuple[int, dict[str, Any], bool]]
    args: tuple[Any, ...]
    key: str
    status: int
    body: dict[str, Any]


@dataclass
class Run:
    """The model of one payee's settlements so far."""

    settled: int = 0  # the sum of their lines other than carried ones
    payouts: int = 0
    last_net: int = 0
    finals: dict[str, int] = field(default_factory=dict)  # period -> settlement id


# amounts whose fee is exactly half a minor unit before rounding (250 bp: 20 mod 40; 150 bp:
# 100 mod 200) are drawn often: the half-up rule is checked, not only the common case
amounts = st.integers(min_value=1, max_value=2500) | st.sampled_from([20, 60, 100, 300, 1100])
HOLD_HOURS = [HOLD // timedelta(hours=1) + delta for delta in (-1, 0, 1)]
IDENTIFIERS = ["subscriber", "calling_number", "circuit_id", "access_id", "source_address"]
OTHER_CURRENCY = "USD" if CURRENCY != "USD" else "EUR"
parts = st.none() | st.integers(min_value=1, max_value=2600) | st.sampled_from([20, 100, 300])


class PaymentMachine(RuleBasedStateMachine):
    """Random payment calls and settlement runs against a model of every amount."""

    def __init__(self) -> None:
        super().__init__()
        # every run uses one path, so one engine (and its cache of compiled statements)
        # serves them all; its connections are closed before the file is replaced
        template = _template()
        get_engine(RUN_URL).dispose()
        for leftover in TEMPLATE.glob("run.sqlite*"):
            leftover.unlink()
        shutil.copy(template, TEMPLATE / "run.sqlite")
        self.url = RUN_URL
        self.now = START
        self.payments: dict[int, Pay] = {}
        self.events: dict[int, Event] = {}
        self.keyed: list[Keyed] = []
        self.runs = {payee: Run() for payee in PAYEES}
        self.lease_charged: set[str] = set()
        self.rebuilt: set[int] = set()
        self.serial = 0

    def teardown(self) -> None:
        get_engine(RUN_URL).dispose()

    def key(self) -> str:
        self.serial += 1
        return f"key-{self.serial}"

    # -- the model ---------------------------------------------------------------------

    def available(self, subscriber: str, period: str) -> int:
        limit = SUBSCRIBERS[subscriber][0]
        taken = sum(
            (p.amount if p.status == "AUTHORISED" else p.captured - p.refunded)
            for p in self.payments.values()
            if p.subscriber == subscriber and p.period == period
        )
        return limit - taken

    def new_events(self, payment_id: int, seen: set[int]) -> list[tuple[int, str, int]]:
        """The payment's events not seen before, as (id, kind, amount), oldest first."""
        with session_scope(self.url) as session:
            rows = session.execute(
                select(PaymentEvent.id, PaymentEvent.kind, PaymentEvent.amount_minor)
                .where(PaymentEvent.payment_id == payment_id)
                .order_by(PaymentEvent.id)
            ).all()
        return [(row[0], row[1], row[2]) for row in rows if row[0] not in seen]

    def note_settling(self, pay: Pay, kind: str, amount: int) -> None:
        """Record the payment's new ``captured`` or ``refunded`` event in the model."""
        seen = set(self.events)
        fresh = [e for e in self.new_events(pay.id, seen) if e[1] in ("captured", "refunded")]
        assert [(k, a) for _, k, a in fresh] == [(kind, amount)]
        event_id = fresh[0][0]
        self.events[event_id] = Event(event_id, pay.id, pay.payee, kind, amount, self.now)

    # -- rules -------------------------------------------------------------------------

    @rule(
        payer=st.sampled_from(["sub1", "sub2", "sub1", "sub2", "sub3", None]),
        payee=st.sampled_from(sorted(PAYEES)),
        amount=amounts,
        by=st.sampled_from(IDENTIFIERS),
        currency=st.sampled_from([CURRENCY] * 5 + [OTHER_CURRENCY]),
        keyed=st.booleans(),
    )
    def authorise_a_payment(
        self, payer: str | None, payee: str, amount: int, by: str, currency: str, keyed: bool
    ) -> None:
        """A payment for a subscriber named by any identifier, or for an address no line
        has; mostly in the billing currency."""
        if payer is None:
            names = {"source_address": "203.0.113.77"}
        else:
            k = int(payer[-1])
            names = {
                by: {
                    "subscriber": payer,
                    "calling_number": f"+3120555{k:04d}",
                    "circuit_id": f"rc1:{payer}",
                    "access_id": f"acc-{payer}",
                    "source_address": f"192.0.2.{4 * k + 2}",
                }[by]
            }
        self.authorise_body(payee, keyed, names, amount, currency, payer)

    def authorise_body(
        self,
        payee: str,
        keyed: bool,
        names: dict[str, str],
        amount: int,
        currency: str,
        subscriber: str | None = None,
    ) -> Pay:
        caller = PAYEES[payee][2]
        self.serial += 1
        raw = {
            **names,
            "amount_minor": amount,
            "currency": currency,
            "item": f"item {self.serial}",
            "merchant_reference": f"order-{self.serial}",
        }
        body = PaymentBody.parse(raw)
        period = period_of(self.now)
        if subscriber is None:
            reason: str | None = "unknown_line"
        elif SUBSCRIBERS[subscriber][1]:
            reason = "suspended"
        elif currency != CURRENCY:
            reason = "currency"
        elif amount > self.available(subscriber, period):
            reason = "limit"
        else:
            reason = None
        if keyed:
            key = self.key()
            status, answer, replayed = authorise_in(self.url, caller, body, key=key, now=self.now)
            self.keyed.append(Keyed(authorise_in, (self.url, caller, body), key, status, answer))
            assert (status, replayed) == (201, False)
            payment_id = int(answer["id"])
        else:
            payment_id = in_transaction(self.url, authorise, caller, body, now=self.now).id
        with session_scope(self.url) as session:
            stored = session.get(Payment, payment_id)
            assert stored is not None
            assert (stored.status, stored.decline_reason) == (
                ("DECLINED", reason) if reason else ("AUTHORISED", None)
            )
            assert stored.payee_id == payee and stored.amount_minor == amount
            assert stored.subscriber_id == (subscriber if reason != "unknown_line" else None)
        pay = self.payments[payment_id] = Pay(
            payment_id, subscriber, payee, amount, period, self.now + HOLD,
            "DECLINED" if reason else "AUTHORISED",
        )  # fmt: skip
        return pay

    @initialize(
        payer=st.sampled_from(["sub1", "sub2"]),
        payee=st.sampled_from(sorted(PAYEES)),
        amount=st.integers(1, 2500),
        part=parts,
        keyed=st.booleans(),
    )
    def start_with_a_purchase(
        self, payer: str, payee: str, amount: int, part: int | None, keyed: bool
    ) -> None:
        self.buy(payer, payee, amount, part, keyed)

    @rule(
        payer=st.sampled_from(["sub1", "sub2"]),
        payee=st.sampled_from(sorted(PAYEES)),
        amount=amounts,
        part=parts,
        keyed=st.booleans(),
    )
    def buy(self, payer: str, payee: str, amount: int, part: int | None, keyed: bool) -> None:
        """The usual path: authorise, and capture (all, or part) when authorised."""
        pay = self.authorise_body(payee, keyed, {"subscriber": payer}, amount, CURRENCY, payer)
        if pay.status == "AUTHORISED":
            self.capture_it(pay, part, keyed)

    def pick(self, data: st.DataObject, status: str) -> Pay:
        """A payment: half the time one in ``status`` (when there is one), else any."""
        wanted = sorted(p.id for p in self.payments.values() if p.status == status)
        prefer: bool = data.draw(st.booleans())
        pool = wanted if wanted and prefer else sorted(self.payments)
        return self.payments[data.draw(st.sampled_from(pool))]

    @precondition(lambda self: bool(self.payments))
    @rule(data=st.data(), part=parts, keyed=st.booleans())
    def capture_a_payment(self, data: st.DataObject, part: int | None, keyed: bool) -> None:
        self.capture_it(self.pick(data, "AUTHORISED"), part, keyed)

    @precondition(lambda self: any(p.status == "AUTHORISED" for p in self.payments.values()))
    @rule(data=st.data(), hours=st.sampled_from([-1, 0, 1]), part=parts, keyed=st.booleans())
    def capture_near_expiry(
        self, data: st.DataObject, hours: int, part: int | None, keyed: bool
    ) -> None:
        """An hour before, at, or an hour after its hold expires (not yet swept), a capture
        succeeds only before."""
        pay = self.pick(data, "AUTHORISED")
        self.now = max(self.now, pay.expires_at + timedelta(hours=hours))
        self.capture_it(pay, part, keyed)

    def capture_it(self, pay: Pay, part: int | None, keyed: bool) -> None:
        caller = PAYEES[pay.payee][2]
        expected: type[Exception] | None = None
        if pay.status != "AUTHORISED" or self.now >= pay.expires_at:
            expected = PaymentState
        elif part is not None and part > pay.amount:
            expected = AmountTooLarge
        if keyed:
            key = self.key()
            body = CaptureBody.parse({} if part is None else {"amount_minor": part})
            args = (self.url, caller, pay.id, body)
            if expected is not None:
                with pytest.raises(expected):
                    capture_in(*args, key=key, now=self.now)
                return
            status, answer, replayed = capture_in(*args, key=key, now=self.now)
            assert (status, replayed) == (200, False)
            self.keyed.append(Keyed(capture_in, args, key, status, answer))
        elif expected is not None:
            with pytest.raises(expected):
                in_transaction(self.url, capture, caller, pay.id, part, now=self.now)
            return
        else:
            in_transaction(self.url, capture, caller, pay.id, part, now=self.now)
        pay.captured = pay.amount if part is None else part
        pay.status = "CAPTURED"
        self.note_settling(pay, "captured", pay.captured)

    @precondition(lambda self: bool(self.payments))
    @rule(data=st.data(), keyed=st.booleans())
    def void_a_payment(self, data: st.DataObject, keyed: bool) -> None:
        pay = self.pick(data, "AUTHORISED")
        caller = PAYEES[pay.payee][2]
        ok = pay.status == "AUTHORISED"
        if keyed:
            key = self.key()
            args = (self.url, caller, pay.id)
            if not ok:
                with pytest.raises(PaymentState):
                    void_in(*args, key=key, now=self.now)
                return
            status, answer, replayed = void_in(*args, key=key, now=self.now)
            assert (status, replayed) == (200, False)
            self.keyed.append(Keyed(void_in, args, key, status, answer))
        elif not ok:
            with pytest.raises(PaymentState):
                in_transaction(self.url, void, caller, pay.id, now=self.now)
            return
        else:
            in_transaction(self.url, void, caller, pay.id, now=self.now)
        pay.status = "VOIDED"

    @precondition(lambda self: bool(self.payments))
    @rule(data=st.data(), amount=st.integers(1, 3200), keyed=st.booleans())
    def refund_a_payment(self, data: st.DataObject, amount: int, keyed: bool) -> None:
        pay = self.pick(data, "CAPTURED")
        caller = PAYEES[pay.payee][2]
        expected: type[Exception] | None = None
        if pay.status != "CAPTURED":
            expected = PaymentState
        elif pay.refunded + amount > pay.captured:
            expected = AmountTooLarge
        if keyed:
            key = self.key()
            body = RefundBody.parse({"amount_minor": amount})
            args = (self.url, caller, pay.id, body)
            if expected is not None:
                with pytest.raises(expected):
                    refund_in(*args, key=key, now=self.now)
                return
            status, answer, replayed = refund_in(*args, key=key, now=self.now)
            assert (status, replayed) == (200, False)
            self.keyed.append(Keyed(refund_in, args, key, status, answer))
        elif expected is not None:
            with pytest.raises(expected):
                in_transaction(self.url, refund, caller, pay.id, amount, now=self.now)
            return
        else:
            in_transaction(self.url, refund, caller, pay.id, amount, now=self.now)
        pay.refunded += amount
        if pay.refunded == pay.captured:
            pay.status = "REFUNDED"
        self.note_settling(pay, "refunded", amount)

    @rule(hours=st.integers(min_value=1, max_value=24 * 12) | st.sampled_from(HOLD_HOURS))
    def time_passes(self, hours: int) -> None:
        """Time moves on: by up to 12 days, or to just before, at and after a hold's expiry."""
        self.now += timedelta(hours=hours)

    @rule()
    def expire(self) -> None:
        due = sorted(
            p.id
            for p in self.payments.values()
            if p.status == "AUTHORISED" and p.expires_at <= self.now
        )
        assert sorted(in_transaction(self.url, expire_payments, now=self.now)) == due
        for payment_id in due:
            self.payments[payment_id].status = "EXPIRED"

    @rule(
        later=st.integers(min_value=0, max_value=24 * 40),
        back=st.integers(min_value=0, max_value=2),
        only=st.sampled_from([None, *PAYEES]),
    )
    def settle(self, later: int, back: int, only: str | None) -> None:
        """Later (0 to 40 days), settle this month (interim) or one of the two before (final),
        for every payee or one."""
        self.now += timedelta(hours=later)
        year, month = self.now.year, self.now.month - back
        while month < 1:
            year, month = year - 1, month + 12
        period = f"{year:04d}-{month:02d}"
        final = self.now >= period_end(period)
        cutoff = period_end(period) if final else self.now
        settlements = in_transaction(
            self.url, run_settlement, period, payee=only, now=self.now, actor=ACTOR
        )
        got = {s.payee_id: s for s in settlements}
        for payee, run in self.runs.items():
            if only is not None and payee != only:
                assert payee not in got
                continue
            if final and period in run.finals:  # a final run again: the same, unchanged
                assert got[payee].id == run.finals[period]
                continue
            due = [
                e for e in self.events.values()
                if e.payee == payee and e.settled_in is None and e.at < cutoff
            ]  # fmt: skip
            lease = final and payee == "isp-b" and period not in self.lease_charged
            carried = min(run.last_net, 0)
            if not due and not lease and not (final and carried):
                assert payee not in got, (payee, period)
                continue
            settlement = got[payee]
            with session_scope(self.url) as session:
                lines = session.execute(
                    select(
                        SettlementLine.kind, SettlementLine.event_id, SettlementLine.amount_minor
                    ).where(SettlementLine.settlement_id == settlement.id)
                ).all()
            assert sorted(e for _, e, _ in lines if e is not None) == sorted(e.id for e in due)
            sums: dict[str, int] = {}
            for kind, _, amount in lines:
                sums[kind] = sums.get(kind, 0) + amount
            captured = sum(e.amount for e in due if e.kind == "captured")
            refunded = sum(e.amount for e in due if e.kind == "refunded")
            fees = sum(fee(payee, e.amount) for e in due if e.kind == "captured")
            assert sums.get("capture", 0) == captured
            assert sums.get("refund", 0) == -refunded
            assert sums.get("fee", 0) == -fees
            assert sums.get("lease", 0) == (-LEASE_PRICE if lease else 0)
            assert sums.get("carried", 0) == carried
            net = captured - refunded - fees - (LEASE_PRICE if lease else 0) + carried
            assert (settlement.kind, settlement.net_minor) == ("final" if final else "interim", net)
            assert settlement.payout_minor == max(net, 0)
            for e in due:
                e.settled_in = settlement.id
            run.settled += net - carried
            run.payouts += settlement.payout_minor
            run.last_net = net
            if final:
                run.finals[period] = settlement.id
                if lease:
                    self.lease_charged.add(period)
        assert set(got) <= set(self.runs)

    @precondition(lambda self: bool(self.keyed))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        done = data.draw(st.sampled_from(self.keyed))
        before = self.snapshot()
        # later, whatever happened to the payment since: the first answer, again
        status, answer, replayed = done.call(*done.args, key=done.key, now=self.now)
        assert (status, answer, replayed) == (done.status, done.body, True)
        assert self.snapshot() == before

    @precondition(lambda self: bool(self.keyed))
    @rule(data=st.data())
    def reuse_a_key(self, data: st.DataObject) -> None:
        """The same key for another request is refused, and nothing is written."""
        done = data.draw(st.sampled_from(self.keyed))
        before = self.snapshot()
        caller = done.args[1]
        body = PaymentBody.parse(
            {"subscriber": "sub2", "amount_minor": 1, "currency": CURRENCY,
             "item": "other", "merchant_reference": "other"}
        )  # fmt: skip
        with pytest.raises(IdempotencyConflict):
            authorise_in(self.url, caller, body, key=done.key, now=self.now)
        assert self.snapshot() == before

    # -- invariants --------------------------------------------------------------------

    def snapshot(self) -> tuple[Any, ...]:
        with session_scope(self.url) as session:
            counts = tuple(session.scalar(select(func.count()).select_from(t)) for t in TABLES)
            accounts = session.execute(
                select(LedgerAccount.code, LedgerAccount.debits, LedgerAccount.credits).order_by(
                    LedgerAccount.code
                )
            ).all()
            payments = session.execute(
                select(
                    Payment.id, Payment.status, Payment.captured_minor, Payment.refunded_minor
                ).order_by(Payment.id)
            ).all()
        return counts, tuple(map(tuple, accounts)), tuple(map(tuple, payments))

    @invariant()
    def the_books_hold_together(self) -> None:
        with session_scope(self.url) as session:
            self.check_ledger(session)
            self.check_payments(session)
            self.check_settlements(session)

    def check_ledger(self, session: Session) -> None:
        assert unbalanced_entries(session) == []
        assert check_balances(session) == []
        per_currency = session.execute(
            select(LedgerPosting.currency, func.sum(LedgerPosting.amount)).group_by(
                LedgerPosting.currency
            )
        ).all()
        assert all(total == 0 for _, total in per_currency)
        accounts = session.execute(
            select(LedgerAccount.code, LedgerAccount.floor, LedgerAccount.debits,
                   LedgerAccount.credits)
        ).all()  # fmt: skip
        for code, floor, debits, credits in accounts:
            assert floor != "debits_must_not_exceed_credits" or debits <= credits, code
            assert floor != "credits_must_not_exceed_debits" or credits <= debits, code
        available = {code: credits - debits for code, _, debits, credits in accounts}
        for (subscriber, period), left in self.allowances().items():
            assert available[f"subscriber:{subscriber}.{period}:{CURRENCY}"] == left
        resolutions = session.execute(
            select(LedgerEntry.linked_to, LedgerEntry.kind).where(
                LedgerEntry.linked_to.is_not(None)
            )
        ).all()
        linked = [row[0] for row in resolutions]
        assert len(linked) == len(set(linked))  # no hold resolved twice
        posts = sum(1 for row in resolutions if row[1] == "post")
        assert posts == sum(1 for p in self.payments.values() if p.captured)

    def allowances(self) -> dict[tuple[str, str], int]:
        """The model's allowances of every (subscriber, period) that has had a hold."""
        pairs = {
            (p.subscriber, p.period)
            for p in self.payments.values()
            if p.subscriber is not None and p.status != "DECLINED"
        }
        return {(s, period): self.available(s, period) for s, period in pairs}

    def check_payments(self, session: Session) -> None:
        rows = session.execute(
            select(
                Payment.id, Payment.status, Payment.amount_minor, Payment.captured_minor,
                Payment.refunded_minor,
            )
        ).all()  # fmt: skip
        stored = {row[0]: tuple(row[1:]) for row in rows}
        model = {p.id: (p.status, p.amount, p.captured, p.refunded) for p in self.payments.values()}
        assert stored == model
        for _, amount, captured, refunded in model.values():
            assert 0 <= refunded <= captured <= amount
        settling = session.execute(
            select(
                PaymentEvent.id, PaymentEvent.payment_id, PaymentEvent.kind,
                PaymentEvent.amount_minor,
            ).where(PaymentEvent.kind.in_(("captured", "refunded")))
        ).all()  # fmt: skip
        captures = [row[1] for row in settling if row[2] == "captured"]
        assert len(captures) == len(set(captures))  # no payment captured twice
        assert {row[0]: (row[2], row[3]) for row in settling} == {
            e.id: (e.kind, e.amount) for e in self.events.values()
        }

    def check_settlements(self, session: Session) -> None:
        events = session.scalars(
            select(SettlementLine.event_id).where(SettlementLine.event_id.is_not(None))
        ).all()
        assert len(events) == len(set(events))  # no event settled twice
        assert set(events) == {e.id for e in self.events.values() if e.settled_in is not None}
        stored = session.execute(
            select(Settlement.id, Settlement.statement_json, Settlement.statement_sha256)
        ).all()
        for settlement_id, statement, sha in stored:
            assert hashlib.sha256(statement.encode()).hexdigest() == sha
            if settlement_id not in self.rebuilt:
                self.rebuild(session, settlement_id)
        paid = dict(
            session.execute(
                select(Settlement.payee_id, func.sum(Settlement.payout_minor)).group_by(
                    Settlement.payee_id
                )
            ).all()
        )
        for payee, run in self.runs.items():
            owed = sum(
                (e.amount - fee(payee, e.amount)) if e.kind == "captured" else -e.amount
                for e in self.events.values()
                if e.payee == payee and e.settled_in is not None
            )
            if payee == "isp-b":
                owed -= LEASE_PRICE * len(self.lease_charged)
            assert run.settled == owed
            assert run.payouts + min(run.last_net, 0) == owed
            assert paid.get(payee, 0) == run.payouts

    def rebuild(self, session: Session, settlement_id: int) -> None:
        """A new settlement: its statement renders to the stored bytes and hash, and rebuilt
        from its stored lines it is the same bytes (settlements are immutable: once is
        enough, the stored hash is checked after every step)."""
        settlement = session.get(Settlement, settlement_id)
        assert settlement is not None
        stored = settlement.statement_json.encode()
        assert render_statement(settlement, "json") == stored
        assert statement_sha(settlement, "json") == settlement.statement_sha256
        assert render_statement(settlement, "csv") == render_statement(settlement, "csv")
        line = SettlementLine
        rows = session.execute(
            select(
                line.line_no, line.kind, line.at, line.amount_minor, line.adjustment,
                line.event_id, line.payment_id, line.lease_id, line.lease_version,
                line.charge_key, line.description,
            )
            .where(line.settlement_id == settlement.id)
            .order_by(line.line_no)
        ).all()  # fmt: skip
        document = json.loads(stored)
        document["lines"] = [[r[0], r[1], r[2].isoformat(), *r[3:]] for r in rows]
        assert canonical_json(document).encode() == stored
        totals = document["totals"]
        assert totals["net_minor"] == settlement.net_minor == sum(r[3] for r in rows)
        assert totals["lines_count"] == settlement.lines_count == len(rows)
        assert settlement.payout_minor == max(settlement.net_minor, 0)
        self.rebuilt.add(settlement_id)


PaymentMachine.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_payments_against_their_model = PaymentMachine.TestCase
