"""The payments API: authorise, capture, void, refund; limits, bills and payees; who sees what.

The world is the API tests' (``conftest.py``): isp-a, isp-b, isp-c; sub1-sub3 with one line
each; tokens of every role. Merchants are registered here (``shop-a`` under isp-a, ``shop-b``
under isp-b) with their own tokens. Every response is also held against the OpenAPI
document (the autouse ``conformance`` fixture).
"""

from __future__ import annotations

import itertools
import re
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from tests.pg import PG_BIN, postgres_cluster
from tests.webhooks.helpers import assert_problem, bearer
from vpop.billing.service import Payment, PaymentEvent, register_merchant
from vpop.catalogue.models import Isp, Line, Subscriber
from vpop.core.db import session_scope
from vpop.core.migrate import upgrade
from vpop.identity.service import create_token
from webhooks import create_app
from webhooks.api import openapi

API = "/api/v1"
_keys = itertools.count(1)


def key() -> str:
    """A fresh idempotency key."""
    return f"test-key-{next(_keys)}"


def pay_body(subscriber: str = "sub1", amount: int = 1200, **extra: Any) -> dict[str, Any]:
    """A payment request naming the subscriber."""
    body = {
        "subscriber": subscriber,
        "amount_minor": amount,
        "currency": "EUR",
        "item": "a song",
        "merchant_reference": f"ref-{next(_keys)}",
    }
    return {name: value for name, value in {**body, **extra}.items() if value is not None}


def post(
    client: FlaskClient, path: str, token: str, body: Any = None, *, idem: str | None = None
) -> TestResponse:
    """POST ``body`` (JSON, or nothing) with the token and, unless None, an Idempotency-Key."""
    headers = bearer(token)
    if idem is not None:
        headers["Idempotency-Key"] = idem
    if body is None:
        return client.post(path, headers=headers)
    return client.post(path, json=body, headers=headers)


def authorise(client: FlaskClient, token: str, **kwargs: Any) -> dict[str, Any]:
    """Authorise a payment with ``token``; return its JSON (201 expected)."""
    response = post(client, f"{API}/payments", token, pay_body(**kwargs), idem=key())
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


@pytest.fixture
def merchants(database_url: str, tokens: dict[str, str]) -> dict[str, str]:
    """``shop-a`` (isp-a) and ``shop-b`` (isp-b), and their merchant tokens, in ``tokens``."""
    with session_scope(database_url) as session:
        for shop, isp in (("shop-a", "isp-a"), ("shop-b", "isp-b")):
            register_merchant(session, shop, isp, f"Shop {isp}", fee_bp=250, actor="test")
            session.flush()
            tokens[shop] = create_token(session, "merchant", name=shop, merchant=shop)
    return tokens


def payment_count(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(Payment)) or 0)


# --- idempotency ----------------------------------------------------------------------------


def test_every_payment_post_needs_an_idempotency_key(
    client: FlaskClient, tokens: dict[str, str], database_url: str
) -> None:
    isp_a = tokens["isp-a"]
    assert_problem(
        post(client, f"{API}/payments", isp_a, pay_body()), 400, "VPOP-400-IDEMPOTENCY-KEY"
    )
    assert payment_count(database_url) == 0
    paid = authorise(client, isp_a)
    for action, body in (("capture", {}), ("void", None), ("refunds", {"amount_minor": 1})):
        response = post(client, f"{API}/payments/{paid['id']}/{action}", isp_a, body)
        assert_problem(response, 400, "VPOP-400-IDEMPOTENCY-KEY")
    shown = client.get(f"{API}/payments/{paid['id']}", headers=bearer(isp_a)).get_json()
    assert shown["status"] == "AUTHORISED"
    assert [event["kind"] for event in shown["events"]] == ["authorised"]


