"""The authorisation matrix: every route of the API, /metrics, /healthz, /radius/v1 × every role.

:data:`MATRIX` is the table the docs (docs/tenancy.md) describe: per route (and, for routes
whose answer depends on whose object it is, per object), the status each role gets. The
guard test walks ``app.url_map`` and fails when a route has no row, so a new route cannot be
added without deciding who may call it. Every 2xx body an ISP token receives is then
searched for the other ISP's data: subscriber ids, calling numbers, circuit and access
ids, and the ids of its orders, leases and events.

The world (:func:`world`): sub1 (rc1) uses isp-a, sub2 (rc2) uses isp-b, sub3 (rc1) uses
the default; order "a" is isp-a's for sub1, finished by a run whose diff also names sub3;
order "b" is isp-b's for sub2; order "p" the portal token's for sub3 to isp-b (so isp-b may
read sub3); lease "a" is isp-a's
on rc1, lease "b" isp-b's on rc2, each with an open event; sub1 has a RADIUS session and an
accepted decision for isp-a, sub2 for isp-b (and a rejected one), and one rule sends
+3120555 to isp-c. Payments: "payment_a" is isp-a's for sub1 and "payment_b" isp-b's for sub2,
both captured in March 2025 and settled ("settlement_a", "settlement_b"); "auth_a" and
"auth_b" are authorised now, not captured.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.dbtemplate import migrated_sqlite
from tests.webhooks.conftest import make_tokens, seed
from tests.webhooks.helpers import bearer
from vpop.aaa.models import AaaDecision, AaaRule, RadiusClient, RadiusSession
from vpop.billing.service import PaymentBody, authorise, capture, run_settlement
from vpop.catalogue.models import Line, Selection
from vpop.core.db import dispose_engines, session_scope
from vpop.core.time import utcnow
from vpop.leasing.models import Lease, UtilisationEvent
from vpop.monitoring.models import QosSample
from vpop.selection.models import Order, OrderStatus, Run
from vpop.selection.service import Caller

ROLES = ("none", "portal", "isp-a", "isp-b", "noc", "admin")
PREFIXES = ("/api/v1/", "/metrics", "/healthz", "/radius/v1/")

DIFF = """--- pbr (running)
+++ pbr (intended)
@@ -1,10 +1,10 @@
 pbr-map vpop-sub1 seq 10
  match src-ip 192.0.2.6/32
- set nexthop-group vpop-isp-b
+ set nexthop-group vpop-isp-a
 exit
 !
 pbr-map vpop-sub3 seq 10
  match src-ip 192.0.2.14/32
  set nexthop-group vpop-isp-b
 exit
 !
