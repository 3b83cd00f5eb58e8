"""The AAA part of the API: RADIUS sessions, decisions, rules and NAS clients.

Every response here is also held against the OpenAPI document (the autouse ``conformance``
fixture); who may call which route is the matrix's (``test_authz_matrix.py``), and this file
checks what each role reads, the filters, tenancy (isp-a never sees isp-b's sessions or
decisions) and that bad input is a JSON problem.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.webhooks.helpers import assert_problem, bearer
from vpop.aaa.models import AaaDecision, AaaRule, RadiusClient, RadiusSession
from vpop.catalogue.models import Line
from vpop.core.audit import AuditEntry
from vpop.core.db import session_scope
from vpop.core.time import utcnow

SESSIONS = "/api/v1/radius/sessions"
DECISIONS = "/api/v1/aaa/decisions"
RULES = "/api/v1/aaa/rules"
CLIENTS = "/api/v1/radius/clients"


@pytest.fixture
def radius(database_url: str) -> dict[str, int]:
    """Sessions: sub1 on isp-a (live), sub2 on isp-b (live) and an ended one of sub1 on isp-a
    on NAS nas2; decisions: accepts for sub1 (isp-a) and sub2 (isp-b), a reject; two clients.
    Returns the line ids by subscriber."""
    now = utcnow()
    with session_scope(database_url) as db:
        lines = {line.subscriber_id: line.id for line in db.scalars(select(Line))}
        db.add(RadiusClient(name="nas1", address="192.0.2.250", family="accel-ppp"))
        db.add(RadiusClient(name="nas2", address="2001:db8::1", family="juniper"))
        rows = [
            ("nas1", "a-live", "sub1", "isp-a", now - timedelta(minutes=5), None),
            ("nas1", "b-live", "sub2", "isp-b", now - timedelta(minutes=4), None),
            ("nas2", "a-old", "sub1", "isp-a", now - timedelta(days=1), now - timedelta(hours=20)),
        ]
        for nas, session_id, sub, isp, started, stopped in rows:
            db.add(
                RadiusSession(
                    nas=nas,
                    acct_session_id=session_id,
                    decision_id=f"vpop-{session_id}",
                    line_id=lines[sub],
                    subscriber_id=sub,
                    isp_id=isp,
                    user_name=f"{sub}@example.net",
                    framed_ip=None,
                    started_at=started,
                    updated_at=stopped or started,
                    stopped_at=stopped,
                    stop_cause="User-Request" if stopped else None,
                    closed_by="stop" if stopped else None,
                    input_octets=5 * 2**32 + 7,
                )
            )
        for sub, isp, outcome in (
            ("sub1", "isp-a", "accept"),
            ("sub2", "isp-b", "accept"),
            ("sub2", None, "reject"),
        ):
            db.add(
                AaaDecision(
                    decision_id=f"vpop-{sub}-{outcome}",
                    nas="nas1",
                    line_id=lines[sub],
                    subscriber_id=sub,
                    isp_id=isp,
                    outcome=outcome,
                    reason="rule 1" if isp else "subscriber suspended",
                    identifiers={"calling_number": f"+3120555000{sub[-1]}"},
                )
            )
    return lines


def _get(client: FlaskClient, path: str, token: str, **query: Any) -> Any:
    response = client.get(path, headers=bearer(token), query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _session_ids(body: dict[str, Any]) -> list[str]:
    return [row["acct_session_id"] for row in body["sessions"]]


def test_operators_see_every_session_latest_started_first(
    client: FlaskClient, tokens: dict[str, str], radius: dict[str, int]
) -> None:
    for role in ("admin", "noc"):
        body = _get(client, SESSIONS, tokens[role])
        assert _session_ids(body) == ["b-live", "a-live", "a-old"]
    old = body["sessions"][2]
    assert old["stopped_at"] is not None and old["closed_by"] == "stop"
    assert old["input_octets"] == 5 * 2**32 + 7


def test_an_isp_sees_only_its_own_sessions(
    client: FlaskClient, tokens: dict[str, str], radius: dict[str, int]
) -> None:
    body = _get(client, SESSIONS, tokens["isp-a"])
    assert _session_ids(body) == ["a-live", "a-old"]
    assert {row["isp"] for row in body["sessions"]} == {"isp-a"}
    assert "sub2" not in str(body) and "isp-b" not in str(body)
    assert _session_ids(_get(client, SESSIONS, tokens["isp-b"])) == ["b-live"]
    assert _session_ids(_get(client, SESSIONS, tokens["isp-a"], subscriber="sub2")) == []
    refused = client.get(SESSIONS, headers=bearer(tokens["isp-a"]), query_string={"isp": "isp-b"})
    assert_problem(refused, 403, "VPOP-403")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"open": "true"}, ["b-live", "a-live"]),
        ({"open": "false"}, ["a-old"]),
        ({"subscriber": "sub1"}, ["a-live", "a-old"]),
        ({"isp": "isp-b"}, ["b-live"]),
        ({"nas": "nas2"}, ["a-old"]),
        ({"limit": "1"}, ["b-live"]),
        ({"subscriber": "sub1", "open": "true"}, ["a-live"]),
        ({"subscriber": "nobody"}, []),
    ],
    ids=["open", "ended", "subscriber", "isp", "nas", "limit", "live-of-sub1", "nobody"],
)
def test_session_filters(
    client: FlaskClient,
    tokens: dict[str, str],
    radius: dict[str, int],
    query: dict[str, str],
    expected: list[str],
) -> None:
    assert _session_ids(_get(client, SESSIONS, tokens["noc"], **query)) == expected


def test_the_line_filter(
    client: FlaskClient, tokens: dict[str, str], radius: dict[str, int]
) -> None:
    body = _get(client, SESSIONS, tokens["admin"], line=str(radius["sub2"]))
    assert _session_ids(body) == ["b-live"]


@pytest.mark.parametrize(
    ("path", "query", "code"),
    [
        (SESSIONS, {"open": "yes"}, "VPOP-400-TYPE"),
        (SESSIONS, {"limit": "0"}, "VPOP-400-RANGE"),
        (SESSIONS, {"limit": "many"}, "VPOP-400-TYPE"),
        (SESSIONS, {"line": "-1"}, "VPOP-400-TYPE"),
        (SESSIONS, {"subscriber": "Not A Name"}, None),
        (SESSIONS, {"colour": "red"}, "VPOP-400-UNKNOWN-FIELD"),
        (DECISIONS, {"outcome": "maybe"}, None),
        (DECISIONS, {"limit": "1001"}, "VPOP-400-RANGE"),
        (RULES, {"isp": "isp-a"}, "VPOP-400-UNKNOWN-FIELD"),
        (CLIENTS, {"family": "cisco"}, "VPOP-400-UNKNOWN-FIELD"),
    ],
    ids=[
        "open",
        "limit-zero",
        "limit-word",
        "line",
        "subscriber",
        "unknown",
        "outcome",
        "decisions-limit",
        "rules-query",
        "clients-query",
    ],
)
def test_bad_queries_are_problems(
    client: FlaskClient,
    tokens: dict[str, str],
    radius: dict[str, int],
    path: str,
    query: dict[str, str],
    code: str | None,
) -> None:
    response = client.get(path, headers=bearer(tokens["admin"]), query_string=query)
    assert_problem(response, 422, code)


def test_operators_read_every_decision_an_isp_only_those_for_it(
    client: FlaskClient, tokens: dict[str, str], radius: dict[str, int]
) -> None:
    every = _get(client, DECISIONS, tokens["noc"])["decisions"]
    assert sorted(row["decision_id"] for row in every) == [
        "vpop-sub1-accept",
        "vpop-sub2-accept",
        "vpop-sub2-reject",
    ]
    rejected = _get(client, DECISIONS, tokens["noc"], outcome="reject")["decisions"]
    assert [row["reason"] for row in rejected] == ["subscriber suspended"]
    own = _get(client, DECISIONS, tokens["isp-a"])["decisions"]
    assert [row["decision_id"] for row in own] == ["vpop-sub1-accept"]
    assert "+31205550002" not in str(own) and "sub2" not in str(own)
    assert [
        row["decision_id"] for row in _get(client, DECISIONS, tokens["isp-b"])["decisions"]
    ] == ["vpop-sub2-accept"]
    by_line = _get(client, DECISIONS, tokens["admin"], line=str(radius["sub1"]))["decisions"]
    assert [row["decision_id"] for row in by_line] == ["vpop-sub1-accept"]
    refused = client.get(DECISIONS, headers=bearer(tokens["isp-b"]), query_string={"isp": "isp-a"})
    assert_problem(refused, 403)


def test_rules_are_added_listed_in_order_and_removed_with_an_audit_trail(
    client: FlaskClient, tokens: dict[str, str], database_url: str
) -> None:
    admin = bearer(tokens["admin"])
    first = client.post(
        RULES, json={"kind": "calling_prefix", "match": "+31", "isp": "isp-a"}, headers=admin
    )
    assert first.status_code == 201, first.get_data(as_text=True)
    assert first.get_json()["priority"] == 100
    second = client.post(
        RULES,
        json={"kind": "realm", "match": "Isp-C.Example", "isp": "isp-c", "priority": 500},
        headers=bearer(tokens["noc"]),
    )
    assert second.status_code == 201
    assert second.get_json()["match"] == "isp-c.example"  # canonical: lower case
    listed = _get(client, RULES, tokens["noc"])["rules"]
    assert [(rule["kind"], rule["isp"]) for rule in listed] == [
        ("realm", "isp-c"),
        ("calling_prefix", "isp-a"),
    ]
    rule_id = first.get_json()["id"]
    removed = client.delete(f"{RULES}/{rule_id}", headers=admin)
    assert removed.status_code == 200
    assert removed.get_json()["match"] == "+31"
    assert [rule["isp"] for rule in _get(client, RULES, tokens["admin"])["rules"]] == ["isp-c"]
    assert_problem(client.delete(f"{RULES}/{rule_id}", headers=admin), 404, "VPOP-404-AAA-RULE")
    with session_scope(database_url) as db:
        actions = [
            (entry.action, entry.object)
            for entry in db.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.like("aaa_rule.%"))
                .order_by(AuditEntry.id)
            )
        ]
        assert db.get(AaaRule, rule_id) is None
    assert [action for action, _ in actions] == [
        "aaa_rule.create",
        "aaa_rule.create",
        "aaa_rule.remove",
    ]
    assert actions[2][1] == f"aaa_rule:{rule_id}"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"kind": "calling_prefix", "match": "+31"}, 422, "VPOP-400-MISSING"),
        ({"kind": "zip", "match": "1234", "isp": "isp-a"}, 422, None),
        ({"kind": "calling_prefix", "match": "0031", "isp": "isp-a"}, 422, "VPOP-400-AAA-RULE"),
        ({"kind": "profile", "match": "tier", "isp": "isp-a"}, 422, "VPOP-400-AAA-RULE"),
        ({"kind": "realm", "match": "x.example", "isp": "isp-a", "priority": "1"}, 422, None),
        (
            {"kind": "realm", "match": "x.example", "isp": "isp-a", "priority": 10**7},
            422,
            None,
        ),
        ({"kind": "realm", "match": "x.example", "isp": "isp-a", "colour": 1}, 422, None),
        ({"kind": "realm", "match": "x.example", "isp": "isp-nowhere"}, 404, "VPOP-404-ISP"),
        ({"kind": "realm", "match": 7, "isp": "isp-a"}, 422, None),
    ],
    ids=[
        "missing-isp",
        "unknown-kind",
        "bad-prefix",
        "bad-profile",
        "priority-string",
        "priority-range",
        "unknown-field",
        "unknown-isp",
        "match-number",
    ],
)
def test_bad_rules_are_refused_as_problems(
    client: FlaskClient,
    tokens: dict[str, str],
    database_url: str,
    body: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    response = client.post(RULES, json=body, headers=bearer(tokens["admin"]))
    assert_problem(response, status, code)
    with session_scope(database_url) as db:
        assert db.scalars(select(AaaRule)).first() is None


def test_a_rule_body_must_be_json(client: FlaskClient, tokens: dict[str, str]) -> None:
    headers = {**bearer(tokens["admin"]), "Content-Type": "text/plain"}
    assert_problem(client.post(RULES, data="kind=realm", headers=headers), 415)
    headers["Content-Type"] = "application/json"
    assert_problem(client.post(RULES, data="{", headers=headers), 400, "VPOP-400-JSON")


def test_clients_are_listed_without_secrets_and_not_added_over_the_api(
    client: FlaskClient, tokens: dict[str, str], radius: dict[str, int]
) -> None:
    body = _get(client, CLIENTS, tokens["noc"])
    assert body == {
        "clients": [
            {
                "name": "nas1",
                "address": "192.0.2.250",
                "family": "accel-ppp",
                "created_at": body["clients"][0]["created_at"],
            },
            {
                "name": "nas2",
                "address": "2001:db8::1",
                "family": "juniper",
                "created_at": body["clients"][1]["created_at"],
            },
        ]
    }
    posted = client.post(
        CLIENTS,
        json={"name": "nas3", "address": "192.0.2.251", "family": "cisco", "secret": "s"},
        headers=bearer(tokens["admin"]),
    )
    assert_problem(posted, 405)


@pytest.mark.parametrize("path", [SESSIONS, DECISIONS, RULES, CLIENTS])
def test_portal_tokens_are_refused(
    client: FlaskClient, tokens: dict[str, str], radius: dict[str, int], path: str
) -> None:
    assert_problem(client.get(path, headers=bearer(tokens["portal"])), 403)
