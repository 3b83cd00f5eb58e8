"""Settlement of a period: every figure checked by hand, interim and final runs, late refunds
as adjustments of the next period, negative nets carried, one settlement per payee and
currency, the pain.001 payout file; the hand-checked period on PostgreSQL too."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sepaxml
import xmlschema
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from tests.pg import PG_BIN, postgres_cluster
from vpop.billing.service import (
    BankDetailsInvalid,
    NothingToSend,
    Payee,
    Payment,
    PaymentEvent,
    PeriodInvalid,
    Settlement,
    SettlementLine,
    balance,
    check_balances,
    hold,
    list_settlements,
    open_account,
    payout_file,
    post_hold,
    postings_of,
    render_statement,
    run_settlement,
    settlement_view,
    stored_payout_file,
    transfer,
    unbalanced_entries,
)
from vpop.catalogue.models import Isp, Subscriber
from vpop.core.audit import AuditEntry
from vpop.core.db import get_engine, session_scope
from vpop.core.errors import NotFound
from vpop.core.migrate import upgrade
from vpop.leasing.models import Lease, LeaseVersion

NOV = "2026-11"
IBANS = {"isp-b": "DE89370400440532013000", "shop1": "GB82WEST12345698765432"}
SCHEMAS = Path(sepaxml.__file__).parent / "schemas"
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}


def at(day: int, hour: int = 12, month: int = 11, year: int = 2026) -> datetime:
    """An instant of 2026 (November unless told), UTC."""
    return datetime(year, month, day, hour, tzinfo=UTC)


@dataclass
class Shop:
    """Writes payees, payments and their events with the ledger entries H1's code writes."""

    session: Session
    payments: dict[str, int] = field(default_factory=dict)
    refunds: dict[int, int] = field(default_factory=dict)

    def isp(self, isp_id: str, *, fee_bp: int = 0, fee_fixed: int = 0) -> None:
        self.session.add(Isp(id=isp_id, name=f"ISP {isp_id}", outbound_deny=[]))
        self.session.flush()
        self.session.add(Payee(id=isp_id, kind="isp", isp_id=isp_id, name=f"ISP {isp_id}",
                               fee_bp=fee_bp, fee_fixed_minor=fee_fixed,
                               iban=IBANS.get(isp_id)))  # fmt: skip
        self.session.flush()

    def merchant(self, payee_id: str, isp_id: str, *, fee_bp: int = 0, fee_fixed: int = 0) -> None:
        self.session.add(Payee(id=payee_id, kind="merchant", isp_id=isp_id, name=f"Shop {payee_id}",
                               fee_bp=fee_bp, fee_fixed_minor=fee_fixed,
                               iban=IBANS.get(payee_id)))  # fmt: skip
        self.session.flush()

    def allowance(self, period: str, currency: str = "EUR") -> str:
        code = open_account(self.session, "subscriber", f"sub1.{period}", currency).code
        clearing = open_account(self.session, "clearing", None, currency).code
        transfer(self.session, key=f"limit:sub1:{currency}:{period}:0", kind="limit",
                 currency=currency, postings=[(clearing, 10**9), (code, -(10**9))],
                 actor="test")  # fmt: skip
        return code

    def captured(
        self, name: str, payee: str, amount: int, when: datetime, *, authorised: int = 0,
        currency: str = "EUR",
    ) -> int:  # fmt: skip
        """Payment ``name``: authorised (``authorised`` or ``amount``), captured ``amount``."""
        period = f"{when.year:04d}-{when.month:02d}"
        allowance = f"subscriber:sub1.{period}:{currency}"
        payee_row = self.session.get(Payee, payee)
        assert payee_row is not None
        payment = Payment(payee_id=payee, isp_id=payee_row.isp_id, subscriber_id="sub1",
                          identified_by="subscriber", currency=currency,
                          amount_minor=authorised or amount, captured_minor=amount,
                          status="CAPTURED", item=name, merchant_reference=name, period=period,
                          created_at=when - timedelta(hours=1), updated_at=when,
                          created_by="test")  # fmt: skip
        self.session.add(payment)
        self.session.flush()
        payee_code = open_account(self.session, "payee", payee, currency).code
        hold_key = f"payment:{payment.id}:hold"
        hold(self.session, key=hold_key, subscriber_account=allowance,
             amount=authorised or amount, currency=currency, expires_at=when + timedelta(days=7),
             actor="test", at=when - timedelta(hours=1))  # fmt: skip
        post_hold(self.session, key=f"payment:{payment.id}:capture", hold_key=hold_key,
                  payee_account=payee_code, amount=amount, actor="test", now=when)  # fmt: skip
        payment.hold_key = hold_key
        self.session.add(PaymentEvent(payment_id=payment.id, payee_id=payee, currency=currency,
                                      kind="captured", amount_minor=amount, at=when,
                                      actor="test",
                                      ledger_key=f"payment:{payment.id}:capture"))  # fmt: skip
        self.session.flush()
        self.payments[name] = payment.id
        return payment.id

    def refunded(self, name: str, amount: int, when: datetime) -> None:
        payment = self.session.get(Payment, self.payments[name])
        assert payment is not None
        n = self.refunds[payment.id] = self.refunds.get(payment.id, 0) + 1
        key = f"payment:{payment.id}:refund:{n}"
        payee_code = f"payee:{payment.payee_id}:{payment.currency}"
        allowance = f"subscriber:sub1.{payment.period}:{payment.currency}"
        transfer(self.session, key=key, kind="refund", currency=payment.currency,
                 postings=[(payee_code, amount), (allowance, -amount)], actor="test",
                 at=when)  # fmt: skip
        payment.refunded_minor += amount
        self.session.add(PaymentEvent(payment_id=payment.id, payee_id=payment.payee_id,
                                      currency=payment.currency, kind="refunded",
                                      amount_minor=amount, at=when, actor="test",
                                      ledger_key=key))  # fmt: skip
        self.session.flush()

    def lease(
        self, isp_id: str, versions: list[tuple[datetime, int]], *,
        ended_at: datetime | None = None,
    ) -> int:  # fmt: skip
        """A lease of ``isp_id`` whose versions take force at the given times and prices."""
        first = versions[0]
        lease = Lease(isp_id=isp_id, router="rc1", uplink="up1", committed_mbps=100,
                      price_minor=versions[-1][1], currency="EUR", starts_at=first[0],
                      ended_at=ended_at)  # fmt: skip
        self.session.add(lease)
        self.session.flush()
        for number, (valid_from, price) in enumerate(versions, start=1):
            valid_to = versions[number][0] if number < len(versions) else None
            version = LeaseVersion(lease_id=lease.id, version=number, valid_from=valid_from,
                                   valid_to=valid_to, committed_mbps=100, peak_pct=125,
                                   price_minor=price, currency="EUR", reason="create",
                                   actor="test")  # fmt: skip
            self.session.add(version)
        self.session.flush()
        return lease.id


