"""`vpop payee|payment|settlement|bill|mandate` and `vpop token create --role merchant`.

The database holds March 2025 (a month long over): sub1 pays isp-a 400 and the merchant
shop-a (fee 2.5 %) 1000, of which 200 is refunded; sub2 pays isp-b 600. The commands run in
this process with click's runner, which keeps stdout and stderr apart: a SEPA file must be
all of stdout, an error one line of stderr.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from vpop.billing.service import (
    PaymentBody,
    Settlement,
    authorise,
    capture,
    refund,
    register_merchant,
)
from vpop.catalogue.models import Isp, Line, Subscriber
from vpop.cli import main
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.identity.service import lookup_token
from vpop.selection.service import Caller

MARCH = datetime(2025, 3, 10, 12, tzinfo=UTC)
IBANS = {  # valid test IBANs (checksums hold)
    "isp-a": "DE89370400440532013000",
    "isp-b": "GB82WEST12345698765432",
    "shop-a": "NL91ABNA0417164300",
    "centre": "FR1420041010050500013M02606",
}
PAIN_001 = "{urn:iso:std:iso:20022:tech:xsd:pain.001.001.03}"


def _pay(caller: Caller, subscriber: str, amount: int) -> int:
    body = PaymentBody.parse(
        {"subscriber": subscriber, "amount_minor": amount, "currency": "EUR", "item": "a book",
         "merchant_reference": f"{caller.name}-{amount}"}
    )  # fmt: skip
    with session_scope() as session:
        paid = authorise(session, caller, body, now=MARCH)
        capture(session, caller, paid.id, now=MARCH + timedelta(hours=1))
        return paid.id


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated SQLite database with March 2025's payments; the SEPA settings set."""
    database = f"sqlite:///{tmp_path}/billing.sqlite"
    monkeypatch.setenv("VPOP_DATABASE_URL", database)
    monkeypatch.setenv("VPOP_SEPA_IBAN", IBANS["centre"])
    monkeypatch.setenv("VPOP_SEPA_BIC", "BNPAFRPPXXX")
    monkeypatch.setenv("VPOP_SEPA_CREDITOR_ID", "DE98ZZZ09999999999")
    upgrade(database)
    with session_scope(database) as session:
        session.add_all([Isp(id="isp-a", name="Alpha Net"), Isp(id="isp-b", name="Beta Fibre")])
        for k, sub in enumerate(("sub1", "sub2"), start=1):
            session.add(Subscriber(id=sub, name=f"Subscriber {k}"))
            session.flush()
            session.add(Line(subscriber_id=sub, router="rc1", interface=sub,
                             prefix=f"192.0.2.{4 * k + 2}/32"))  # fmt: skip
        session.flush()
        register_merchant(session, "shop-a", "isp-a", "Alpha Shop", fee_bp=250, actor="test")
    shop = Caller(name="token:shop-a", role="merchant", isp="isp-a", merchant="shop-a")
    _pay(Caller(name="token:isp-a", role="isp", isp="isp-a"), "sub1", 400)
    bought = _pay(shop, "sub1", 1000)
    with session_scope(database) as session:
        refund(session, shop, bought, 200, reason="damaged", now=MARCH + timedelta(days=1))
    _pay(Caller(name="token:isp-b", role="isp", isp="isp-b"), "sub2", 600)
    try:
        yield database
    finally:
        dispose_engines()


