"""SEPA files: pain.008 direct debits of closed bills for subscribers with a mandate
(validated against the XSD sepaxml ships), the bills left out and why, mandates, settings."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import sepaxml
import xmlschema

from tests.test_settlement import NOV, Shop, at, base
from vpop.billing.service import (
    BankDetailsInvalid,
    MandateInvalid,
    NothingToSend,
    Payment,
    add_mandate,
    balance,
    close_bills,
    collection_file,
    postings_of,
    uncollected_bills,
)
from vpop.catalogue.models import Subscriber
from vpop.core.db import get_engine, session_scope
from vpop.core.errors import ConfigError
from vpop.core.migrate import upgrade

SCHEMAS = Path(sepaxml.__file__).parent / "schemas"
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.008.001.02"}
GB = "GB82WEST12345698765432"


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("VPOP_SEPA_NAME", "vPoP routing centre")
    monkeypatch.setenv("VPOP_SEPA_IBAN", "NL91ABNA0417164300")
    monkeypatch.setenv("VPOP_SEPA_BIC", "ABNANL2A")
    monkeypatch.setenv("VPOP_SEPA_CREDITOR_ID", "NL08ZZZ502057730000")
    database = f"sqlite:///{tmp_path}/sepa.sqlite"
    upgrade(database)
    yield database
    get_engine(database).dispose()


def two_bills(url: str) -> None:
    """sub1 (with a mandate) bought 1500; sub2 (none) bought 900; both in November."""
    with session_scope(url) as session:
        shop = base(session)
        session.add(Subscriber(id="sub2", name="sub2", profile={}))
        shop.captured("a", "shop1", 1500, at(3))
        payment_id = shop.captured("b", "shop1", 900, at(4))
        payment = session.get(Payment, payment_id)
        assert payment is not None
        payment.subscriber_id = "sub2"  # the bill follows the payment's subscriber
        session.flush()
        add_mandate(session, "sub1", mandate_id="VPOP-SUB1-1", name="Sub One",
                    iban="DE89 3704 0044 0532 0130 00", signed_on="2026-10-01",
                    actor="noc")  # fmt: skip
        close_bills(session, NOV, now=at(1, 1, month=12), actor="noc")


def test_collection_file_validates_and_books_each_bill_once(url: str) -> None:
    two_bills(url)
    with session_scope(url) as session:
        data = collection_file(session, NOV, now=at(2, 9, month=12))
        left = uncollected_bills(session, NOV)
        again = collection_file(session, NOV, now=at(2, 9, month=12))
        assert again == data  # deterministic: same period and time, same bytes
        assert balance(session, "bank:EUR") == 1500  # booked once, replayed the second time
    xmlschema.XMLSchema(str(SCHEMAS / "pain.008.001.02.xsd")).validate(data.decode())
    root = ET.fromstring(data)
    debits = root.findall(".//p:DrctDbtTxInf", NS)
    assert len(debits) == 1
    debit = debits[0]
    assert debit.find("p:InstdAmt", NS).text == "15.00"  # type: ignore[union-attr]
    assert debit.find(".//p:MndtId", NS).text == "VPOP-SUB1-1"  # type: ignore[union-attr]
    assert debit.find(".//p:DbtrAcct/p:Id/p:IBAN", NS).text == "DE89370400440532013000"  # type: ignore[union-attr]
    assert root.find(".//p:SeqTp", NS).text == "FRST"  # type: ignore[union-attr]
    assert root.find(".//p:GrpHdr/p:CtrlSum", NS).text == "15.00"  # type: ignore[union-attr]
    assert root.find(".//p:GrpHdr/p:CreDtTm", NS).text == "2026-12-02T09:00:00"  # type: ignore[union-attr]
    assert [(x["subscriber"], x["total_minor"], x["reason"]) for x in left] == [
        ("sub2", 900, "no mandate")
    ]
    with session_scope(url) as session:
        bills = close_bills(session, NOV, now=at(3, month=12), actor="noc")
        sub1 = next(b for b in bills if b.subscriber_id == "sub1")
        assert postings_of(session, f"collect:{sub1.id}") == [
            ("bank:EUR", 1500), ("clearing:EUR", -1500)]  # fmt: skip


def test_the_next_collection_is_recurring(url: str) -> None:
    two_bills(url)
    with session_scope(url) as session:
        collection_file(session, NOV, now=at(2, month=12))
        Shop(session).captured("c", "shop1", 400, at(9, month=12))
        close_bills(session, "2026-12", now=at(1, 1, month=1, year=2027), actor="noc")
        data = collection_file(session, "2026-12", now=at(2, month=1, year=2027))
    assert ET.fromstring(data).find(".//p:SeqTp", NS).text == "RCUR"  # type: ignore[union-attr]


def test_refusals(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    two_bills(url)
    with session_scope(url) as session:
        with pytest.raises(NothingToSend):
            collection_file(session, "2026-10", now=at(2, month=12))
        with pytest.raises(BankDetailsInvalid):
            add_mandate(session, "sub2", mandate_id="M2", name="Two", iban="DE00123",
                        signed_on="2026-10-01", actor="noc")  # fmt: skip
        with pytest.raises(MandateInvalid, match="another subscriber"):
            add_mandate(session, "sub2", mandate_id="VPOP-SUB1-1", name="Two", iban=GB,
                        signed_on="2026-10-01", actor="noc")  # fmt: skip
        with pytest.raises(MandateInvalid, match="signed_on"):
            add_mandate(session, "sub2", mandate_id="M2", name="Two", iban=GB,
                        signed_on="2026-13-01", actor="noc")  # fmt: skip
        monkeypatch.delenv("VPOP_SEPA_CREDITOR_ID")
        with pytest.raises(ConfigError, match="VPOP_SEPA_CREDITOR_ID"):
            collection_file(session, NOV, now=at(2, month=12))