"""


@dataclass(frozen=True)
class Cell:
    """One row of the matrix: a request and the status per role (in :data:`ROLES` order)."""

    method: str
    rule: str
    path: str  # with {order_a}-style placeholders for the world's ids
    statuses: tuple[int, int, int, int, int, int]
    body: str | None = None  # "selection", "lease", "payment"...: built per role
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


API = "/api/v1"
RADIUS = "/radius/v1"
# fmt: off
#                                                                 none portal isp-a isp-b noc admin
MATRIX = (
    Cell("GET", "/healthz", "/healthz",                             (200, 200, 200, 200, 200, 200)),
    Cell("GET", "/metrics", "/metrics",                             (401, 403, 403, 403, 200, 200)),
    Cell("GET", f"{API}/openapi.json", f"{API}/openapi.json",       (200, 200, 200, 200, 200, 200)),
    Cell("GET", f"{API}/isps", f"{API}/isps",                       (200, 200, 200, 200, 200, 200)),
    Cell("GET", f"{API}/isps/<isp_id>/qos", f"{API}/isps/isp-a/qos",
         (401, 200, 200, 403, 200, 200)),
    Cell("GET", f"{API}/isps/<isp_id>/qos", f"{API}/isps/isp-b/qos",
         (401, 200, 403, 200, 200, 200)),
    Cell("POST", f"{API}/selections", f"{API}/selections",          (401, 202, 202, 202, 202, 202),
         body="selection", note="isp-b asks for isp-a's sub1: a pending order"),
    Cell("GET", f"{API}/orders/<int:order_id>", f"{API}/orders/{{order_a}}",
         (401, 404, 200, 404, 200, 200)),
    Cell("GET", f"{API}/orders/<int:order_id>", f"{API}/orders/{{order_b}}",
         (401, 404, 404, 200, 200, 200)),
    Cell("GET", f"{API}/orders/<int:order_id>", f"{API}/orders/{{order_p}}",
         (401, 200, 404, 404, 200, 200)),
    Cell("GET", f"{API}/orders/<int:order_id>", f"{API}/orders/999999",
         (401, 404, 404, 404, 404, 404)),
    Cell("GET", f"{API}/subscribers/<subscriber_id>", f"{API}/subscribers/sub1",
         (401, 403, 200, 404, 200, 200)),
    Cell("GET", f"{API}/subscribers/<subscriber_id>", f"{API}/subscribers/sub2",
         (401, 403, 404, 200, 200, 200)),
    Cell("GET", f"{API}/subscribers/<subscriber_id>", f"{API}/subscribers/sub3",
         (401, 403, 404, 200, 200, 200), note="sub3 chose isp-b on the portal: order p"),
    Cell("GET", f"{API}/subscribers/<subscriber_id>", f"{API}/subscribers/nobody",
         (401, 403, 404, 404, 404, 404)),
    Cell("GET", f"{API}/runs", f"{API}/runs",                       (401, 403, 403, 403, 200, 200)),
    Cell("GET", f"{API}/runs/<int:run_id>", f"{API}/runs/{{run}}",  (401, 403, 403, 403, 200, 200)),
    Cell("GET", f"{API}/runs/<int:run_id>", f"{API}/runs/999999",   (401, 403, 403, 403, 404, 404)),
    Cell("GET", f"{API}/leases", f"{API}/leases",                   (401, 403, 200, 200, 200, 200)),
    Cell("POST", f"{API}/leases", f"{API}/leases",                  (401, 403, 403, 403, 201, 201),
         body="lease"),
    Cell("GET", f"{API}/leases/<int:lease_id>", f"{API}/leases/{{lease_a}}",
         (401, 403, 200, 404, 200, 200)),
    Cell("GET", f"{API}/leases/<int:lease_id>", f"{API}/leases/{{lease_b}}",
         (401, 403, 404, 200, 200, 200)),
    Cell("GET", f"{API}/leases/<int:lease_id>", f"{API}/leases/999999",
         (401, 403, 404, 404, 404, 404)),
    Cell("POST", f"{API}/leases/<int:lease_id>/end", f"{API}/leases/{{lease_a}}/end",
         (401, 403, 403, 403, 202, 202)),
    Cell("GET", f"{API}/leases/<int:lease_id>/utilisation", f"{API}/leases/{{lease_a}}/utilisation",
         (401, 403, 200, 404, 200, 200)),
    Cell("GET", f"{API}/leases/<int:lease_id>/utilisation", f"{API}/leases/{{lease_b}}/utilisation",
         (401, 403, 404, 200, 200, 200)),
    Cell("GET", f"{API}/leases/<int:lease_id>/versions", f"{API}/leases/{{lease_a}}/versions",
         (401, 403, 200, 404, 200, 200)),
    Cell("GET", f"{API}/leases/<int:lease_id>/versions", f"{API}/leases/{{lease_b}}/versions",
         (401, 403, 404, 200, 200, 200)),
    Cell("GET", f"{API}/leases/<int:lease_id>/versions", f"{API}/leases/999999/versions",
         (401, 403, 404, 404, 404, 404)),
    Cell("POST", f"{API}/leases/<int:lease_id>/versions", f"{API}/leases/{{lease_a}}/versions",
         (401, 403, 403, 403, 201, 201), body="lease-change"),
    Cell("POST", f"{API}/leases/<int:lease_id>/versions", f"{API}/leases/999999/versions",
         (401, 403, 403, 403, 404, 404), body="lease-change"),
    Cell("GET", f"{API}/events", f"{API}/events",                   (401, 403, 200, 200, 200, 200)),
    Cell("GET", f"{API}/radius/sessions", f"{API}/radius/sessions", (401, 403, 200, 200, 200, 200)),
    Cell("GET", f"{API}/radius/sessions", f"{API}/radius/sessions?isp=isp-b",
         (401, 403, 403, 200, 200, 200)),
    Cell("GET", f"{API}/aaa/decisions", f"{API}/aaa/decisions",     (401, 403, 200, 200, 200, 200)),
    Cell("GET", f"{API}/aaa/rules", f"{API}/aaa/rules",             (401, 403, 403, 403, 200, 200)),
    Cell("POST", f"{API}/aaa/rules", f"{API}/aaa/rules",            (401, 403, 403, 403, 201, 201),
         body="rule"),
    Cell("DELETE", f"{API}/aaa/rules/<int:rule_id>", f"{API}/aaa/rules/{{rule}}",
         (401, 403, 403, 403, 200, 200)),
    Cell("DELETE", f"{API}/aaa/rules/<int:rule_id>", f"{API}/aaa/rules/999999",
         (401, 403, 403, 403, 404, 404)),
    Cell("GET", f"{API}/radius/clients", f"{API}/radius/clients",   (401, 403, 403, 403, 200, 200)),
    Cell("GET", f"{API}/reports/usage",
         f"{API}/reports/usage?by=subscriber&from=2026-01-01&to=2026-01-02",
         (401, 403, 200, 200, 200, 200)),
    Cell("GET", f"{API}/reports/usage",
         f"{API}/reports/usage?by=isp&from=2026-01-01&to=2026-01-02&isp=isp-b",
         (401, 403, 403, 200, 200, 200)),
    Cell("GET", f"{API}/sessions", f"{API}/sessions",               (401, 403, 200, 200, 200, 200)),
    Cell("GET", f"{API}/sessions", f"{API}/sessions?isp=isp-b",     (401, 403, 403, 200, 200, 200)),
    Cell("POST", f"{API}/payments", f"{API}/payments",              (401, 403, 201, 201, 403, 403),
         body="payment", note="isp-a pays for sub1, isp-b for sub2"),
    Cell("GET", f"{API}/payments", f"{API}/payments",               (401, 403, 200, 200, 200, 200)),
    Cell("GET", f"{API}/payments", f"{API}/payments?payee=isp-b",   (401, 403, 200, 200, 200, 200),
         note="isp-a's list is filtered to its own: empty"),
    Cell("GET", f"{API}/payments/<int:payment_id>", f"{API}/payments/{{payment_a}}",
         (401, 404, 200, 404, 200, 200)),
    Cell("GET", f"{API}/payments/<int:payment_id>", f"{API}/payments/{{payment_b}}",
         (401, 404, 404, 200, 200, 200)),
    Cell("GET", f"{API}/payments/<int:payment_id>", f"{API}/payments/999999",
         (401, 404, 404, 404, 404, 404)),
    Cell("POST", f"{API}/payments/<int:payment_id>/capture", f"{API}/payments/{{auth_a}}/capture",
         (401, 404, 200, 404, 404, 404), body="empty"),
    Cell("POST", f"{API}/payments/<int:payment_id>/capture", f"{API}/payments/{{auth_b}}/capture",
         (401, 404, 404, 200, 404, 404), body="empty"),
    Cell("POST", f"{API}/payments/<int:payment_id>/void", f"{API}/payments/{{auth_a}}/void",
         (401, 404, 200, 404, 404, 404)),
    Cell("POST", f"{API}/payments/<int:payment_id>/refunds",
         f"{API}/payments/{{payment_a}}/refunds", (401, 404, 200, 404, 404, 404), body="refund"),
    Cell("POST", f"{API}/payments/<int:payment_id>/refunds",
         f"{API}/payments/{{payment_b}}/refunds", (401, 404, 404, 200, 404, 404), body="refund"),
    Cell("GET", f"{API}/subscribers/<subscriber_id>/spending-limit",
         f"{API}/subscribers/sub1/spending-limit", (401, 403, 403, 403, 200, 200)),
    Cell("PUT", f"{API}/subscribers/<subscriber_id>/spending-limit",
         f"{API}/subscribers/sub1/spending-limit", (401, 403, 403, 403, 200, 200), body="limit"),
    Cell("GET", f"{API}/subscribers/<subscriber_id>/bill", f"{API}/subscribers/sub1/bill",
         (401, 403, 403, 403, 200, 200)),
    Cell("GET", f"{API}/payees", f"{API}/payees",                   (401, 403, 200, 200, 200, 200)),
    Cell("GET", f"{API}/payees", f"{API}/payees?isp=isp-b",         (401, 403, 403, 200, 200, 200)),
    Cell("POST", f"{API}/payees", f"{API}/payees",                  (401, 403, 403, 403, 403, 201),
         body="payee"),
    Cell("PATCH", f"{API}/payees/<payee_id>", f"{API}/payees/isp-a",
         (401, 403, 403, 403, 403, 200), body="payee-change"),
    Cell("GET", f"{API}/settlements", f"{API}/settlements",         (401, 403, 200, 200, 200, 200)),
    Cell("GET", f"{API}/settlements/<int:settlement_id>", f"{API}/settlements/{{settlement_a}}",
         (401, 404, 200, 404, 200, 200)),
    Cell("GET", f"{API}/settlements/<int:settlement_id>", f"{API}/settlements/{{settlement_b}}",
         (401, 404, 404, 200, 200, 200)),
    Cell("GET", f"{API}/settlements/<int:settlement_id>", f"{API}/settlements/999999",
         (401, 404, 404, 404, 404, 404)),
    Cell("GET", f"{API}/settlements/<int:settlement_id>/statement",
         f"{API}/settlements/{{settlement_a}}/statement", (401, 404, 200, 404, 200, 200)),
    Cell("GET", f"{API}/settlements/<int:settlement_id>/statement",
         f"{API}/settlements/{{settlement_b}}/statement?format=csv",
         (401, 404, 404, 200, 200, 200)),
    Cell("POST", f"{API}/settlements/runs", f"{API}/settlements/runs",
         (401, 403, 403, 403, 200, 200), body="settlement-run"),
    # FreeRADIUS's policy endpoints: no role opens them, only the shared token (radius.md)
    Cell("POST", f"{RADIUS}/authorize", f"{RADIUS}/authorize",      (401, 401, 401, 401, 401, 401)),
    Cell("POST", f"{RADIUS}/post-auth", f"{RADIUS}/post-auth",      (401, 401, 401, 401, 401, 401)),
    Cell("POST", f"{RADIUS}/accounting", f"{RADIUS}/accounting",    (401, 401, 401, 401, 401, 401)),
)
# fmt: on

# what each ISP may never see: the other's customers (sub3 chose isp-b, order p)
PRIVATE = {
    "isp-a": ("sub2", "+31205550002", "rc2:sub2", "acc-sub2", "sub3", "+31205550003", "rc1:sub3",
              "ref-isp-b", "item-isp-b"),
    "isp-b": ("sub1", "+31205550001", "rc1:sub1", "acc-sub1", "ref-isp-a", "item-isp-a"),
}  # fmt: skip
PAST = datetime(2025, 3, 10, tzinfo=UTC)  # the settled payments' month: 2025-03
_keys = itertools.count(1)


def test_every_route_has_a_row(app: Flask) -> None:
    routes = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(PREFIXES)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert routes, "found no route: is the prefix list right?"
    covered = {(cell.method, cell.rule) for cell in MATRIX}
    assert routes - covered == set(), "routes without a row in MATRIX"
    assert covered - routes == set(), "rows for routes that do not exist"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """The world built once for the module's hundreds of cells: a database file (idle and
    closed, so a copy of it is a consistent database), its clear tokens and its ids."""
    path = tmp_path_factory.mktemp("matrix") / "world.sqlite"
    url = migrated_sqlite(path)
    seed(url)
    tokens = make_tokens(url)
    ids = build_world(url)
    dispose_engines()
    yield Built(path, tokens, ids)


@dataclass(frozen=True)
class Built:
    path: Path
    tokens: dict[str, str]
    ids: dict[str, int]


@pytest.fixture
def database_url(tmp_path: Path, template: Built) -> Iterator[str]:
    """Each cell's own copy of the world: a request that writes changes only its copy."""
    path = tmp_path / "vpop.sqlite"
    shutil.copyfile(template.path, path)
    try:
        yield f"sqlite:///{path}"
    finally:
        dispose_engines()