def base(session: Session) -> Shop:
    """isp-b (2.5 % + 10 per capture) with merchant shop1 (1 %), sub1's allowances."""
    shop = Shop(session)
    shop.isp("isp-b", fee_bp=250, fee_fixed=10)
    shop.merchant("shop1", "isp-b", fee_bp=100)
    session.add(Subscriber(id="sub1", name="sub1", profile={}))
    session.flush()
    for period in ("2026-10", "2026-11", "2026-12", "2027-01"):
        shop.allowance(period)
    return shop


def assert_ledger_sound(session: Session) -> None:
    assert unbalanced_entries(session) == []
    assert check_balances(session) == []


def lines_of(settlement: Settlement) -> list[list[object]]:
    """The statement's lines without their times: [no, kind, amount, adjustment, payment]."""
    document = json.loads(settlement.statement_json)
    assert document["columns"][:7] == [
        "line_no", "kind", "at", "amount_minor", "adjustment", "event_id", "payment_id",
    ]  # fmt: skip
    return [[x[0], x[1], x[3], x[4], x[6]] for x in document["lines"]]


# --- databases ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """One throwaway PostgreSQL cluster for this module."""
    if not PG_BIN.exists():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql)")
    with postgres_cluster("settle") as server:
        yield server


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite database."""
    database = f"sqlite:///{tmp_path}/settle.sqlite"
    upgrade(database)
    yield database
    get_engine(database).dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database on SQLite, then on PostgreSQL (a fresh database in the cluster)."""
    if request.param == "sqlite":
        database = f"sqlite:///{tmp_path}/settle.sqlite"
    else:
        server = request.getfixturevalue("pg_server")
        name = f"settle_{uuid.uuid4().hex[:10]}"
        with get_engine(server).connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text(f"CREATE DATABASE {name}"))
        database = server.replace("/postgres?", f"/{name}?")
    upgrade(database)
    yield database
    get_engine(database).dispose()


