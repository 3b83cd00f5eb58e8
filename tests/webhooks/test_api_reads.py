"""Reads: orders, subscribers, runs (bearer token) and the public ISP catalogue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.webhooks.helpers import assert_problem, bearer, post_signed
from vpop.catalogue.models import Selection
from vpop.core.db import session_scope
from vpop.core.time import utcnow
from vpop.identity.service import create_token, revoke_token
from vpop.selection.models import Run

PROTECTED = ["/api/v1/orders/1", "/api/v1/subscribers/sub1", "/api/v1/runs", "/api/v1/runs/1"]


@pytest.fixture
def runs(database_url: str) -> list[int]:
    """Three runs: rc1, rc2, rc1 (ids ascending)."""
    started = utcnow()
    with session_scope(database_url) as session:
        rows = [
            Run(
                router=router,
                kind="selection",
                trigger="orders 1",
                requester="webhook",
                status="SUCCESS",
                diff=f"+ {router}\n",
                result={router: {"failed": False}},
                timings={"total": 12},
                started_at=started + timedelta(seconds=k),
                finished_at=started + timedelta(seconds=k + 1),
            )
            for k, router in enumerate(["rc1", "rc2", "rc1"])
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


@pytest.mark.parametrize("path", PROTECTED, ids=["order", "subscriber", "runs", "run"])
def test_reads_need_a_token(client: FlaskClient, path: str) -> None:
    assert_problem(client.get(path), 401, "VPOP-401-MISSING")
    assert_problem(client.get(path, headers=bearer("vpop_" + "0" * 43)), 401, "VPOP-401-TOKEN")


@pytest.mark.parametrize("path", ["/api/v1/isps", "/api/v1/openapi.json", "/healthz"])
def test_public_endpoints_need_no_token(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "application/json"


def test_the_catalogue_lists_isps_and_plans(client: FlaskClient) -> None:
    body = client.get("/api/v1/isps").get_json()
    assert [isp["id"] for isp in body["isps"]] == ["isp-a", "isp-b", "isp-c"]
    alpha = body["isps"][0]
    assert alpha["name"] == "Alpha Net"
    assert [
        (p["name"], p["speed_mbps"], p["monthly_price_minor"], p["currency"])
        for p in alpha["plans"]
    ] == [("basic", 100, 1999, "EUR"), ("fast", 1000, 4999, "EUR")]
    assert body["isps"][2]["plans"] == []
    # nothing internal leaks into the public catalogue
    assert set(alpha) == {"id", "name", "plans", "qos"}


def test_an_order_can_be_read_back(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    accepted = post_signed(client, {"subscriber": "sub1", "isp": "isp-b", "dry_run": True})
    response = client.get(accepted.headers["Location"], headers=admin_headers)
    assert response.status_code == 200
    order = response.get_json()
    assert order["order"] == accepted.get_json()["order"]
    assert (order["status"], order["isp"], order["router"]) == ("RECEIVED", "isp-b", "rc1")
    assert order["dry_run"] is True and order["final"] is False
    assert order["requester"] == "webhook"


def test_an_unknown_order_is_404(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    assert_problem(client.get("/api/v1/orders/999", headers=admin_headers), 404, "VPOP-404-ORDER")


def test_an_isp_token_reads_only_its_own_isps_orders(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    def select(token: str, isp: str) -> str:
        response = client.post(
            "/api/v1/selections", json={"subscriber": "sub1", "isp": isp}, headers=bearer(token)
        )
        assert response.status_code == 202
        return str(response.headers["Location"])

    mine = select(tokens["isp-b"], "isp-b")
    theirs = select(tokens["isp-a"], "isp-a")
    by_portal = select(tokens["portal"], "isp-b")
    assert client.get(mine, headers=bearer(tokens["isp-b"])).status_code == 200
    # another's order is "not there", the same answer as an unknown id
    assert_problem(client.get(theirs, headers=bearer(tokens["isp-b"])), 404, "VPOP-404-ORDER")
    assert_problem(client.get(by_portal, headers=bearer(tokens["isp-b"])), 404, "VPOP-404-ORDER")
    assert_problem(client.get(theirs, headers=bearer(tokens["portal"])), 404, "VPOP-404-ORDER")
    assert client.get(by_portal, headers=bearer(tokens["portal"])).status_code == 200
    # operators read every order
    for role in ("admin", "noc"):
        assert client.get(theirs, headers=bearer(tokens[role])).status_code == 200


def test_an_isp_reads_the_orders_any_of_its_tokens_requested_even_a_revoked_one(
    client: FlaskClient, tokens: dict[str, str], database_url: str
) -> None:
    with session_scope(database_url) as session:
        second = create_token(session, "isp", "isp-b", name="isp-b's second system")
    location = client.post(
        "/api/v1/selections", json={"subscriber": "sub1", "isp": "isp-b"}, headers=bearer(second)
    ).headers["Location"]
    body = client.get(location, headers=bearer(tokens["isp-b"])).get_json()
    assert body["isp"] == "isp-b" and body["requester"].startswith("token:")
    with session_scope(database_url) as session:  # the requesting token is revoked since
        token_id = int(body["requester"].removeprefix("token:"))
        revoke_token(session, token_id, actor="test")
    assert client.get(location, headers=bearer(tokens["isp-b"])).status_code == 200
    assert_problem(client.get(location, headers=bearer(tokens["isp-a"])), 404, "VPOP-404-ORDER")


def test_a_subscriber_shows_each_lines_current_isp(
    client: FlaskClient, database_url: str, admin_headers: dict[str, str]
) -> None:
    body = client.get("/api/v1/subscribers/sub1", headers=admin_headers).get_json()
    assert body["subscriber"] == "sub1" and body["name"] == "Subscriber 1"
    (line,) = body["lines"]
    assert (line["router"], line["interface"], line["calling_number"]) == (
        "rc1",
        "sub1",
        "+31205550001",
    )
    assert line["current_isp"] is None and line["default"] is True
    with session_scope(database_url) as session:
        session.add(Selection(line_id=line["line"], isp_id="isp-b"))
    (line,) = client.get("/api/v1/subscribers/sub1", headers=admin_headers).get_json()["lines"]
    assert line["current_isp"] == "isp-b" and line["default"] is False


@pytest.mark.parametrize(
    ("path", "status"),
    [("/api/v1/subscribers/nobody", 404), ("/api/v1/subscribers/Sub1", 422)],
    ids=["unknown", "invalid-id"],
)
def test_bad_subscriber_ids(
    client: FlaskClient, admin_headers: dict[str, str], path: str, status: int
) -> None:
    assert_problem(client.get(path, headers=admin_headers), status)


def test_runs_are_listed_newest_first_and_filtered(
    client: FlaskClient, admin_headers: dict[str, str], runs: list[int]
) -> None:
    listed = client.get("/api/v1/runs", headers=admin_headers).get_json()["runs"]
    assert [r["run"] for r in listed] == runs[::-1]
    limited = client.get("/api/v1/runs?limit=1", headers=admin_headers).get_json()["runs"]
    assert [r["run"] for r in limited] == [runs[2]]
    rc1 = client.get("/api/v1/runs?router=rc1", headers=admin_headers).get_json()["runs"]
    assert [r["run"] for r in rc1] == [runs[2], runs[0]]
    run = client.get(f"/api/v1/runs/{runs[1]}", headers=admin_headers).get_json()
    assert run["router"] == "rc2" and run["diff"] == "+ rc2\n"
    assert run["result"] == {"rc2": {"failed": False}} and run["timings"] == {"total": 12}
    assert run["finished_at"] > run["started_at"]
    assert set(run) == {
        "run",
        "router",
        "kind",
        "trigger",
        "requester",
        "dry_run",
        "status",
        "diff",
        "result",
        "timings",
        "error",
        "started_at",
        "finished_at",
    }


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=501", "limit=abc", "limit=-1", "limit=1&limit=2", "router=RC1", "page=2"],
    ids=["zero", "too-many", "not-a-number", "negative", "repeated", "bad-router", "unknown"],
)
def test_bad_run_queries_are_422(
    client: FlaskClient, admin_headers: dict[str, str], query: str
) -> None:
    assert_problem(client.get(f"/api/v1/runs?{query}", headers=admin_headers), 422)


def test_an_unknown_run_is_404(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    assert_problem(client.get("/api/v1/runs/999", headers=admin_headers), 404, "VPOP-404-RUN")


@pytest.mark.parametrize(
    ("role", "status"),
    [("admin", 200), ("noc", 200), ("portal", 403), ("isp-a", 403)],
    ids=["admin", "noc", "portal", "isp"],
)
def test_runs_are_for_operators_only(
    client: FlaskClient, tokens: dict[str, str], role: str, status: int
) -> None:
    response = client.get("/api/v1/runs", headers=bearer(tokens[role]))
    assert response.status_code == status
    if status == 403:
        assert response.content_type == "application/problem+json"


def test_an_isp_reads_only_subscribers_that_use_it(
    client: FlaskClient, tokens: dict[str, str], database_url: str
) -> None:
    from vpop.catalogue.models import Line, Selection
    from vpop.core.db import session_scope

    with session_scope(database_url) as session:
        line = session.scalars(select(Line).where(Line.subscriber_id == "sub1")).first()
        assert line is not None
        session.add(Selection(line_id=line.id, isp_id="isp-b"))
    assert (
        client.get("/api/v1/subscribers/sub1", headers=bearer(tokens["isp-b"])).status_code == 200
    )
    refused = client.get("/api/v1/subscribers/sub1", headers=bearer(tokens["isp-a"]))
    unknown = client.get("/api/v1/subscribers/nobody", headers=bearer(tokens["isp-a"]))
    # not yours and not there: one answer, so subscriber ids cannot be probed
    assert_problem(refused, 404, "VPOP-404-SUBSCRIBER")
    assert_problem(unknown, 404, "VPOP-404-SUBSCRIBER")
    assert refused.get_json()["detail"].replace("sub1", "X") == unknown.get_json()[
        "detail"
    ].replace("nobody", "X")
    assert_problem(
        client.get("/api/v1/subscribers/sub1", headers=bearer(tokens["portal"])), 403, "VPOP-403"
    )