def test_a_replay_answers_the_stored_answer_and_changes_nothing(
    client: FlaskClient, tokens: dict[str, str], database_url: str
) -> None:
    isp_a = tokens["isp-a"]
    body = pay_body(amount=700)
    first = post(client, f"{API}/payments", isp_a, body, idem="buy-1")
    again = post(client, f"{API}/payments", isp_a, body, idem="buy-1")
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert payment_count(database_url) == 1
    other = post(client, f"{API}/payments", isp_a, {**body, "amount_minor": 701}, idem="buy-1")
    assert_problem(other, 422, "VPOP-409-IDEMPOTENCY")
    # another caller's key is its own: isp-b's "buy-1" is a new payment
    assert post(client, f"{API}/payments", tokens["isp-b"], body, idem="buy-1").status_code == 201
    assert payment_count(database_url) == 2

    paid = first.get_json()["id"]
    capture = post(client, f"{API}/payments/{paid}/capture", isp_a, {}, idem="deliver-1")
    replay = post(client, f"{API}/payments/{paid}/capture", isp_a, {}, idem="deliver-1")
    assert capture.status_code == replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == capture.get_json()
    second = post(client, f"{API}/payments/{paid}/capture", isp_a, {}, idem="deliver-2")
    assert_problem(second, 409, "VPOP-409-PAYMENT-STATE")


# --- the payment's life ---------------------------------------------------------------------