@pytest.fixture
def sepa_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPOP_SEPA_NAME", "vPoP routing centre")
    monkeypatch.setenv("VPOP_SEPA_IBAN", "NL91ABNA0417164300")
    monkeypatch.setenv("VPOP_SEPA_BIC", "ABNANL2A")
    monkeypatch.setenv("VPOP_SEPA_CREDITOR_ID", "NL08ZZZ502057730000")


# --- the hand-checked period ----------------------------------------------------------------


def november(session: Session) -> Shop:
    """November 2026 (30 days) of isp-b and shop1; the figures are checked in the test."""
    shop = base(session)
    shop.captured("p1", "isp-b", 19990, at(3))
    shop.captured("p4", "shop1", 850, at(5))
    shop.captured("p2", "isp-b", 30000, at(10), authorised=50000)  # partial capture
    shop.refunded("p2", 10000, at(20))
    shop.captured("p3", "isp-b", 12345, at(25))
    # price 3100 until Nov 16 12:00, then 4550: two versions in November
    shop.lease("isp-b", [(at(1, 0, month=10), 3100), (at(16, 12), 4550)])
    return shop


def test_hand_checked_period_late_refund_and_payout(
    any_url: str, monkeypatch: pytest.MonkeyPatch, sepa_settings: None
) -> None:
    with session_scope(any_url) as session:
        november(session)
    with session_scope(any_url) as session:
        settled = run_settlement(session, NOV, now=at(1, 0, month=12), actor="noc")
        assert [(s.payee_id, s.currency, s.kind, s.seq) for s in settled] == [
            ("isp-b", "EUR", "final", 1), ("shop1", "EUR", "final", 1),
        ]  # fmt: skip
        isp_b, shop1 = settled
        # isp-b fees, 250 bp half up + 10 fixed per captured payment:
        #   p1 19990: (19990*250 + 5000)//10000 = 5002500//10000 = 500, + 10 = 510
        #   p2 30000: (30000*250 + 5000)//10000 = 7505000//10000 = 750, + 10 = 760
        #   p3 12345: (12345*250 + 5000)//10000 = 3091250//10000 = 309, + 10 = 319
        #   the refund of 10000 on p2 gives no fee back
        # lease, by day in force at 00:00Z over 30 days, half up:
        #   v1 (3100) Nov 1..16 (Nov 16 00:00 is before 12:00): 16 days:
        #      (3100*16 + 15)//30 = 49615//30 = 1653
        #   v2 (4550) Nov 17..30: 14 days: (4550*14 + 15)//30 = 63715//30 = 2123
        # net = 19990 + 30000 + 12345 - 10000 - (510 + 760 + 319) - (1653 + 2123)
        #     = 62335 - 10000 - 1589 - 3776 = 46970
        assert lines_of(isp_b) == [
            [1, "capture", 19990, False, 1], [2, "fee", -510, False, 1],
            [3, "capture", 30000, False, 3], [4, "fee", -760, False, 3],
            [5, "refund", -10000, False, 3],
            [6, "capture", 12345, False, 4], [7, "fee", -319, False, 4],
            [8, "lease", -1653, False, None], [9, "lease", -2123, False, None],
        ]  # fmt: skip
        view = settlement_view(isp_b)
        assert {k: view[k] for k in ("captured_minor", "refunded_minor", "fees_minor",
                                     "lease_minor", "adjustments_minor", "carried_in_minor",
                                     "net_minor", "payout_minor", "lines_count")} == {
            "captured_minor": 62335, "refunded_minor": 10000, "fees_minor": 1589,
            "lease_minor": 3776, "adjustments_minor": 0, "carried_in_minor": 0,
            "net_minor": 46970, "payout_minor": 46970, "lines_count": 9,
        }  # fmt: skip
        # shop1: p4 850, fee (850*100 + 5000)//10000 = 90000//10000 = 9; net 841
        assert lines_of(shop1) == [[1, "capture", 850, False, 2], [2, "fee", -9, False, 2]]
        assert (shop1.net_minor, shop1.payout_minor) == (841, 841)
        # the ledger: fees and lease to revenue, the payout from the bank; payees square
        assert postings_of(session, f"settlement:{isp_b.id}:fee") == [
            ("payee:isp-b:EUR", 1589), ("revenue:EUR", -1589)]  # fmt: skip
        assert postings_of(session, f"settlement:{isp_b.id}:lease") == [
            ("payee:isp-b:EUR", 3776), ("revenue:EUR", -3776)]  # fmt: skip
        assert postings_of(session, f"settlement:{isp_b.id}:payout") == [
            ("bank:EUR", -46970), ("payee:isp-b:EUR", 46970)]  # fmt: skip
        assert balance(session, "payee:isp-b:EUR") == 0
        assert balance(session, "payee:shop1:EUR") == 0
        assert balance(session, "revenue:EUR") == -(1589 + 3776 + 9)
        assert_ledger_sound(session)
        nov_ids = (isp_b.id, shop1.id)
        nov_json = render_statement(isp_b, "json")
        nov_sha = isp_b.statement_sha256
        nov_csv = render_statement(isp_b, "csv")
        payouts = payout_file(session, NOV, now=at(2, 9, month=12))

    # the payout file: valid pain.001.001.03, one transaction per payee, sums = payouts
    xmlschema.XMLSchema(str(SCHEMAS / "pain.001.001.03.xsd")).validate(payouts.decode())
    root = ET.fromstring(payouts)
    txs = root.findall(".//p:CdtTrfTxInf", NS)
    paid = {t.find("p:Cdtr/p:Nm", NS).text: t.find("p:Amt/p:InstdAmt", NS).text for t in txs}  # type: ignore[union-attr]
    assert paid == {"ISP isp-b": "469.70", "Shop shop1": "8.41"}
    assert root.find(".//p:GrpHdr/p:CtrlSum", NS).text == "478.11"  # type: ignore[union-attr]
    assert root.find(".//p:GrpHdr/p:NbOfTxs", NS).text == "2"  # type: ignore[union-attr]
    ibans = sorted(t.find("p:CdtrAcct/p:Id/p:IBAN", NS).text or "" for t in txs)  # type: ignore[union-attr]
    assert ibans == sorted(IBANS.values())

    # December: p3 (a November payment) is refunded after November's final settlement
    with session_scope(any_url) as session:
        shop = Shop(session, payments={"p3": 4})
        shop.refunded("p3", 2345, at(3, month=12))
        shop.captured("p5", "isp-b", 9000, at(8, month=12))
    with session_scope(any_url) as session:
        # the November run again: the same settlements, nothing new
        again = run_settlement(session, NOV, now=at(5, month=12), actor="noc")
        assert tuple(s.id for s in again) == nov_ids
        assert render_statement(again[0], "json") == nov_json
        december = run_settlement(session, "2026-12", now=at(1, 0, month=1, year=2027), actor="noc")
        assert [s.payee_id for s in december] == ["isp-b"]
        dec = december[0]
        # p5 9000: fee (9000*250 + 5000)//10000 = 2255000//10000 = 225, + 10 = 235
        # lease v2 all of December's 31 days: (4550*31 + 15)//31 = 141065//31 = 4550
        # the late refund of p3 is an adjustment: -2345
        # net = 9000 - 235 - 4550 - 2345 = 1870
        assert lines_of(dec) == [
            [1, "refund", -2345, True, 4], [2, "capture", 9000, False, 5],
            [3, "fee", -235, False, 5], [4, "lease", -4550, False, None],
        ]  # fmt: skip
        assert (dec.adjustments_minor, dec.captured_minor, dec.fees_minor, dec.lease_minor) == (
            -2345, 9000, 235, 4550)  # fmt: skip
        assert (dec.net_minor, dec.payout_minor) == (1870, 1870)
        assert balance(session, "payee:isp-b:EUR") == 0
        assert_ledger_sound(session)
        # November is unchanged: same rows, byte-identical statement, same SHA-256
        nov = session.get(Settlement, nov_ids[0])
        assert nov is not None
        assert render_statement(nov, "json") == nov_json
        assert render_statement(nov, "csv") == nov_csv
        assert nov.statement_sha256 == nov_sha
        count = select(func.count()).where(SettlementLine.settlement_id == nov.id)
        assert session.scalar(count) == 9


