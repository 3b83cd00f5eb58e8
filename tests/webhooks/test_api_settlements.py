"""The settlements API: runs, settlements, statements byte for byte, and who sees what.

March 2025 (a month long over) holds the payments, made through the billing service with
their times given: sub1 pays isp-a 400 and shop-a (a merchant under isp-a, fee 2.5 %) 1000,
of which 200 is refunded; sub2 pays isp-b 600. Settling it gives three final settlements,
figures checked by hand below.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.webhooks.helpers import assert_problem, bearer
from vpop.billing.service import (
    PaymentBody,
    Settlement,
    authorise,
    capture,
    refund,
    register_merchant,
)
from vpop.core.db import session_scope
from vpop.identity.service import create_token
from vpop.selection.service import Caller

API = "/api/v1"
MARCH = datetime(2025, 3, 10, 12, tzinfo=UTC)


def _pay(session: Session, caller: Caller, subscriber: str, amount: int) -> int:
    body = PaymentBody.parse(
        {"subscriber": subscriber, "amount_minor": amount, "currency": "EUR", "item": "a book",
         "merchant_reference": f"{caller.name}-{amount}"}
    )  # fmt: skip
    paid = authorise(session, caller, body, now=MARCH)
    capture(session, caller, paid.id, now=MARCH + timedelta(hours=1))
    return paid.id


@pytest.fixture
def march(database_url: str, tokens: dict[str, str]) -> dict[str, str]:
    """March 2025's payments (see the module docstring); ``tokens`` gains ``shop-a``."""
    isp_a = Caller(name="token:isp-a", role="isp", isp="isp-a")
    isp_b = Caller(name="token:isp-b", role="isp", isp="isp-b")
    shop = Caller(name="token:shop-a", role="merchant", isp="isp-a", merchant="shop-a")
    with session_scope(database_url) as session:
        register_merchant(session, "shop-a", "isp-a", "Alpha Shop", fee_bp=250, actor="test")
        session.flush()
        tokens["shop-a"] = create_token(session, "merchant", name="shop", merchant="shop-a")
        _pay(session, isp_a, "sub1", 400)
        bought = _pay(session, shop, "sub1", 1000)
        refund(session, shop, bought, 200, reason="damaged", now=MARCH + timedelta(days=1))
        _pay(session, isp_b, "sub2", 600)
    return tokens