@pytest.fixture
def tokens(template: Built) -> dict[str, str]:
    """The clear bearer tokens by role (those of the conftest's fixture, in the world)."""
    return dict(template.tokens)


@pytest.fixture
def world(template: Built, database_url: str) -> dict[str, int]:
    """The objects the matrix reads (see the module docstring), by name: their ids."""
    return dict(template.ids)


def build_world(database_url: str) -> dict[str, int]:
    """Write the world (see the module docstring) into a seeded database with its tokens."""
    now = utcnow()
    with session_scope(database_url) as session:
        lines = {line.subscriber_id: line for line in session.scalars(select(Line))}
        session.add(Selection(line_id=lines["sub1"].id, isp_id="isp-a"))
        session.add(Selection(line_id=lines["sub2"].id, isp_id="isp-b"))
        run = Run(router="rc1", kind="selection", trigger="orders 1", requester="token:4",
                  status="SUCCESS", diff=DIFF)  # fmt: skip
        session.add(run)
        session.flush()
        orders = {
            "order_a": Order(line_id=lines["sub1"].id, isp_id="isp-a", router="rc1",
                             requester="token:4", status=OrderStatus.DONE_SUCCESS.value,
                             run_id=run.id, diff=DIFF),
            "order_b": Order(line_id=lines["sub2"].id, isp_id="isp-b", router="rc2",
                             requester="token:5", status=OrderStatus.RECEIVED.value),
            "order_p": Order(line_id=lines["sub3"].id, isp_id="isp-b", router="rc1",
                             requester="token:3", status=OrderStatus.RECEIVED.value),
        }  # fmt: skip
        session.add_all(orders.values())
        leases = {
            "lease_a": Lease(isp_id="isp-a", router="rc1", uplink="isp-a", committed_mbps=100,
                             price_minor=1, status="active", starts_at=now - timedelta(days=1)),
            "lease_b": Lease(isp_id="isp-b", router="rc2", uplink="isp-b", committed_mbps=200,
                             price_minor=1, status="active", starts_at=now - timedelta(days=1)),
        }  # fmt: skip
        session.add_all(leases.values())
        session.flush()
        events = {
            f"event_{k}": UtilisationEvent(lease_id=leases[f"lease_{k}"].id, isp_id=f"isp-{k}",
                                           kind="under", opened_at=now, extreme_pct=1.0)
            for k in "ab"
        }  # fmt: skip
        session.add_all(events.values())
        for isp in ("isp-a", "isp-b"):
            session.add(QosSample(isp_id=isp, router="rc1", at=now, latency_ms=1.0,
                                  jitter_ms=0.1, loss_pct=0.0, sent=10, received=10))  # fmt: skip
        session.flush()
        session.add(RadiusClient(name="nas1", address="192.0.2.250", family="accel-ppp"))
        rule = AaaRule(kind="calling_prefix", match="+3120555", isp_id="isp-c", priority=100)
        session.add(rule)
        for sub, isp in (("sub1", "isp-a"), ("sub2", "isp-b")):
            session.add(
                RadiusSession(
                    nas="nas1",
                    acct_session_id=f"s-{sub}",
                    line_id=lines[sub].id,
                    subscriber_id=sub,
                    isp_id=isp,
                    user_name=f"{sub}@example.net",
                    started_at=now,
                    updated_at=now,
                )
            )
            session.add(
                AaaDecision(
                    decision_id=f"vpop-d-{sub}",
                    nas="nas1",
                    line_id=lines[sub].id,
                    subscriber_id=sub,
                    isp_id=isp,
                    outcome="accept",
                    reason="rule",
                    identifiers={"calling_number": lines[sub].calling_number},
                )
            )
        session.add(AaaDecision(decision_id="vpop-d-reject", nas="nas1", outcome="reject",
                                reason="unknown line", subscriber_id="sub2",
                                identifiers={"calling_number": "+31205550002"}))  # fmt: skip
        session.flush()
        ids = {name: row.id for name, row in {**orders, **leases, **events}.items()}
        ids["run"] = run.id
        ids["rule"] = rule.id
        for k, sub in (("a", "sub1"), ("b", "sub2")):
            caller = Caller(name=f"token:isp-{k}", role="isp", isp=f"isp-{k}")
            paid = authorise(session, caller, _payment(f"isp-{k}", sub), now=PAST)
            capture(session, caller, paid.id, now=PAST + timedelta(hours=1))
            ids[f"payment_{k}"] = paid.id
            ids[f"auth_{k}"] = authorise(session, caller, _payment(f"isp-{k}", sub)).id
        settled = run_settlement(session, "2025-03", now=datetime(2025, 4, 2, tzinfo=UTC),
                                 actor="test")  # fmt: skip
        for row in settled:
            ids[f"settlement_{row.payee_id[-1]}"] = row.id
    return ids