def test_interim_runs_settle_only_what_is_new(url: str) -> None:
    with session_scope(url) as session:
        shop = base(session)
        shop.captured("a", "shop1", 1000, at(3))
        shop.captured("b", "shop1", 2000, at(10))
    with session_scope(url) as session:
        first = run_settlement(session, NOV, now=at(12), actor="noc")
        assert [(s.kind, s.seq, s.captured_minor) for s in first] == [("interim", 1, 3000)]
        assert first[0].cutoff == at(12)
        # nothing new: no second interim
        assert run_settlement(session, NOV, now=at(13), actor="noc") == []
    with session_scope(url) as session:
        shop = Shop(session)
        shop.captured("c", "shop1", 4000, at(15))
        shop.captured("late", "shop1", 8000, at(30, 23))  # before the month's end
    with session_scope(url) as session:
        second = run_settlement(session, NOV, now=at(20), actor="noc")
        assert [(s.kind, s.seq, s.captured_minor) for s in second] == [("interim", 2, 4000)]
        final = run_settlement(session, NOV, now=at(2, month=12), actor="noc")
        assert [(s.kind, s.seq, s.captured_minor) for s in final] == [("final", 3, 8000)]
        assert final[0].cutoff == at(1, 0, month=12)
        runs = list_settlements(session, period=NOV, payee="shop1")
        assert [s.seq for s in runs] == [1, 2, 3]
        # every event in exactly one settlement
        settled = session.execute(
            select(SettlementLine.event_id, func.count())
            .where(SettlementLine.event_id.is_not(None))
            .group_by(SettlementLine.event_id)
        ).all()
        events = session.scalars(select(PaymentEvent.id).where(PaymentEvent.kind == "captured"))
        assert sorted(row[0] or 0 for row in settled) == sorted(events)
        assert all(row[1] == 1 for row in settled)
        assert_ledger_sound(session)
        some_event = settled[0][0]
        run_id = final[0].id
    # the database itself refuses a second line for a settled event
    with pytest.raises(IntegrityError), session_scope(url) as session:
        session.add(SettlementLine(settlement_id=run_id, line_no=99, kind="capture",
                                   event_id=some_event, at=at(1), amount_minor=1))  # fmt: skip
        session.flush()
    # and settlements are immutable
    with pytest.raises(DBAPIError), session_scope(url) as session:
        session.execute(text("UPDATE settlements SET payout_minor = 0"))