def run(client: FlaskClient, token: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST a settlement run; return its settlements (200 expected)."""
    response = client.post(f"{API}/settlements/runs", json=body, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    settled: list[dict[str, Any]] = response.get_json()["settlements"]
    return settled


def test_settling_a_month_gives_one_final_settlement_per_payee(
    client: FlaskClient, march: dict[str, str]
) -> None:
    settled = {row["payee"]: row for row in run(client, march["noc"], {"period": "2025-03"})}
    assert set(settled) == {"isp-a", "isp-b", "shop-a"}
    assert {row["kind"] for row in settled.values()} == {"final"}
    shop = settled["shop-a"]
    # 1000 captured, 200 refunded, a fee of (1000 * 250 + 5000) // 10000 = 25 on the capture
    assert (shop["captured_minor"], shop["refunded_minor"], shop["fees_minor"]) == (1000, 200, 25)
    assert (shop["net_minor"], shop["payout_minor"]) == (775, 775)
    assert (settled["isp-a"]["net_minor"], settled["isp-b"]["payout_minor"]) == (400, 600)
    again = run(client, march["admin"], {"period": "2025-03"})
    assert {row["payee"]: row for row in again} == settled, "a final run is never redone"
    only = run(client, march["noc"], {"period": "2025-03", "payee": "isp-b"})
    assert [row["id"] for row in only] == [settled["isp-b"]["id"]]


def test_a_statement_is_the_stored_bytes_and_renders_the_same_twice(
    client: FlaskClient, march: dict[str, str], database_url: str
) -> None:
    shop = next(
        r for r in run(client, march["noc"], {"period": "2025-03"}) if r["payee"] == "shop-a"
    )
    path = f"{API}/settlements/{shop['id']}/statement"
    headers = bearer(march["shop-a"])
    stored = client.get(path, headers=headers)
    assert stored.status_code == 200 and stored.mimetype == "application/json"
    with session_scope(database_url) as session:
        row = session.get(Settlement, shop["id"])
        assert row is not None
        assert stored.get_data() == row.statement_json.encode("utf-8")
        assert row.statement_sha256 == shop["statement_sha256"]
    digest = hashlib.sha256(stored.get_data()).hexdigest()
    assert stored.headers["X-Content-SHA256"] == digest == shop["statement_sha256"]
    document = json.loads(stored.get_data())
    assert json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) == (
        stored.get_data(as_text=True)
    ), "the statement is canonical JSON"
    for fmt, mimetype in (("csv", "text/csv"), ("html", "text/html")):
        first = client.get(f"{path}?format={fmt}", headers=headers)
        second = client.get(f"{path}?format={fmt}", headers=bearer(march["admin"]))
        assert first.status_code == second.status_code == 200
        assert first.mimetype == mimetype
        assert first.get_data() == second.get_data()
        assert first.headers["X-Content-SHA256"] == hashlib.sha256(first.get_data()).hexdigest()
        assert "1000" in first.get_data(as_text=True) and "-25" in first.get_data(as_text=True)
    html = client.get(f"{path}?format=html", headers=headers)
    assert "default-src 'none'" in html.headers["Content-Security-Policy"]
    csv = client.get(f"{path}?format=csv", headers=headers)
    assert csv.headers["Content-Disposition"].startswith("attachment;")
    assert_problem(client.get(f"{path}?format=pdf", headers=headers), 422)


def test_each_token_sees_only_its_own_settlements(
    client: FlaskClient, march: dict[str, str]
) -> None:
    settled = {row["payee"]: row["id"] for row in run(client, march["noc"], {"period": "2025-03"})}

    def listed(role: str, query: str = "") -> set[str]:
        response = client.get(f"{API}/settlements{query}", headers=bearer(march[role]))
        assert response.status_code == 200, response.get_data(as_text=True)
        return {row["payee"] for row in response.get_json()["settlements"]}

    assert listed("noc") == listed("admin") == {"isp-a", "isp-b", "shop-a"}
    assert listed("isp-a") == {"isp-a", "shop-a"}
    assert listed("isp-b") == {"isp-b"}
    assert listed("shop-a") == {"shop-a"}
    assert listed("isp-b", "?payee=shop-a") == set()
    assert listed("noc", "?period=2025-04") == set()
    assert listed("admin", "?payee=shop-a&period=2025-03") == {"shop-a"}
    assert_problem(client.get(f"{API}/settlements", headers=bearer(march["portal"])), 403)
    assert_problem(
        client.get(f"{API}/settlements?payee=isp-a", headers=bearer(march["shop-a"])), 403
    )
    assert_problem(
        client.get(f"{API}/settlements?period=March", headers=bearer(march["noc"])),
        422,
        "VPOP-400-PERIOD",
    )

    readers = {
        "isp-a": ("isp-a", "noc", "admin"),
        "shop-a": ("isp-a", "shop-a", "noc", "admin"),
        "isp-b": ("isp-b", "noc", "admin"),
    }
    unknown = assert_problem(
        client.get(f"{API}/settlements/999999", headers=bearer(march["isp-a"])),
        404,
        "VPOP-404-SETTLEMENT",
    )
    for payee, allowed in readers.items():
        for role in ("portal", "isp-a", "isp-b", "shop-a", "noc", "admin"):
            for suffix in ("", "/statement"):
                response = client.get(
                    f"{API}/settlements/{settled[payee]}{suffix}", headers=bearer(march[role])
                )
                if role in allowed:
                    assert response.status_code == 200, (role, payee, suffix)
                else:
                    body = assert_problem(response, 404, "VPOP-404-SETTLEMENT")
                    assert body["detail"] == unknown["detail"].replace(
                        "999999", str(settled[payee])
                    )


def test_only_operators_run_settlements_of_periods_that_exist(
    client: FlaskClient, march: dict[str, str]
) -> None:
    for role in ("portal", "isp-a", "shop-a"):
        response = client.post(
            f"{API}/settlements/runs", json={"period": "2025-03"}, headers=bearer(march[role])
        )
        assert_problem(response, 403, "VPOP-403-MERCHANT" if role == "shop-a" else "VPOP-403")
    noc = bearer(march["noc"])
    for period in ("2025-13", "25-03", "2099-01"):
        response = client.post(f"{API}/settlements/runs", json={"period": period}, headers=noc)
        assert_problem(response, 422, "VPOP-400-PERIOD")
    unknown = client.post(
        f"{API}/settlements/runs", json={"period": "2025-03", "payee": "nobody"}, headers=noc
    )
    assert_problem(unknown, 404, "VPOP-404-PAYEE")
    missing = client.post(f"{API}/settlements/runs", json={}, headers=noc)
    assert_problem(missing, 422, "VPOP-400-MISSING")
    assert client.get(f"{API}/settlements", headers=noc).get_json()["settlements"] == []