def _payment(isp: str, subscriber: str) -> PaymentBody:
    """A payment request of ``isp``'s for ``subscriber``, with references only it may see."""
    return PaymentBody.parse(
        {"subscriber": subscriber, "amount_minor": 100, "currency": "EUR",
         "item": f"item-{isp}", "merchant_reference": f"ref-{isp}"}
    )  # fmt: skip


def _body(kind: str | None, role: str) -> dict[str, Any] | None:
    if kind == "selection":
        return {"subscriber": "sub1", "isp": role if role.startswith("isp-") else "isp-b"}
    if kind == "lease":
        return {"isp": "isp-b", "router": "rc1", "committed_mbps": 100, "price_minor": 1}
    if kind == "lease-change":
        return {"price_minor": 2}
    if kind == "rule":
        return {"kind": "calling_prefix", "match": "+3120555", "isp": "isp-c", "priority": 50}
    if kind == "payment":
        return _payment(role, "sub2" if role == "isp-b" else "sub1").model_dump(exclude_none=True)
    return _BODIES.get(kind or "")


_BODIES: dict[str, dict[str, Any]] = {
    "empty": {},
    "refund": {"amount_minor": 1},
    "limit": {"limit_minor": 2500},
    "payee": {"id": "shop-c", "isp": "isp-c", "name": "Gamma Shop"},
    "payee-change": {"fee_bp": 10},
    "settlement-run": {"period": "2025-03"},
}