def test_each_settlement_is_paid_by_one_payout_file(url: str, sepa_settings: None) -> None:
    """An interim run's payout is not paid again when the file is made after the final run;
    a file made before is written again byte for byte."""
    with session_scope(url) as session:
        base(session).captured("a", "shop1", 1000, at(3))
    with session_scope(url) as session:
        (interim,) = run_settlement(session, NOV, now=at(12), actor="noc")
        first = payout_file(session, NOV, now=at(12, 13), actor="clerk")
    with session_scope(url) as session:
        Shop(session).captured("b", "shop1", 2000, at(20))
    with session_scope(url) as session:
        (final,) = run_settlement(session, NOV, now=at(2, month=12), actor="noc")
        second = payout_file(session, NOV, now=at(2, 9, month=12), actor="clerk")
        # fee of 100 bp: 1000 -> 990 in the first file, 2000 -> 1980 in the second only
        assert (interim.payout_minor, final.payout_minor) == (990, 1980)
    amounts = [ET.fromstring(x).find(".//p:GrpHdr/p:CtrlSum", NS) for x in (first, second)]
    assert [a.text for a in amounts if a is not None] == ["9.90", "19.80"]
    ids = [ET.fromstring(x).find(".//p:GrpHdr/p:MsgId", NS) for x in (first, second)]
    first_id, second_id = (i.text or "" for i in ids if i is not None)
    assert first_id != second_id
    with session_scope(url) as session:
        with pytest.raises(NothingToSend, match=f"{first_id}, {second_id}"):
            payout_file(session, NOV, now=at(3, month=12), actor="clerk")
        assert stored_payout_file(session, first_id) == first
        assert stored_payout_file(session, second_id) == second
        with pytest.raises(NotFound):
            stored_payout_file(session, "VPPAYNONE")
        made = session.scalars(select(AuditEntry).where(AuditEntry.action == "payout.file")).all()
        assert [(e.actor, e.details["total_minor"]) for e in made] == [
            ("clerk", 990),
            ("clerk", 1980),
        ]


