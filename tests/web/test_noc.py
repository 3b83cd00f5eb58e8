"""The NOC pages: sign-in, orders and runs with their diffs, actions, leases, audit log."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.web.helpers import NOC_PASSWORD, SECRET_KEY, form_token, hidden_fields, order_count, text
from vpop.core.audit import AuditEntry
from vpop.core.db import session_scope
from vpop.core.time import utcnow
from vpop.identity.models import User
from vpop.identity.tokens import create_token
from vpop.leasing.models import Lease, UtilisationEvent
from vpop.monitoring.models import Rollup
from vpop.monitoring.rollups import bucket_start, series_name
from vpop.selection.models import Order, OrderStatus, Run
from vpop.selection.portal_links import read_token
from vpop.selection.service import Caller, SelectionRequest, submit_selection

DIFF = """--- running pbr
+++ intended pbr
@@ -1,3 +1,3 @@
 pbr-map vpop-sub1 seq 10
  match src-ip 192.0.2.2/32
- set nexthop-group vpop-isp-a
+ set nexthop-group vpop-isp-b
"""

PAGES = ["/noc/", "/noc/orders", "/noc/orders/1", "/noc/runs", "/noc/runs/1", "/noc/leases"]
PAGES += ["/noc/audit", "/noc/portal-links", "/noc/orders/1.json"]
ACTIONS = ["/noc/orders/1/retry", "/noc/orders/1/dry-run", "/noc/routers/rc1/reconcile"]
ACTIONS += ["/noc/portal-links", "/noc/logout"]


@pytest.fixture
def finished_order(database_url: str, enqueued: list[str]) -> int:
    """Order 1, requested by a NOC token: sub1 to isp-b, done by run 1 with its diff (its
    own announcement is not one the tests look for)."""
    with session_scope(database_url) as session:
        token = create_token(session, "noc", name="ci robot")
    del token
    order, _ = submit_selection(
        SelectionRequest(isp="isp-b", subscriber="sub1"),
        Caller(name="token:1", role="noc"),
        None,
        url=database_url,
    )
    now = utcnow()
    with session_scope(database_url) as session:
        run = Run(
            router="rc1",
            kind="selection",
            trigger=f"orders {order.id}",
            requester="token:1",
            status="SUCCESS",
            diff=DIFF,
            result={
                "rc1": {
                    "failed": False,
                    "changed": True,
                    "pushed": ["pbr-map vpop-sub1 seq 10", " set nexthop-group vpop-isp-b"],
                    "installed": {"vpop-sub1": "vpop-isp-b"},
                    "exception": None,
                }
            },
            timings={"render": 1.25, "device": 8.5, "total": 11.75},
            started_at=now - timedelta(seconds=1),
            finished_at=now,
        )
        session.add(run)
        session.flush()
        stored = session.get(Order, order.id)
        assert stored is not None
        stored.run_id = run.id
        stored.diff = DIFF
        stored.status = OrderStatus.DONE_SUCCESS.value
        stored.started_at = now - timedelta(seconds=1)
        stored.finished_at = now
    enqueued.clear()
    return order.id


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_a_sign_in(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/noc/login?next=")


@pytest.mark.parametrize("path", ACTIONS)
def test_actions_need_a_sign_in(
    client: FlaskClient,
    database_url: str,
    enqueued: list[str],
    reconciles: list[str],
    finished_order: int,
    path: str,
) -> None:
    token = form_token(client.get("/noc/login"))
    response = client.post(path, data={"csrf_token": token, "form_key": "k1"})
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/noc/login")
    assert order_count(database_url) == 1 and enqueued == [] and reconciles == []


def test_the_sign_in_page_works(client: FlaskClient) -> None:
    response = client.get("/noc/login?next=/noc/runs")
    assert response.status_code == 200
    body = text(response)
    assert 'name="password" type="password"' in body
    assert 'value="/noc/runs"' in body


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong password!"), ("mallory", NOC_PASSWORD), ("alice", "")],
    ids=["wrong-password", "unknown-user", "empty-password"],
)
def test_a_wrong_sign_in_is_refused_visibly(
    client: FlaskClient, username: str, password: str
) -> None:
    token = form_token(client.get("/noc/login"))
    response = client.post(
        "/noc/login", data={"csrf_token": token, "username": username, "password": password}
    )
    assert response.status_code in (401, 422)
    body = text(response)
    assert "data-login-error" in body
    assert ("wrong user name or password" in body) or ("enter your user name" in body)
    assert client.get("/noc/orders").status_code == 303


def test_signing_in_needs_the_csrf_token(client: FlaskClient) -> None:
    client.get("/noc/login")
    response = client.post("/noc/login", data={"username": "alice", "password": NOC_PASSWORD})
    assert response.status_code == 400
    assert client.get("/noc/orders").status_code == 303


def test_a_portal_role_user_cannot_exist_and_a_disabled_user_is_signed_out(
    noc: FlaskClient, database_url: str
) -> None:
    assert noc.get("/noc/orders").status_code == 200
    with session_scope(database_url) as session:
        user = session.scalars(select(User).where(User.username == "alice")).one()
        user.disabled_at = utcnow()
    assert noc.get("/noc/orders").status_code == 303


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/noc/runs", "/noc/runs"),
        ("https://evil.example/", "/noc/orders"),
        ("//evil.example/noc/", "/noc/orders"),
        ("/noc/..//evil.example", "/noc/orders"),
        ("/api/v1/runs", "/noc/orders"),
    ],
    ids=["inside", "absolute", "scheme-relative", "double-slash", "outside-noc"],
)
def test_after_sign_in_only_noc_pages_are_a_destination(
    client: FlaskClient, target: str, expected: str
) -> None:
    token = form_token(client.get("/noc/login"))
    response = client.post(
        "/noc/login",
        data={"csrf_token": token, "username": "alice", "password": NOC_PASSWORD, "next": target},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == expected


def test_signing_in_starts_a_new_session(client: FlaskClient) -> None:
    before = form_token(client.get("/noc/login"))
    client.post(
        "/noc/login", data={"csrf_token": before, "username": "alice", "password": NOC_PASSWORD}
    )
    after = form_token(client.get("/noc/portal-links"))
    assert after != before


def test_the_order_list_and_detail_show_status_diff_result_timings_and_who(
    noc: FlaskClient, finished_order: int
) -> None:
    listing = text(noc.get("/noc/orders"))
    assert 'data-order-row="1"' in listing
    assert "DONE_SUCCESS" in listing and "Beta Fibre" in listing and "token:1" in listing
    assert text(noc.get("/noc/orders?status=RECEIVED")).count("data-order-row") == 0
    assert text(noc.get("/noc/orders?router=rc2")).count("data-order-row") == 0
    detail = noc.get(f"/noc/orders/{finished_order}")
    assert detail.status_code == 200
    body = text(detail)
    assert '<span class="add">+ set nexthop-group vpop-isp-b</span>' in body
    assert '<span class="del">- set nexthop-group vpop-isp-a</span>' in body
    assert (
        "API token 1 &#34;ci robot&#34; (noc)" in body
        or "API token 1 &quot;ci robot&quot; (noc)" in body
    )
    assert 'data-result-router="rc1"' in body and "vpop-sub1" in body
    assert "11.8 ms" in body and "render" in body and "device" in body
    assert 'href="/noc/runs/1"' in body
    assert noc.get("/noc/orders/1.json").get_json()["diff"] == DIFF


def test_bad_filters_and_unknown_ids_are_html_errors(noc: FlaskClient) -> None:
    for path, status in [
        ("/noc/orders?status=DONE", 422),
        ("/noc/orders?router=RC%0A1", 422),
        ("/noc/orders?before=-1", 422),
        ("/noc/orders/99", 404),
        ("/noc/runs/99", 404),
        ("/noc/nothing", 404),
    ]:
        response = noc.get(path)
        assert response.status_code == status, path
        assert response.mimetype == "text/html", path
        assert "Back to the NOC pages" in text(response)


def test_retry_creates_a_new_order_for_the_same_line_and_isp(
    noc: FlaskClient, database_url: str, enqueued: list[str], finished_order: int
) -> None:
    fields = hidden_fields(noc.get("/noc/orders/1"), 'action="/noc/orders/1/retry"')
    response = noc.post("/noc/orders/1/retry", data=fields)
    assert response.status_code == 303 and response.headers["Location"] == "/noc/orders/2"
    with session_scope(database_url) as session:
        new = session.get(Order, 2)
        assert new is not None
        assert (new.line_id, new.isp_id, new.dry_run, new.status) == (1, "isp-b", False, "RECEIVED")
        assert new.requester == "user:alice"
    assert enqueued == ["rc1"]
    assert "Order 2 is the retry of order 1." in text(noc.get("/noc/orders/2"))
    # the same form sent again (a double click) makes no third order
    noc.post("/noc/orders/1/retry", data=fields)
    assert order_count(database_url) == 2


def test_dry_run_creates_a_dry_run_order(
    noc: FlaskClient, database_url: str, enqueued: list[str], finished_order: int
) -> None:
    fields = hidden_fields(noc.get("/noc/orders/1"), 'action="/noc/orders/1/dry-run"')
    response = noc.post("/noc/orders/1/dry-run", data=fields)
    assert response.status_code == 303
    with session_scope(database_url) as session:
        new = session.get(Order, 2)
        assert new is not None and new.dry_run and new.isp_id == "isp-b" and new.line_id == 1
    assert enqueued == ["rc1"]


def test_reconcile_is_queued_and_audited(
    noc: FlaskClient, database_url: str, reconciles: list[str], finished_order: int
) -> None:
    fields = hidden_fields(noc.get("/noc/runs"), 'action="/noc/routers/rc1/reconcile"')
    response = noc.post("/noc/routers/rc1/reconcile", data=fields)
    assert response.status_code == 303
    assert reconciles == ["rc1"]
    assert "A reconcile of rc1 is queued" in text(noc.get(response.headers["Location"]))
    with session_scope(database_url) as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "reconcile.request")
        ).one()
        assert (entry.actor, entry.object) == ("user:alice", "router:rc1")


def test_reconcile_of_an_unknown_router_is_refused(noc: FlaskClient, reconciles: list[str]) -> None:
    token = form_token(noc.get("/noc/runs"))
    assert noc.post("/noc/routers/rc9/reconcile", data={"csrf_token": token}).status_code == 404
    assert noc.post("/noc/routers/RC1;x/reconcile", data={"csrf_token": token}).status_code == 422
    assert reconciles == []


@pytest.mark.parametrize("path", ACTIONS)
def test_actions_need_the_csrf_token(
    noc: FlaskClient,
    database_url: str,
    enqueued: list[str],
    reconciles: list[str],
    finished_order: int,
    path: str,
) -> None:
    response = noc.post(path, data={"form_key": "k1", "subscriber": "sub1"})
    assert response.status_code == 400
    assert "security token" in text(response)
    assert order_count(database_url) == 1 and enqueued == [] and reconciles == []
    assert noc.get("/noc/orders").status_code == 200  # still signed in


def test_runs_list_and_detail(noc: FlaskClient, finished_order: int) -> None:
    listing = text(noc.get("/noc/runs"))
    assert 'data-run-row="1"' in listing and "SUCCESS" in listing and "12 ms" in listing
    body = text(noc.get("/noc/runs/1"))
    assert "+ set nexthop-group vpop-isp-b" in body
    assert 'href="/noc/orders/1"' in body
    assert "orders 1" in body  # the trigger


def test_leases_show_a_utilisation_chart_and_open_events(
    noc: FlaskClient, database_url: str
) -> None:
    now = utcnow()
    with session_scope(database_url) as session:
        lease = Lease(
            isp_id="isp-b", router="rc1", uplink="isp-b", committed_mbps=100, price_minor=50000
        )
        session.add(lease)
        session.flush()
        for step in range(12):
            value = 40.0 + step * 8
            session.add(
                Rollup(
                    series=series_name("util", "lease", str(lease.id)),
                    bucket=bucket_start(now - timedelta(minutes=5 * step)),
                    count=1,
                    total=value,
                    minimum=value,
                    maximum=value,
                )
            )
        session.add(
            UtilisationEvent(
                lease_id=lease.id,
                isp_id="isp-b",
                kind="over",
                opened_at=now - timedelta(minutes=2),
                extreme_pct=131.5,
            )
        )
        session.add(
            UtilisationEvent(
                lease_id=lease.id,
                isp_id="isp-b",
                kind="under",
                opened_at=now - timedelta(hours=3),
                closed_at=now - timedelta(hours=2),
                extreme_pct=2.0,
            )
        )
    body = text(noc.get("/noc/leases"))
    assert 'data-lease="1"' in body and '<svg class="chart"' in body
    assert "under 10%" in body and "over 100%" in body
    assert body.count("data-event=") == 1  # only the open one
    assert "over-utilisation" in body and "131.5 %" in body
    assert "500.00 EUR a month" in body


def test_the_audit_log_shows_who_did_what(noc: FlaskClient, finished_order: int) -> None:
    body = text(noc.get("/noc/audit"))
    assert "user.login" in body and "user:alice" in body
    assert "order.create" in body and "order:1" in body


def test_a_portal_link_made_here_opens_the_portal(
    noc: FlaskClient, app: Flask, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VPOP_PUBLIC_URL", "https://vpop.example.net/")
    token = form_token(noc.get("/noc/portal-links"))
    response = noc.post("/noc/portal-links", data={"csrf_token": token, "subscriber": "sub2"})
    assert response.status_code == 200
    link = re.search(r"data-portal-link>([^<]+)<", text(response))
    assert link is not None
    url = link.group(1).replace("&amp;", "&")
    # the configured public address, not the one the NOC page was asked on
    assert url.startswith("https://vpop.example.net/?link=")
    assert read_token(url.split("link=", 1)[1], key=SECRET_KEY) == "sub2"
    assert "Hello Subscriber 2" in text(app.test_client().get(url.split(".net", 1)[1]))
    bad = noc.post("/noc/portal-links", data={"csrf_token": token, "subscriber": "sub9"})
    assert bad.status_code == 404 and "unknown subscriber" in text(bad)


def test_signing_out_ends_the_session(noc: FlaskClient) -> None:
    token = form_token(noc.get("/noc/orders"))
    assert noc.post("/noc/logout", data={"csrf_token": token}).status_code == 303
    assert noc.get("/noc/orders").status_code == 303


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/", ("ISP",)),
        ("/noc/orders", ("Orders", "order 1", "ISP")),
        ("/noc/orders/1", ("Selection", "Diff", "run 1", "order")),
        ("/noc/runs", ("Runs", "run 1")),
        ("/noc/leases", ("Leases",)),
    ],
    ids=["portal", "orders", "order", "runs", "leases"],
)
def test_the_pages_use_the_apis_words(
    noc: FlaskClient, finished_order: int, path: str, words: tuple[str, ...]
) -> None:
    body = text(noc.get(path))
    for word in words:
        assert word in body, word
    visible = re.sub(r"<[^>]+>", " ", body).lower()
    for synonym in ("provider", "carrier", "ticket", "job ", "subscription", "contract"):
        assert synonym not in visible, synonym


def test_repeated_failed_sign_ins_are_throttled(client: FlaskClient) -> None:
    def attempt(password: str) -> int:
        token = form_token(client.get("/noc/login"))
        form = {"csrf_token": token, "username": "alice", "password": password}
        return client.post("/noc/login", data=form).status_code

    assert [attempt("wrong password!") for _ in range(5)] == [401] * 5
    refused = client.post(
        "/noc/login",
        data={
            "csrf_token": form_token(client.get("/noc/login")),
            "username": "alice",
            "password": NOC_PASSWORD,
        },
    )
    assert refused.status_code == 429  # even the right password, for a while
    assert "too many failed sign-ins" in text(refused)
    assert client.get("/noc/orders").status_code == 303
