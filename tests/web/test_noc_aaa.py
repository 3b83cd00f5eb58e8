"""The NOC's AAA pages: sessions (live and past) with filters, the decision log, rules (added
and removed with CSRF, audited) and the NAS clients (never their secrets)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.web.helpers import form_token, text
from vpop.aaa.models import AaaDecision, AaaRule, RadiusClient, RadiusSession
from vpop.catalogue.models import Line
from vpop.core.audit import AuditEntry
from vpop.core.db import session_scope
from vpop.core.time import utcnow


@pytest.fixture
def radius(database_url: str) -> dict[str, int]:
    """Two NAS clients, a live session of sub1 (isp-a) and an ended one of sub2 (isp-b), an
    accept for sub1 and a reject for sub2; the line ids by subscriber."""
    now = utcnow()
    with session_scope(database_url) as db:
        lines = {line.subscriber_id: line.id for line in db.scalars(select(Line))}
        db.add(RadiusClient(name="nas1", address="192.0.2.250", family="accel-ppp"))
        db.add(RadiusClient(name="nas2", address="192.0.2.251", family="cisco"))
        for nas, session_id, sub, isp, stopped in (
            ("nas1", "live-sub1", "sub1", "isp-a", None),
            ("nas2", "ended-sub2", "sub2", "isp-b", now - timedelta(minutes=1)),
        ):
            db.add(
                RadiusSession(
                    nas=nas,
                    acct_session_id=session_id,
                    line_id=lines[sub],
                    subscriber_id=sub,
                    isp_id=isp,
                    started_at=now - timedelta(hours=1),
                    updated_at=now,
                    stopped_at=stopped,
                    closed_by="stop" if stopped else None,
                )
            )
        db.add(
            AaaDecision(
                decision_id="vpop-accept-1",
                nas="nas1",
                line_id=lines["sub1"],
                subscriber_id="sub1",
                isp_id="isp-a",
                outcome="accept",
                reason="rule 3: calling_prefix +3120555",
                identifiers={"calling_number": "+31205550001"},
            )
        )
        db.add(
            AaaDecision(
                decision_id="vpop-reject-1",
                nas="nas2",
                subscriber_id="sub2",
                outcome="reject",
                reason="subscriber sub2 is suspended",
                identifiers={"calling_number": "+31205550002"},
            )
        )
    return lines


def test_the_nav_links_to_the_aaa_pages(noc: FlaskClient) -> None:
    page = text(noc.get("/noc/orders"))
    assert 'href="/noc/radius/sessions"' in page


def test_sessions_live_and_past_with_filters(noc: FlaskClient, radius: dict[str, int]) -> None:
    page = noc.get("/noc/radius/sessions")
    assert page.status_code == 200
    body = text(page)
    assert "live-sub1" in body and "ended-sub2" in body
    assert body.count("data-live") == 1
    live = text(noc.get("/noc/radius/sessions?state=live"))
    assert "live-sub1" in live and "ended-sub2" not in live
    ended = text(noc.get("/noc/radius/sessions?state=ended"))
    assert "ended-sub2" in ended and "live-sub1" not in ended
    by_isp = text(noc.get("/noc/radius/sessions?isp=isp-b"))
    assert "ended-sub2" in by_isp and "live-sub1" not in by_isp
    by_nas = text(noc.get("/noc/radius/sessions?nas=nas1&subscriber=sub1"))
    assert "live-sub1" in by_nas and "ended-sub2" not in by_nas


@pytest.mark.parametrize(
    "path",
    [
        "/noc/radius/sessions?state=maybe",
        "/noc/radius/sessions?isp=Not%20An%20Id",
        "/noc/aaa/decisions?outcome=perhaps",
        "/noc/radius/sessions?nas=a&nas=b",
    ],
    ids=["state", "isp", "outcome", "repeated"],
)
def test_bad_filters_are_an_error_page(noc: FlaskClient, path: str) -> None:
    response = noc.get(path)
    assert response.status_code == 422
    assert response.mimetype == "text/html"


def test_the_decision_log_says_why(noc: FlaskClient, radius: dict[str, int]) -> None:
    body = text(noc.get("/noc/aaa/decisions"))
    assert "rule 3: calling_prefix +3120555" in body
    assert "subscriber sub2 is suspended" in body
    rejects = text(noc.get("/noc/aaa/decisions?outcome=reject"))
    assert "vpop-reject-1" in rejects and "vpop-accept-1" not in rejects


def test_rules_are_added_and_removed_with_csrf_and_audited(
    noc: FlaskClient, database_url: str
) -> None:
    page = noc.get("/noc/aaa/rules")
    assert "No rules" in text(page)
    token = form_token(page)
    added = noc.post(
        "/noc/aaa/rules",
        data={
            "csrf_token": token,
            "kind": "calling_prefix",
            "match": "+3120555",
            "isp": "isp-c",
            "priority": "200",
        },
    )
    assert added.status_code == 303, text(added)
    with session_scope(database_url) as db:
        rule = db.scalars(select(AaaRule)).one()
        rule_id = rule.id
        assert (rule.kind, rule.match, rule.isp_id, rule.priority) == (
            "calling_prefix",
            "+3120555",
            "isp-c",
            200,
        )
    listed = text(noc.get("/noc/aaa/rules"))
    assert f'data-rule-row="{rule_id}"' in listed and "is added" in listed
    removed = noc.post(f"/noc/aaa/rules/{rule_id}/remove", data={"csrf_token": token})
    assert removed.status_code == 303
    with session_scope(database_url) as db:
        assert db.scalars(select(AaaRule)).first() is None
        entries = [
            (entry.actor, entry.action, entry.object)
            for entry in db.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.like("aaa_rule.%"))
                .order_by(AuditEntry.id)
            )
        ]
    assert entries == [
        ("user:alice", "aaa_rule.create", f"aaa_rule:{rule_id}"),
        ("user:alice", "aaa_rule.remove", f"aaa_rule:{rule_id}"),
    ]
    assert (
        noc.post(f"/noc/aaa/rules/{rule_id}/remove", data={"csrf_token": token}).status_code == 404
    )


def test_a_refused_rule_shows_the_reason_and_keeps_the_form(
    noc: FlaskClient, database_url: str
) -> None:
    token = form_token(noc.get("/noc/aaa/rules"))
    response = noc.post(
        "/noc/aaa/rules",
        data={"csrf_token": token, "kind": "calling_prefix", "match": "0031", "isp": "isp-a"},
    )
    assert response.status_code == 422
    body = text(response)
    assert "data-form-error" in body and "E.164" in body
    assert 'value="0031"' in body
    unknown = noc.post(
        "/noc/aaa/rules",
        data={"csrf_token": token, "kind": "realm", "match": "x.example", "isp": "isp-zz"},
    )
    assert unknown.status_code == 404 and "isp-zz" in text(unknown)
    with session_scope(database_url) as db:
        assert db.scalars(select(AaaRule)).first() is None


def test_rule_forms_need_the_csrf_token(noc: FlaskClient, database_url: str) -> None:
    fields = {"kind": "realm", "match": "x.example", "isp": "isp-a"}
    assert noc.post("/noc/aaa/rules", data=fields).status_code == 400
    assert noc.post("/noc/aaa/rules", data={"csrf_token": "forged", **fields}).status_code == 400
    with session_scope(database_url) as db:
        db.add(AaaRule(kind="realm", match="x.example", isp_id="isp-a"))
        db.flush()
        rule_id = db.scalars(select(AaaRule.id)).one()
    assert noc.post(f"/noc/aaa/rules/{rule_id}/remove").status_code == 400
    with session_scope(database_url) as db:
        assert db.get(AaaRule, rule_id) is not None


def test_the_nas_clients_are_listed_without_secrets(
    noc: FlaskClient, radius: dict[str, int]
) -> None:
    body = text(noc.get("/noc/radius/clients"))
    assert 'data-client-row="nas1"' in body and 'data-client-row="nas2"' in body
    assert "accel-ppp" in body and "cisco" in body
    assert "secret" not in body.lower().replace("secrets are never shown", "")


@pytest.mark.parametrize(
    "path", ["/noc/radius/sessions", "/noc/aaa/decisions", "/noc/aaa/rules", "/noc/radius/clients"]
)
def test_the_pages_need_a_signed_in_user(app: Flask, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 303
    assert "/noc/login" in response.headers["Location"]