def _ids(value: Any, key: str) -> set[Any]:
    """Every value of ``key`` anywhere in a JSON document."""
    found: set[Any] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key and isinstance(v, int | str):
                found.add(v)
            found |= _ids(v, key)
    elif isinstance(value, list):
        for item in value:
            found |= _ids(item, key)
    return found


CASES = [(cell, role) for cell in MATRIX for role in ROLES]


@pytest.mark.parametrize(
    ("cell", "role"), CASES, ids=[f"{cell.id} as {role}" for cell, role in CASES]
)
def test_the_matrix(
    client: FlaskClient,
    tokens: dict[str, str],
    world: dict[str, int],
    inventory: object,
    cell: Cell,
    role: str,
) -> None:
    expected = cell.statuses[ROLES.index(role)]
    headers = bearer(tokens[role]) if role != "none" else {}
    path = cell.path.format(**world)
    body = _body(cell.body, role)
    if cell.method == "GET":
        response = client.get(path, headers=headers)
    else:
        headers["Idempotency-Key"] = f"matrix-{next(_keys)}"  # the payment POSTs need one
        response = (
            client.open(path, method=cell.method, json=body, headers=headers)
            if body is not None
            else client.open(path, method=cell.method, headers=headers)
        )
    assert response.status_code == expected, response.get_data(as_text=True)
    if not 200 <= expected < 300 or role not in PRIVATE or cell.rule == f"{API}/openapi.json":
        return
    text = response.get_data(as_text=True)
    for secret in PRIVATE[role]:
        assert f'"{secret}"' not in text and f"vpop-{secret}" not in text, (secret, text)
    other = "b" if role == "isp-a" else "a"
    if response.mimetype != "application/json":
        return
    doc = response.get_json()
    assert world[f"lease_{other}"] not in _ids(doc, "lease")
    assert world[f"event_{other}"] not in _ids(doc, "event")
    assert world[f"order_{other}"] not in _ids(doc, "order")
    if cell.rule.startswith(f"{API}/payments"):
        assert not {world[f"payment_{other}"], world[f"auth_{other}"]} & _ids(doc, "id"), text
    if cell.rule.startswith(f"{API}/settlements"):
        assert world[f"settlement_{other}"] not in _ids(doc, "id"), text
    if role == "isp-a":
        assert world["order_p"] not in _ids(doc, "order")
    if cell.rule != f"{API}/isps":  # the public catalogue lists every ISP
        assert f"isp-{other}" not in _ids(doc, "isp"), text