def vpop(*args: str) -> Result:
    """`vpop ARGS` in this process."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def ok(*args: str) -> str:
    """The stdout of `vpop ARGS`, which must succeed quietly."""
    result = vpop(*args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def bad(code: str, *args: str, exit_code: int = 2) -> str:
    """The one error line of `vpop ARGS`, which must fail with nothing on stdout."""
    result = vpop(*args)
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}"), result.stderr
    return lines[0]


def test_settlement_run_prints_one_line_per_settlement(url: str) -> None:
    out = ok("settlement", "run", "--period", "2025-03").splitlines()
    assert len(out) == 3, out
    rows = {}
    for line in out:
        found = re.search(r" (\S+) +EUR final +net (-?\d+) payout (\d+)$", line)
        assert found, line
        rows[found.group(1)] = (int(found.group(2)), int(found.group(3)))
    # shop-a: 1000 - 200 - (1000 * 250 + 5000) // 10000 = 775
    assert rows == {"isp-a": (400, 400), "isp-b": (600, 600), "shop-a": (775, 775)}
    assert ok("settlement", "run", "--period", "2025-03").splitlines() == out, "a final run stays"
    listed = json.loads(ok("settlement", "list", "--period", "2025-03", "--json"))
    assert sorted(view["payee"] for view in listed) == ["isp-a", "isp-b", "shop-a"]
    assert ok("settlement", "list", "--payee", "isp-b").count("\n") == 1
    bad("VPOP-400-PERIOD", "settlement", "run", "--period", "2025-3")
    bad("VPOP-400", "settlement", "run")


def test_settlement_show_prints_the_stored_statement(url: str) -> None:
    ok("settlement", "run", "--period", "2025-03")
    with session_scope(url) as session:
        stored = {row.payee_id: (row.id, row.statement_json) for row in session.query(Settlement)}
    shop_id, statement = stored["shop-a"]
    assert ok("settlement", "show", str(shop_id)) == statement
    csv = ok("settlement", "show", str(shop_id), "--format", "csv")
    assert csv == ok("settlement", "show", str(shop_id), "--format", "csv")
    assert "-25" in csv and "1000" in csv
    assert ok("settlement", "show", str(shop_id), "--format", "html").lstrip().startswith("<")
    bad("VPOP-404-SETTLEMENT", "settlement", "show", "999999")


def test_payout_writes_only_xml_to_stdout(url: str) -> None:
    ok("settlement", "run", "--period", "2025-03")
    line = bad("VPOP-422-BANK", "settlement", "payout", "--period", "2025-03")
    assert "isp-a" in line, "the payees without an IBAN are named"
    for payee in ("isp-a", "isp-b", "shop-a"):
        ok("payee", "set", payee, "--iban", IBANS[payee])
    xml = ok("settlement", "payout", "--period", "2025-03")
    root = ET.fromstring(xml.encode())
    amounts = {
        tx.find(f"{PAIN_001}CdtrAcct/{PAIN_001}Id/{PAIN_001}IBAN").text: tx.find(  # type: ignore[union-attr]
            f"{PAIN_001}Amt/{PAIN_001}InstdAmt"
        ).text
        for tx in root.iter(f"{PAIN_001}CdtTrfTxInf")
    }
    assert amounts == {IBANS["isp-a"]: "4.00", IBANS["isp-b"]: "6.00", IBANS["shop-a"]: "7.75"}
    control = root.find(f"{PAIN_001}CstmrCdtTrfInitn/{PAIN_001}GrpHdr/{PAIN_001}CtrlSum")
    assert control is not None and control.text == "17.75", "the file sums to the payouts"
    # paid once: the period again names the file, which `--file` writes again byte for byte
    msg_id = root.find(f"{PAIN_001}CstmrCdtTrfInitn/{PAIN_001}GrpHdr/{PAIN_001}MsgId")
    assert msg_id is not None and msg_id.text
    line = bad("VPOP-409-SEPA-EMPTY", "settlement", "payout", "--period", "2025-03", exit_code=1)
    assert msg_id.text in line
    assert ok("settlement", "payout", "--file", msg_id.text) == xml
    bad("VPOP-404-PAYOUT", "settlement", "payout", "--file", "VPPAYNONE")
    bad("VPOP-400-TYPE", "settlement", "payout")


def test_payout_without_the_bank_settings_or_with_a_bad_period_is_one_line(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad("VPOP-400-PERIOD", "settlement", "payout", "--period", "2025-13")
    bad("VPOP-400-PERIOD", "settlement", "payout", "--period", "march")
    monkeypatch.delenv("VPOP_SEPA_IBAN")
    line = bad("VPOP-CFG", "settlement", "payout", "--period", "2025-03")
    assert "VPOP_SEPA_IBAN" in line


def test_payees_merchant_tokens_payments_and_limits(url: str) -> None:
    assert "shop-b" in ok("payee", "add", "shop-b", "--isp", "isp-b", "--name", "Beta Shop",
                          "--fee-bp", "100")  # fmt: skip
    bad("VPOP-404", "payee", "add", "shop-z", "--isp", "isp-z", "--name", "Nowhere")
    bad("VPOP-422-BANK", "payee", "set", "shop-b", "--iban", "DE00 0000")
    bad("VPOP-400-MISSING", "payee", "set", "shop-b")
    assert "fee 90 bp" in ok("payee", "set", "shop-b", "--fee-bp", "90")
    listed = json.loads(ok("payee", "list", "--isp", "isp-b", "--json"))
    assert [view["id"] for view in listed] == ["isp-b", "shop-b"]

    clear = ok("token", "create", "--role", "merchant", "--merchant", "shop-b").strip()
    with session_scope(url) as session:
        token = lookup_token(session, clear)
        assert token is not None
        assert (token.role, token.merchant_id, token.isp_id) == ("merchant", "shop-b", "isp-b")
    bad("VPOP-400-ROLE", "token", "create", "--role", "merchant")
    bad("VPOP-404-PAYEE", "token", "create", "--role", "merchant", "--merchant", "isp-a")

    out = ok("payment", "list", "--payee", "shop-a").splitlines()
    assert len(out) == 1 and "CAPTURED" in out[0] and "sub1" in out[0]
    payments = json.loads(ok("payment", "list", "--json"))
    assert len(payments) == 3
    shown = json.loads(ok("payment", "show", str(payments[0]["id"])))
    assert [event["kind"] for event in shown["events"]][:2] == ["authorised", "captured"]
    bad("VPOP-404-PAYMENT", "payment", "show", "999999")
    bad("VPOP-400", "payment", "list", "--status", "PAID")

    assert "limit 5000 EUR" in ok("payment", "limit", "sub1")
    assert "limit 7000 EUR" in ok("payment", "limit", "sub1", "7000")
    assert "limit 7000 EUR" in ok("payment", "limit", "sub1")
    bad("VPOP-404-SUBSCRIBER", "payment", "limit", "nobody")


def test_bills_mandates_and_the_direct_debit_file(url: str) -> None:
    running = json.loads(ok("bill", "show", "sub1", "--period", "2025-03"))
    assert (running["purchases_minor"], running["refunds_minor"]) == (1400, 200)
    bad("VPOP-404-SUBSCRIBER", "bill", "show", "nobody")
    closed = ok("bill", "run", "--period", "2025-03").splitlines()
    assert len(closed) == 2 and "sub1" in closed[0] and closed[0].endswith("total 1200")
    assert ok("bill", "run", "--period", "2025-03").splitlines() == closed
    bad("VPOP-400-MANDATE", "mandate", "add", "sub1", "--mandate-id", "M-1", "--name", "One",
        "--iban", IBANS["isp-a"], "--signed-on", "yesterday")  # fmt: skip
    assert "M-1" in ok("mandate", "add", "sub1", "--mandate-id", "M-1", "--name", "Sub One",
                       "--iban", IBANS["isp-a"], "--signed-on", "2025-01-15")  # fmt: skip
    xml = ok("bill", "collect", "--period", "2025-03")
    root = ET.fromstring(xml.encode())
    amounts = [node.text for node in root.iter() if node.tag.endswith("InstdAmt")]
    assert amounts == ["12.00"], "one debit: sub1's bill (sub2 has no mandate)"
