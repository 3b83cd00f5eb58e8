"""Every route answers what the OpenAPI document says, and the checker that says so can fail.

The autouse ``conformance`` fixture (``conftest.py``) checks every response of every test in
this directory; here, one test drives each documented operation to its success status, and
others prove the checker refuses a response the document does not describe.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.webhooks.conformance import PROBLEM, Conformance
from tests.webhooks.helpers import bearer, post_signed
from vpop.core.db import session_scope
from vpop.core.time import utcnow
from vpop.leasing.models import UtilisationEvent, UtilisationSample
from vpop.monitoring.models import QosSample
from vpop.selection.models import Run
from vpop.selection.service import order_view
from webhooks.api import selection as selection_api

# (method, OpenAPI path, success status) of every operation the test below drives
SUCCESSES = {
    ("post", "/api/v1/selections", 202),
    ("get", "/api/v1/orders/{order_id}", 200),
    ("get", "/api/v1/subscribers/{subscriber_id}", 200),
    ("get", "/api/v1/runs", 200),
    ("get", "/api/v1/runs/{run_id}", 200),
    ("get", "/api/v1/isps", 200),
    ("get", "/api/v1/openapi.json", 200),
    ("get", "/healthz", 200),
    ("get", "/api/v1/isps/{isp_id}/qos", 200),
    ("get", "/api/v1/leases", 200),
    ("post", "/api/v1/leases", 201),
    ("get", "/api/v1/leases/{lease_id}", 200),
    ("post", "/api/v1/leases/{lease_id}/end", 202),
    ("get", "/api/v1/leases/{lease_id}/utilisation", 200),
    ("get", "/api/v1/leases/{lease_id}/versions", 200),
    ("post", "/api/v1/leases/{lease_id}/versions", 201),
    ("get", "/api/v1/events", 200),
    ("get", "/api/v1/radius/sessions", 200),
    ("get", "/api/v1/aaa/decisions", 200),
    ("get", "/api/v1/aaa/rules", 200),
    ("post", "/api/v1/aaa/rules", 201),
    ("delete", "/api/v1/aaa/rules/{rule_id}", 200),
    ("get", "/api/v1/radius/clients", 200),
    ("get", "/api/v1/reports/usage", 200),
    ("get", "/api/v1/sessions", 200),
    ("post", "/api/v1/payments", 201),
    ("get", "/api/v1/payments", 200),
    ("get", "/api/v1/payments/{payment_id}", 200),
    ("post", "/api/v1/payments/{payment_id}/capture", 200),
    ("post", "/api/v1/payments/{payment_id}/void", 200),
    ("post", "/api/v1/payments/{payment_id}/refunds", 200),
    ("get", "/api/v1/subscribers/{subscriber_id}/spending-limit", 200),
    ("put", "/api/v1/subscribers/{subscriber_id}/spending-limit", 200),
    ("get", "/api/v1/subscribers/{subscriber_id}/bill", 200),
    ("get", "/api/v1/payees", 200),
    ("post", "/api/v1/payees", 201),
    ("patch", "/api/v1/payees/{payee_id}", 200),
    ("get", "/api/v1/settlements", 200),
    ("get", "/api/v1/settlements/{settlement_id}", 200),
    ("get", "/api/v1/settlements/{settlement_id}/statement", 200),
    ("post", "/api/v1/settlements/runs", 200),
}


def _documented_successes(document: dict[str, Any]) -> set[tuple[str, str, int]]:
    """(method, path, status) of every success the document describes."""
    return {
        (method, path, int(status))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
        if int(status) < 400
    }


def _seed(url: str) -> int:
    """A run, a QoS sample; return the run's id."""
    now = utcnow()
    with session_scope(url) as session:
        run = Run(
            router="rc1",
            kind="selection",
            trigger="orders 1",
            requester="webhook",
            status="SUCCESS",
            diff="+ rc1\n",
            result={"rc1": {"failed": False}},
            timings={"total": 0.4},
            started_at=now,
            finished_at=now,
        )
        session.add(run)
        session.add(QosSample(isp_id="isp-b", router="rc1", at=now, latency_ms=9.5, sent=5))
        session.flush()
        return run.id