def test_negative_net_pays_nothing_and_is_carried(url: str, sepa_settings: None) -> None:
    with session_scope(url) as session:
        shop = base(session)
        # 10000 a month; the lease ends at December's first instant: no December charge
        shop.lease("isp-b", [(at(1, 0, month=10), 10000)], ended_at=at(1, 0, month=12))
        shop.captured("a", "isp-b", 3000, at(4))
    with session_scope(url) as session:
        (nov,) = run_settlement(session, NOV, payee="isp-b", now=at(1, 0, month=12), actor="x")
        # 3000 - fee ((3000*250 + 5000)//10000 = 755000//10000 = 75, + 10 = 85) - 10000 lease
        assert (nov.net_minor, nov.payout_minor, nov.fees_minor) == (-7085, 0, 85)
        assert postings_of(session, f"settlement:{nov.id}:payout") == []
        assert balance(session, "payee:isp-b:EUR") == 7085  # isp-b owes the routing centre
    with pytest.raises(Exception, match="no payee is owed"), session_scope(url) as session:
        payout_file(session, NOV, now=at(2, month=12))
    with session_scope(url) as session:
        Shop(session).captured("b", "isp-b", 9000, at(6, month=12))
    with session_scope(url) as session:
        (dec,) = run_settlement(session, "2026-12", now=at(1, 0, month=1, year=2027), actor="x")
        # carried -7085, + 9000 - fee (225 + 10 = 235), no lease: 1680
        assert lines_of(dec)[0] == [1, "carried", -7085, False, None]
        assert (dec.carried_in_minor, dec.net_minor, dec.payout_minor) == (-7085, 1680, 1680)
        assert balance(session, "payee:isp-b:EUR") == 0
        assert_ledger_sound(session)


def test_one_settlement_per_payee_and_currency_and_eur_payouts_only(
    url: str, sepa_settings: None
) -> None:
    with session_scope(url) as session:
        shop = base(session)
        shop.allowance(NOV, "USD")
        shop.captured("e", "shop1", 1000, at(3))
        shop.captured("u", "shop1", 7000, at(4), currency="USD")
    with session_scope(url) as session:
        settled = run_settlement(session, NOV, now=at(1, 0, month=12), actor="noc")
        assert [(s.payee_id, s.currency, s.payout_minor) for s in settled] == [
            ("shop1", "EUR", 1000 - 10), ("shop1", "USD", 7000 - 70),
        ]  # fmt: skip
        data = payout_file(session, NOV, now=at(2, month=12))
    root = ET.fromstring(data)
    amounts = [(a.get("Ccy"), a.text) for a in root.iter(f"{{{NS['p']}}}InstdAmt")]
    assert amounts == [("EUR", "9.90")]


def test_refusals(url: str, sepa_settings: None) -> None:
    with session_scope(url) as session:
        shop = base(session)
        shop.captured("a", "shop1", 1000, at(3))
        with pytest.raises(PeriodInvalid):
            run_settlement(session, "2026-13", now=at(3), actor="x")
        with pytest.raises(PeriodInvalid):
            run_settlement(session, "2027-01", now=at(3), actor="x")
        with pytest.raises(Exception, match="unknown payee"):
            run_settlement(session, NOV, payee="nobody", now=at(3), actor="x")
        payee = session.get(Payee, "shop1")
        assert payee is not None
        payee.iban = None
        run_settlement(session, NOV, now=at(1, 0, month=12), actor="x")
        with pytest.raises(BankDetailsInvalid, match="shop1"):
            payout_file(session, NOV, now=at(2, month=12))
