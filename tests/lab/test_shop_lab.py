"""The lab's web shop (claim 19), end to end through the routing centre.

A real ``vpop serve`` runs against the lab and points every ISP host's shop at itself (its
``--shop`` default: an ISP token per shop in a 0600 file under the lab dir). sub1 is put on
isp-b by a signed selection; ``curl`` in sub1's namespace buys an item on
``http://203.0.113.100/shop/``, which is isp-b's host because that is where sub1's traffic
now leaves. The shop names the buyer only by the TCP peer address it saw (the test also sends
a forged ``source_address`` field and ``X-Forwarded-For`` header, both of another line): the
API must show the payment AUTHORISED for sub1, found by ``source_address``, payable to isp-b.
Delivering captures it; it appears on sub1's running bill and on isp-b's interim settlement
statement for this month. With sub1's limit lowered below the price, a buy is DECLINED
(``limit``) and nothing is held: no new AUTHORISED payment, ``holds:EUR`` unchanged.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.lab.helpers import Server, curl, netns, start_server, stop_server
from vpop.billing.service import balance, period_of
from vpop.core.db import session_scope
from vpop.core.time import utcnow
from vpop.lab.service import SERVICE_ADDRESS, Lab, shop_config_path

pytestmark = pytest.mark.lab

ITEM, PRICE = "film", 499  # "Film rental 4.99 EUR"
FORGED = "192.0.2.6"  # sub2's address: what a client might claim to be


@pytest.fixture(scope="module")
def server(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("shop"), lab)
    try:
        # the routers may carry earlier modules' selections: converge them to this database
        done = srv.cli("reconcile")
        assert done.returncode == 0, done.stdout + done.stderr
        yield srv
    finally:
        stop_server(srv)


def shop(sub: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
    """``curl`` in the subscriber's namespace: the shop's status and page."""
    command = ["ip", "netns", "exec", netns(sub), "curl", "-sS", "-m", "20"]
    command += ["-o", "-", "-w", "\n%{http_code}"]
    if form is not None:
        command += ["-H", f"X-Forwarded-For: {FORGED}", "--data", urlencode(form)]
    out = subprocess.run(
        [*command, f"http://{SERVICE_ADDRESS}{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    page, _, code = out.stdout.rpartition("\n")
    return int(code), page


def shown(page: str, element: str) -> str:
    found = re.search(rf'id="{element}">([^<]*)<', page)
    assert found, page
    return found.group(1)


def call(server: Server, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    return server.request(
        method,
        path,
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )


def wait_shop_configured(server: Server, isp: str, timeout: float = 30.0) -> Path:
    """Wait (bounded) until ``vpop serve`` has pointed the ISP's shop at itself."""
    path = shop_config_path(Lab().dir, isp)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if json.loads(path.read_text())["api"] == server.base:
                return path
        except (OSError, ValueError, KeyError):
            pass
        assert time.monotonic() < deadline, f"{path} not written for {server.base}: {server.log}"
        time.sleep(0.05)


def select_and_wait(server: Server, sub: str, isp: str) -> None:
    status, body = server.select({"subscriber": sub, "isp": isp})
    assert status == 202, body
    order = server.wait_order(body["order"])
    assert order["status"] == "DONE_SUCCESS", order


def payments_of(server: Server, subscriber: str, status: str | None = None) -> list[Any]:
    query = {"subscriber": subscriber, **({"status": status} if status else {})}
    code, body = server.get("/api/v1/payments?" + urlencode(query))
    assert code == 200, body
    rows: list[Any] = body["payments"]
    return rows


def holds(server: Server) -> int:
    with session_scope(server.db_url) as session:
        return balance(session, "holds:EUR")


def test_a_subscriber_buys_on_the_isp_shop_and_is_billed_and_settled(server: Server) -> None:
    config = wait_shop_configured(server, "isp-b")
    token_file = Path(json.loads(config.read_text())["token_file"])
    for path in (config, token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    select_and_wait(server, "sub1", "isp-b")
    assert curl("sub1") == "isp-b"  # sub1's traffic, and so its purchase, reaches isp-b

    status, page = shop("sub1", "/shop/")
    assert status == 200 and "Film rental 4.99 EUR" in page, page

    status, page = shop("sub1", "/shop/buy", {"item": ITEM, "source_address": FORGED})
    assert (status, shown(page, "status")) == (200, "AUTHORISED"), page
    payment_id = int(shown(page, "payment"))
    code, payment = server.get(f"/api/v1/payments/{payment_id}")
    assert code == 200, payment
    assert payment["status"] == "AUTHORISED"
    assert (payment["subscriber"], payment["identified_by"]) == ("sub1", "source_address")
    assert (payment["payee"], payment["isp"]) == ("isp-b", "isp-b")
    assert (payment["amount_minor"], payment["currency"]) == (PRICE, "EUR")
    assert payment["merchant_reference"].startswith("order-")

    status, page = shop("sub1", "/shop/deliver", {"payment": str(payment_id)})
    assert (status, shown(page, "status")) == (200, "CAPTURED"), page
    code, payment = server.get(f"/api/v1/payments/{payment_id}")
    assert (payment["status"], payment["captured_minor"]) == ("CAPTURED", PRICE), payment

    code, bill = server.get("/api/v1/subscribers/sub1/bill")
    assert code == 200, bill
    purchases = [line for line in bill["lines"] if line["kind"] == "purchase"]
    assert [(p["payment"], p["payee"], p["amount_minor"]) for p in purchases] == [
        (payment_id, "isp-b", PRICE)
    ], bill
    assert (bill["purchases_minor"], bill["currency"]) == (PRICE, "EUR"), bill
    assert bill["total_minor"] == bill["plan_minor"] + PRICE, bill

    period = period_of(utcnow())
    code, run = call(server, "POST", "/api/v1/settlements/runs", {"period": period})
    assert code == 200, run
    [settlement] = [s for s in run["settlements"] if s["payee"] == "isp-b"]
    assert (settlement["kind"], settlement["period"]) == ("interim", period), settlement
    code, statement = server.get(f"/api/v1/settlements/{settlement['id']}/statement")
    assert code == 200, statement
    col = {name: i for i, name in enumerate(statement["columns"])}
    captured = [
        line[col["amount_minor"]]
        for line in statement["lines"]
        if line[col["kind"]] == "capture" and line[col["payment_id"]] == payment_id
    ]
    assert captured == [PRICE], statement

    code, limit = call(
        server, "PUT", "/api/v1/subscribers/sub1/spending-limit", {"limit_minor": 100}
    )
    assert code == 200, limit
    held, authorised = holds(server), payments_of(server, "sub1", "AUTHORISED")
    status, page = shop("sub1", "/shop/buy", {"item": ITEM})
    assert (status, shown(page, "status"), shown(page, "reason")) == (402, "DECLINED", "limit")
    declined = payments_of(server, "sub1")[0]  # newest first
    assert declined["id"] == int(shown(page, "payment")), declined
    assert (declined["status"], declined["decline_reason"]) == ("DECLINED", "limit")
    assert declined["identified_by"] == "source_address"
    assert payments_of(server, "sub1", "AUTHORISED") == authorised
    assert holds(server) == held