def test_every_operation_answers_its_success_as_documented(
    client: FlaskClient,
    tokens: dict[str, str],
    database_url: str,
    inventory: Path,
    conformance: Conformance,
) -> None:
    assert _documented_successes(conformance.document) == SUCCESSES
    admin = bearer(tokens["admin"])
    run_id = _seed(database_url)
    answered: set[int] = set()

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = getattr(client, method)(path, **kwargs)
        answered.add(response.status_code)
        assert response.status_code < 300, response.get_data(as_text=True)
        return response.get_json()

    order = post_signed(client, {"subscriber": "sub1", "isp": "isp-b"}).get_json()["order"]
    call("get", f"/api/v1/orders/{order}", headers=admin)
    call("get", "/api/v1/subscribers/sub1", headers=admin)
    call("get", "/api/v1/runs", headers=admin)
    call("get", f"/api/v1/runs/{run_id}", headers=admin)
    call("get", "/api/v1/isps")
    call("get", "/api/v1/openapi.json")
    call("get", "/healthz")
    call("get", "/api/v1/isps/isp-b/qos", headers=admin)
    lease = call(
        "post",
        "/api/v1/leases",
        headers=admin,
        json={"isp": "isp-b", "router": "rc1", "committed_mbps": 100, "price_minor": 10**12},
    )["lease"]
    now = utcnow()
    with session_scope(database_url) as session:
        session.add(UtilisationSample(lease_id=lease, at=now, rate_mbps=5.0, utilisation_pct=5.0))
        session.add(
            UtilisationEvent(
                lease_id=lease,
                isp_id="isp-b",
                kind="under",
                opened_at=now - timedelta(minutes=5),
                extreme_pct=5.0,
            )
        )
    call("get", "/api/v1/leases", headers=admin)
    call("get", f"/api/v1/leases/{lease}", headers=admin)
    utilisation = call("get", f"/api/v1/leases/{lease}/utilisation", headers=admin)
    assert utilisation["samples"] and utilisation["open_events"]
    call("get", "/api/v1/events", headers=admin)
    call("post", f"/api/v1/leases/{lease}/versions", headers=admin, json={"committed_mbps": 200})
    assert len(call("get", f"/api/v1/leases/{lease}/versions", headers=admin)["versions"]) == 2
    call("post", f"/api/v1/leases/{lease}/end", headers=admin)
    call("get", "/api/v1/radius/sessions", headers=admin)
    call("get", "/api/v1/aaa/decisions", headers=admin)
    rule = call(
        "post",
        "/api/v1/aaa/rules",
        headers=admin,
        json={"kind": "calling_prefix", "match": "+3120555", "isp": "isp-c"},
    )["id"]
    call("get", "/api/v1/aaa/rules", headers=admin)
    call("delete", f"/api/v1/aaa/rules/{rule}", headers=admin)
    call("get", "/api/v1/radius/clients", headers=admin)
    call("get", "/api/v1/reports/usage?by=isp&from=2026-01-01&to=2026-01-02", headers=admin)
    call("get", "/api/v1/sessions", headers=admin)
    _drive_payments(call, tokens)
    assert conformance.violations == []
    assert {seen for seen in conformance.seen if seen[2] < 400} == SUCCESSES