def test_authorise_capture_part_and_refund_twice(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    isp_a, noc = tokens["isp-a"], bearer(tokens["noc"])
    paid = authorise(client, isp_a, amount=1200)
    assert paid["status"] == "AUTHORISED" and paid["subscriber"] == "sub1"
    assert paid["payee"] == "isp-a" and paid["amount_minor"] == 1200
    limit = client.get(f"{API}/subscribers/sub1/spending-limit", headers=noc).get_json()
    assert (limit["limit_minor"], limit["held_minor"], limit["available_minor"]) == (
        5000, 1200, 3800,
    )  # fmt: skip

    path = f"{API}/payments/{paid['id']}"
    captured = post(client, f"{path}/capture", isp_a, {"amount_minor": 1000}, idem=key())
    assert captured.status_code == 200, captured.get_data(as_text=True)
    assert captured.get_json()["status"] == "CAPTURED"
    assert captured.get_json()["captured_minor"] == 1000
    limit = client.get(f"{API}/subscribers/sub1/spending-limit", headers=noc).get_json()
    assert (limit["held_minor"], limit["spent_minor"], limit["available_minor"]) == (0, 1000, 4000)

    refund = post(client, f"{path}/refunds", isp_a, {"amount_minor": 300}, idem=key())
    assert refund.status_code == 200 and refund.get_json()["refunded_minor"] == 300
    too_much = post(client, f"{path}/refunds", isp_a, {"amount_minor": 701}, idem=key())
    assert_problem(too_much, 422, "VPOP-422-AMOUNT")
    rest = post(client, f"{path}/refunds", isp_a, {"amount_minor": 700, "reason": "broken"},
                idem=key())  # fmt: skip
    assert rest.get_json()["status"] == "REFUNDED"
    history = client.get(path, headers=bearer(isp_a)).get_json()["events"]
    assert [(e["kind"], e["amount_minor"]) for e in history] == [
        ("authorised", 1200), ("captured", 1000), ("released", 200), ("refunded", 300),
        ("refunded", 700),
    ]  # fmt: skip
    assert_problem(post(client, f"{path}/void", isp_a, idem=key()), 409, "VPOP-409-PAYMENT-STATE")


def test_a_capture_above_the_authorised_amount_and_a_void(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    isp_a = tokens["isp-a"]
    paid = authorise(client, isp_a, amount=500)
    path = f"{API}/payments/{paid['id']}"
    over = post(client, f"{path}/capture", isp_a, {"amount_minor": 501}, idem=key())
    assert_problem(over, 422, "VPOP-422-AMOUNT")
    assert_problem(
        post(client, f"{path}/void", isp_a, {"why": 1}, idem=key()), 422, "VPOP-400-UNKNOWN-FIELD"
    )
    voided = post(client, f"{path}/void", isp_a, idem=key())
    assert voided.status_code == 200 and voided.get_json()["status"] == "VOIDED"
    late = post(client, f"{path}/capture", isp_a, {}, idem=key())
    assert_problem(late, 409, "VPOP-409-PAYMENT-STATE")


def test_over_the_limit_is_declined_and_holds_nothing(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    noc = bearer(tokens["noc"])
    changed = client.put(
        f"{API}/subscribers/sub2/spending-limit", json={"limit_minor": 1000}, headers=noc
    )
    assert changed.status_code == 200 and changed.get_json()["limit_minor"] == 1000
    declined = authorise(client, tokens["isp-b"], subscriber="sub2", amount=1001)
    assert (declined["status"], declined["decline_reason"]) == ("DECLINED", "limit")
    unknown = authorise(client, tokens["isp-b"], subscriber=None, amount=10,
                        calling_number="+4930999999")  # fmt: skip
    assert (unknown["status"], unknown["decline_reason"]) == ("DECLINED", "unknown_line")
    spending = client.get(f"{API}/subscribers/sub2/spending-limit", headers=noc).get_json()
    assert (spending["held_minor"], spending["available_minor"]) == (0, 1000)
    assert authorise(client, tokens["isp-b"], subscriber="sub2", amount=1000)["status"] == (
        "AUTHORISED"
    )


def test_spending_limits_and_bills_are_for_operators(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    for role in ("portal", "isp-a"):
        headers = bearer(tokens[role])
        assert_problem(client.get(f"{API}/subscribers/sub1/spending-limit", headers=headers), 403)
        put = client.put(
            f"{API}/subscribers/sub1/spending-limit", json={"limit_minor": 1}, headers=headers
        )
        assert_problem(put, 403)
        assert_problem(client.get(f"{API}/subscribers/sub1/bill", headers=headers), 403)
    noc = bearer(tokens["noc"])
    assert_problem(
        client.get(f"{API}/subscribers/nobody/spending-limit", headers=noc),
        404,
        "VPOP-404-SUBSCRIBER",
    )
    bad = client.put(
        f"{API}/subscribers/sub1/spending-limit", json={"limit_minor": -1}, headers=noc
    )
    assert_problem(bad, 422)


def test_the_running_bill_has_the_purchases(client: FlaskClient, tokens: dict[str, str]) -> None:
    isp_a = tokens["isp-a"]
    paid = authorise(client, isp_a, amount=800)
    post(client, f"{API}/payments/{paid['id']}/capture", isp_a, {}, idem=key())
    bill = client.get(f"{API}/subscribers/sub1/bill", headers=bearer(tokens["admin"]))
    assert bill.status_code == 200, bill.get_data(as_text=True)
    assert bill.get_json()["purchases_minor"] == 800
    assert bill.get_json()["total_minor"] >= 800
    assert_problem(
        client.get(f"{API}/subscribers/sub1/bill?period=2026-13", headers=bearer(tokens["noc"])),
        422,
        "VPOP-400-PERIOD",
    )


# --- tenancy --------------------------------------------------------------------------------


def test_another_payees_payment_is_not_there(
    client: FlaskClient, merchants: dict[str, str]
) -> None:
    tokens = merchants
    of_a = authorise(client, tokens["isp-a"], subscriber="sub1")
    of_shop_a = authorise(client, tokens["shop-a"], subscriber="sub1", amount=300)
    of_b = authorise(client, tokens["isp-b"], subscriber="sub2")
    assert of_shop_a["payee"] == "shop-a" and of_shop_a["isp"] == "isp-a"

    def ids(role: str, query: str = "") -> set[int]:
        response = client.get(f"{API}/payments{query}", headers=bearer(tokens[role]))
        assert response.status_code == 200, response.get_data(as_text=True)
        return {payment["id"] for payment in response.get_json()["payments"]}

    assert ids("isp-a") == {of_a["id"], of_shop_a["id"]}
    assert ids("isp-b") == {of_b["id"]}
    assert ids("shop-a") == {of_shop_a["id"]}
    assert ids("shop-b") == set()
    assert ids("noc") == ids("admin") == {of_a["id"], of_shop_a["id"], of_b["id"]}
    assert ids("isp-b", "?payee=isp-a") == set()
    assert ids("isp-a", "?payee=shop-a") == {of_shop_a["id"]}
    assert ids("noc", "?subscriber=sub2") == {of_b["id"]}
    assert_problem(client.get(f"{API}/payments?payee=isp-a", headers=bearer(tokens["shop-a"])),
                   403)  # fmt: skip
    assert_problem(client.get(f"{API}/payments", headers=bearer(tokens["portal"])), 403)

    unknown = client.get(f"{API}/payments/999999", headers=bearer(tokens["isp-b"]))
    unknown_body = assert_problem(unknown, 404, "VPOP-404-PAYMENT")
    readers = {
        of_a["id"]: ("isp-a", "noc", "admin"),
        of_shop_a["id"]: ("isp-a", "shop-a", "noc", "admin"),
        of_b["id"]: ("isp-b", "noc", "admin"),
    }
    for payment_id, allowed in readers.items():
        for role in ("portal", "isp-a", "isp-b", "shop-a", "shop-b", "noc", "admin"):
            response = client.get(f"{API}/payments/{payment_id}", headers=bearer(tokens[role]))
            if role in allowed:
                assert response.status_code == 200, (role, payment_id)
            else:
                body = assert_problem(response, 404, "VPOP-404-PAYMENT")
                assert body["detail"] == unknown_body["detail"].replace("999999", str(payment_id))


def test_only_the_payments_own_payee_captures_voids_and_refunds(
    client: FlaskClient, merchants: dict[str, str]
) -> None:
    tokens = merchants
    of_shop_a = authorise(client, tokens["shop-a"], subscriber="sub1", amount=300)
    path = f"{API}/payments/{of_shop_a['id']}"
    # the merchant's ISP reads it but does not act for the merchant; nobody else may either
    for role in ("isp-a", "isp-b", "shop-b", "noc", "admin", "portal"):
        for action, body in (("capture", {}), ("void", None), ("refunds", {"amount_minor": 1})):
            response = post(client, f"{path}/{action}", tokens[role], body, idem=key())
            assert_problem(response, 404, "VPOP-404-PAYMENT")
    for role in ("noc", "admin", "portal"):
        response = post(client, f"{API}/payments", tokens[role], pay_body(), idem=key())
        assert_problem(response, 403)
    done = post(client, f"{path}/capture", tokens["shop-a"], {}, idem=key())
    assert done.status_code == 200 and done.get_json()["status"] == "CAPTURED"


def _public_paths() -> set[tuple[str, str]]:
    """(method, OpenAPI path) of the operations that need no token."""
    return {
        (method.upper(), path)
        for path, item in openapi.document()["paths"].items()
        for method, operation in item.items()
        if operation["security"] == []
    }


# the routes a merchant token may call: the payments API, its settlements and its payee
MERCHANT_ROUTES = re.compile(rf"^{API}/(payments|settlements)(/|$)|^GET {API}/payees$")


def test_a_merchant_token_is_refused_on_every_other_route(
    app: Flask, client: FlaskClient, merchants: dict[str, str]
) -> None:
    headers = bearer(merchants["shop-a"])
    public = _public_paths()
    called = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(f"{API}/"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            if (method, path) in public:
                continue
            if MERCHANT_ROUTES.match(rule.rule) or MERCHANT_ROUTES.match(f"{method} {rule.rule}"):
                continue
            url = re.sub(r"<int:[a-z_]+>", "1", rule.rule)
            url = re.sub(r"<[a-z_]+>", "sub1", url)
            response = client.open(url, method=method, json={}, headers=headers)
            assert_problem(response, 403, "VPOP-403-MERCHANT")
            called += 1
    assert called >= 20, "the walk found too few routes: is the prefix right?"


# --- payees ---------------------------------------------------------------------------------


def test_admins_register_and_change_merchants_isps_see_their_own(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    admin = bearer(tokens["admin"])
    body = {"id": "shop-b", "isp": "isp-b", "name": "Beta Shop", "fee_bp": 150,
            "iban": "DE89 3704 0044 0532 0130 00"}  # fmt: skip
    for role in ("noc", "isp-b", "portal"):
        assert_problem(client.post(f"{API}/payees", json=body, headers=bearer(tokens[role])), 403)
    created = client.post(f"{API}/payees", json=body, headers=admin)
    assert created.status_code == 201, created.get_data(as_text=True)
    view = created.get_json()
    assert (view["kind"], view["isp"]) == ("merchant", "isp-b")
    assert view["iban"] == "DE89370400440532013000"
    assert_problem(client.post(f"{API}/payees", json={**body, "id": "isp-a"}, headers=admin), 409)
    bad_iban = {**body, "id": "shop-x", "iban": "DE00 1234"}
    assert_problem(client.post(f"{API}/payees", json=bad_iban, headers=admin), 422,
                   "VPOP-422-BANK")  # fmt: skip

    changed = client.patch(f"{API}/payees/shop-b", json={"fee_bp": 90}, headers=admin)
    assert changed.status_code == 200 and changed.get_json()["fee_bp"] == 90
    assert_problem(client.patch(f"{API}/payees/shop-b", json={}, headers=admin), 422,
                   "VPOP-400-MISSING")  # fmt: skip
    assert_problem(client.patch(f"{API}/payees/nobody", json={"fee_bp": 1}, headers=admin), 404,
                   "VPOP-404-PAYEE")  # fmt: skip
    assert_problem(
        client.patch(f"{API}/payees/shop-b", json={"fee_bp": 1}, headers=bearer(tokens["noc"])),
        403,
    )

    def listed(role: str, query: str = "") -> list[str]:
        response = client.get(f"{API}/payees{query}", headers=bearer(tokens[role]))
        assert response.status_code == 200, response.get_data(as_text=True)
        return [payee["id"] for payee in response.get_json()["payees"]]

    assert listed("isp-b") == ["shop-b"] and listed("isp-a") == []
    assert listed("noc") == ["shop-b"] and listed("noc", "?isp=isp-a") == []
    assert_problem(client.get(f"{API}/payees?isp=isp-b", headers=bearer(tokens["isp-a"])), 403)
    assert_problem(client.get(f"{API}/payees", headers=bearer(tokens["portal"])), 403)


# --- concurrency ----------------------------------------------------------------------------


def _twenty_captures(app: Flask, token: str, database_url: str) -> None:
    """20 threads capture one payment at once, each with its own key: exactly one 200."""
    paid = authorise(app.test_client(), token, amount=900)
    start = threading.Barrier(20)
    statuses: list[int] = []
    bodies: list[dict[str, Any]] = []
    lock = threading.Lock()

    def capture(n: int) -> None:
        client = app.test_client()
        start.wait(timeout=30)
        response = post(client, f"{API}/payments/{paid['id']}/capture", token, {},
                        idem=f"capture-thread-{n}")  # fmt: skip
        with lock:
            statuses.append(response.status_code)
            bodies.append(response.get_json(force=True))

    threads = [threading.Thread(target=capture, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(statuses) == [200] + [409] * 19, statuses
    assert {body["code"] for body in bodies if "code" in body} == {"VPOP-409-PAYMENT-STATE"}
    with session_scope(database_url) as session:
        kinds = session.scalars(
            select(PaymentEvent.kind).where(PaymentEvent.payment_id == paid["id"])
        ).all()
        assert sorted(kinds) == ["authorised", "captured"]
        assert session.get(Payment, paid["id"]).captured_minor == 900  # type: ignore[union-attr]


def test_twenty_threads_capture_one_payment_once(
    app: Flask, tokens: dict[str, str], database_url: str
) -> None:
    _twenty_captures(app, tokens["isp-a"], database_url)


@pytest.mark.skipif(not PG_BIN.exists(), reason="PostgreSQL 15 is not installed")
def test_twenty_threads_capture_one_payment_once_on_postgresql() -> None:
    with postgres_cluster("payments-api") as url:
        upgrade(url)
        with session_scope(url) as session:
            session.add(Isp(id="isp-a", name="Alpha Net"))
            session.add(Subscriber(id="sub1", name="Subscriber 1"))
            session.flush()
            session.add(Line(subscriber_id="sub1", router="rc1", interface="sub1",
                             prefix="192.0.2.6/32"))  # fmt: skip
            token = create_token(session, "isp", "isp-a", name="test isp-a")
        app = create_app({"TESTING": True, "DATABASE_URL": url})
        _twenty_captures(app, token, url)