def _drive_payments(call: Callable[..., Any], tokens: dict[str, str]) -> None:
    """Each payments and settlements operation to its success (settling the current month:
    an interim settlement of the capture just made)."""
    admin, isp_b = bearer(tokens["admin"]), bearer(tokens["isp-b"])
    body = {"subscriber": "sub2", "amount_minor": 500, "currency": "EUR", "item": "a film",
            "merchant_reference": "order-1"}  # fmt: skip
    paid = call("post", "/api/v1/payments", json=body, headers={**isp_b, "Idempotency-Key": "p1"})
    other = call("post", "/api/v1/payments", json=body, headers={**isp_b, "Idempotency-Key": "p2"})
    path = f"/api/v1/payments/{paid['id']}"
    call("post", f"{path}/capture", json={}, headers={**isp_b, "Idempotency-Key": "c1"})
    call("post", f"{path}/refunds", json={"amount_minor": 100},
         headers={**isp_b, "Idempotency-Key": "r1"})  # fmt: skip
    call("post", f"/api/v1/payments/{other['id']}/void", headers={**isp_b, "Idempotency-Key": "v1"})
    assert len(call("get", path, headers=isp_b)["events"]) == 3
    assert len(call("get", "/api/v1/payments", headers=admin)["payments"]) == 2
    call("get", "/api/v1/subscribers/sub2/spending-limit", headers=admin)
    call("put", "/api/v1/subscribers/sub2/spending-limit", json={"limit_minor": 9000},
         headers=admin)  # fmt: skip
    assert call("get", "/api/v1/subscribers/sub2/bill", headers=admin)["purchases_minor"] == 500
    call("post", "/api/v1/payees", json={"id": "shop-b", "isp": "isp-b", "name": "Beta Shop"},
         headers=admin)  # fmt: skip
    call("patch", "/api/v1/payees/shop-b", json={"fee_bp": 100}, headers=admin)
    assert {p["id"] for p in call("get", "/api/v1/payees", headers=admin)["payees"]} == {
        "isp-b", "shop-b",
    }  # fmt: skip
    period = utcnow().strftime("%Y-%m")
    run = call("post", "/api/v1/settlements/runs", json={"period": period}, headers=admin)
    settled = run["settlements"][0]["id"]
    assert call("get", "/api/v1/settlements", headers=admin)["settlements"] == run["settlements"]
    call("get", f"/api/v1/settlements/{settled}", headers=admin)
    call("get", f"/api/v1/settlements/{settled}/statement", headers=admin)
    call("get", f"/api/v1/settlements/{settled}/statement?format=csv", headers=admin)
    call("get", f"/api/v1/settlements/{settled}/statement?format=html", headers=admin)


def test_a_view_missing_a_field_is_caught(
    client: FlaskClient,
    admin_headers: dict[str, str],
    conformance: Conformance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = post_signed(client, {"subscriber": "sub1", "isp": "isp-b"}).get_json()["order"]

    def without_final(row: Any, **kwargs: Any) -> dict[str, Any]:
        view = order_view(row, **kwargs)
        del view["final"]
        return view

    monkeypatch.setattr(selection_api, "order_view", without_final)
    assert client.get(f"/api/v1/orders/{order}", headers=admin_headers).status_code == 200
    assert conformance.violations == [
        "GET /api/v1/orders/{order_id} 200: 'final' is a required property at $"
    ]
    conformance.violations.clear()  # seen: the test passes


# a whole /healthz body, as the route answers when everything holds
HEALTHY = {
    "status": "ok",
    "reasons": [],
    "queue": {"reachable": True},
    "stuck_locks": [],
    "failing_routers": [],
    "oldest_waiting_order_seconds": None,
}


@pytest.mark.parametrize(
    ("method", "rule", "status", "mimetype", "body", "found"),
    [
        ("GET", "/healthz", 200, "application/json", HEALTHY, None),
        ("GET", "/healthz", 418, "application/json", HEALTHY, "not documented"),
        ("GET", "/healthz", 200, "text/html", HEALTHY, "content type"),
        ("GET", "/healthz", 200, "application/json", {**HEALTHY, "status": "up"}, "'up' is not"),
        ("GET", "/healthz", 200, "application/json", {**HEALTHY, "x": 1}, "Additional"),
        ("DELETE", "/healthz", 200, "application/json", HEALTHY, "not in the document"),
        ("GET", "/api/v1/isps", 200, "application/json", {"isps": [{"id": "isp-a"}]}, "required"),
        ("GET", "/api/v1/isps", 500, "application/json", {"status": 500}, "content type"),
        ("GET", "/api/v1/isps", 500, PROBLEM, {"status": 500}, "required property"),
        ("GET", None, 404, PROBLEM, {"title": "Not Found"}, "required property"),
    ],
    ids=[
        "conforms",
        "undocumented-status",
        "wrong-content-type",
        "wrong-value",
        "unknown-key",
        "unknown-method",
        "nested-missing-field",
        "problem-as-json",
        "short-problem",
        "unrouted-short-problem",
    ],
)
def test_the_checker_refuses_what_the_document_does_not_say(
    conformance: Conformance,
    method: str,
    rule: str | None,
    status: int,
    mimetype: str,
    body: Any,
    found: str | None,
) -> None:
    problems = conformance.check(method, rule, status, mimetype, json.dumps(body).encode())
    if found is None:
        assert problems == []
    else:
        assert problems and found in problems[0], problems
