"""authorize(): accepts with the family's attributes and Class, rejects saying why (Reply-Message
and the audit log), and the order that moves the line when the ISP differs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.test_aaa_support import audit_rows, hexed, seeded_database
from vpop.aaa.models import AaaDecision
from vpop.aaa.policy import REQUESTER, AuthResult, authorize, post_auth
from vpop.aaa.replies import INSTANCE_PREFIX
from vpop.aaa.rules import add_rule
from vpop.catalogue.models import Line, Selection, Subscriber
from vpop.core.db import session_scope
from vpop.identity.service import hash_password
from vpop.selection.intent import INSTANCE_PREFIX as ROUTERS_INSTANCE_PREFIX
from vpop.selection.models import Order


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, seeded SQLite database."""
    yield from seeded_database(tmp_path)


SUB3 = {"Calling-Station-Id": ["+31205550003"]}


def rule(url: str, kind: str, match: str, isp: str, priority: int = 100) -> None:
    with session_scope(url) as session:
        add_rule(session, kind, match, isp, priority=priority, actor="test")


def values_of(reply: dict[str, Any]) -> list[str]:
    """Every value in a reply, after checking each pair's shape (op, value, do_xlat false)."""
    found: list[str] = []
    for name, pair in reply.items():
        assert name.split(":", 1)[0] in ("reply", "control"), name
        assert set(pair) == {"op", "value", "do_xlat"} and pair["do_xlat"] is False, pair
        value = pair["value"]
        found.extend(value if isinstance(value, list) else [value])
    for value in found:
        assert isinstance(value, str) and "\n" not in value and "\r" not in value
    return found


def decision(url: str, result: AuthResult) -> AaaDecision:
    with session_scope(url) as session:
        return session.scalars(
            select(AaaDecision).where(AaaDecision.decision_id == result.decision_id)
        ).one()


@pytest.mark.parametrize(
    ("nas", "attribute", "expected"),
    [
        ("bng-accel", "reply:Accel-VRF-Name", "vpop-isp-c"),
        ("bng-cisco", "reply:Cisco-AVPair", ["ip:vrf-id=vpop-isp-c", "ip:ip-unnumbered=Loopback0"]),
        ("bng-juniper", "reply:ERX-Virtual-Router-Name", "vpop-isp-c"),
        ("lab", "reply:Filter-Id", "vpop-isp-c"),
        (None, "reply:Filter-Id", "vpop-isp-c"),
    ],
    ids=["accel-ppp", "cisco", "juniper", "generic", "unknown-nas"],
)
def test_accept_carries_the_isp_in_the_family_attribute_and_class(
    url: str,
    nas: str | None,
    attribute: str,
    expected: str | list[str],
) -> None:
    rule(url, "calling_prefix", "+3120555", "isp-c")
    result = authorize(SUB3, nas=nas, url=url)
    assert result.accept, result.reason
    assert result.decision_id.startswith("vpop-") and len(result.decision_id) == 37
    values_of(result.reply)
    assert result.reply[attribute]["value"] == expected
    if attribute == "reply:Cisco-AVPair":
        assert result.reply[attribute]["op"] == "+="
    assert result.reply["reply:Class"]["value"] == f"{result.decision_id};isp=isp-c"
    assert result.reply["reply:Acct-Interim-Interval"]["value"] == "300"
    assert result.reply["control:Auth-Type"]["value"] == "Accept"
    stored = decision(url, result)
    assert (stored.outcome, stored.isp_id, stored.subscriber_id, stored.nas) == (
        "accept",
        "isp-c",
        "sub3",
        nas,
    )
    assert "calling_number" in stored.reason and "rule 1" in stored.reason


def test_the_instance_name_is_the_routers_vrf_name() -> None:
    assert INSTANCE_PREFIX == ROUTERS_INSTANCE_PREFIX


@pytest.mark.parametrize(
    "attributes",
    [
        {"ADSL-Agent-Circuit-Id": [hexed("rc1:sub3")]},
        {"User-Name": ["sub3@ISP.example"]},
        {"ADSL-Agent-Remote-Id": [hexed("remote-sub3")], "Calling-Station-Id": ["0031205550003"]},
    ],
    ids=["circuit-id", "user-at-realm", "remote-id-and-number"],
)
def test_other_identifiers_and_a_realm_rule(url: str, attributes: dict[str, list[str]]) -> None:
    rule(url, "realm", "isp.example", "isp-b")
    result = authorize(attributes, nas="bng-accel", url=url)
    assert result.accept, result.reason
    assert result.reply["reply:Accel-VRF-Name"]["value"] == "vpop-isp-b"
    assert decision(url, result).subscriber_id == "sub3"


def test_an_order_moves_the_line_when_the_isp_differs(url: str) -> None:
    rule(url, "calling_prefix", "+3120555", "isp-c")
    result = authorize(SUB3, nas="bng-accel", url=url)
    stored = decision(url, result)
    assert stored.order_id is not None
    with session_scope(url) as session:
        order = session.get(Order, stored.order_id)
        assert order is not None
        assert (order.requester, order.isp_id, order.line_id) == (REQUESTER, "isp-c", 3)
        assert REQUESTER == "radius"
    (created,) = audit_rows(url, "order.create")
    assert created.actor == "radius"


def test_no_order_when_the_line_already_uses_the_isp(url: str) -> None:
    with session_scope(url) as session:
        session.add(Selection(line_id=3, isp_id="isp-a"))
    result = authorize(SUB3, nas="lab", url=url)
    assert result.accept and "confirmed selection" in result.reason
    assert result.reply["reply:Filter-Id"]["value"] == "vpop-isp-a"
    assert decision(url, result).order_id is None
    assert audit_rows(url, "order.create") == []


def test_profile_preference_then_default_isp(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with session_scope(url) as session:
        subscriber = session.get(Subscriber, "sub3")
        assert subscriber is not None
        subscriber.profile = {"isp": "isp-b"}
    assert "profile preference" in authorize(SUB3, nas="lab", url=url).reason
    monkeypatch.setenv("VPOP_RADIUS_DEFAULT_ISP", "isp-a")
    result = authorize({"Calling-Station-Id": ["+31205550002"]}, nas="lab", url=url)
    assert result.accept and "default ISP" in result.reason
    assert result.reply["reply:Filter-Id"]["value"] == "vpop-isp-a"


def test_a_profile_rule_outranks_a_prefix_rule_by_priority(url: str) -> None:
    with session_scope(url) as session:
        subscriber = session.get(Subscriber, "sub3")
        assert subscriber is not None
        subscriber.profile = {"tier": "gold"}
    rule(url, "calling_prefix", "+3120555", "isp-c")
    rule(url, "profile", "tier=gold", "isp-a", priority=500)
    assert authorize(SUB3, nas="lab", url=url).reply["reply:Filter-Id"]["value"] == "vpop-isp-a"


def _suspend(session: Any) -> None:
    subscriber = session.get(Subscriber, "sub3")
    subscriber.suspended_at = datetime(2026, 1, 1, tzinfo=UTC)


def _deactivate(session: Any) -> None:
    session.get(Line, 3).active = False


def _bind_nas(session: Any) -> None:
    session.get(Line, 3).nas = "bng-cisco"


def _password(session: Any) -> None:
    session.get(Subscriber, "sub3").password_hash = hash_password("right password")


def _nothing(session: Any) -> None:
    return None


REJECTS = {
    "unknown-number": (_nothing, {"Calling-Station-Id": ["+31209999999"]}, "unknown line"),
    "suspended": (_suspend, SUB3, "subscriber suspended"),
    "inactive-line": (_deactivate, SUB3, "line inactive"),
    "wrong-nas": (_bind_nas, SUB3, "wrong NAS"),
    "no-password": (_password, SUB3, "password required"),
    "bad-password": (_password, {**SUB3, "User-Password": ["wrong"]}, "bad password"),
    "conflict": (
        _nothing,
        {**SUB3, "ADSL-Agent-Circuit-Id": [hexed("rc1:sub1")]},
        "identifiers conflict",
    ),
    "no-isp": (_nothing, SUB3, "no ISP"),
}


@pytest.mark.parametrize("case", REJECTS.values(), ids=REJECTS.keys())
def test_each_reject_says_why_in_reply_message_and_audit(url: str, case: Any) -> None:
    prepare, attributes, why = case
    if why != "no ISP":
        rule(url, "calling_prefix", "+31", "isp-c")
    with session_scope(url) as session:
        prepare(session)
    result = authorize(attributes, nas="bng-accel", url=url)
    assert not result.accept
    assert why in result.reason
    assert list(result.reply) == ["reply:Reply-Message"]
    (message,) = values_of(result.reply)
    assert why in message
    (entry,) = audit_rows(url, "aaa.reject")
    assert entry.actor == "radius" and why in entry.details["reason"]
    assert entry.details["decision"] == result.decision_id
    assert decision(url, result).outcome == "reject"
    if why == "identifiers conflict":
        (conflict,) = audit_rows(url, "aaa.conflict")
        both = conflict.details["conflict"]
        assert {both["first"]["value"], both["second"]["value"]} == {"rc1:sub1", "+31205550003"}
    assert audit_rows(url, "order.create") == []


def test_the_right_pap_password_is_accepted(url: str) -> None:
    rule(url, "calling_prefix", "+31", "isp-c")
    with session_scope(url) as session:
        _password(session)
    assert authorize({**SUB3, "User-Password": ["right password"]}, nas="lab", url=url).accept


def test_a_line_bound_to_the_asking_nas_is_accepted(url: str) -> None:
    rule(url, "calling_prefix", "+31", "isp-c")
    with session_scope(url) as session:
        _bind_nas(session)
    assert authorize(SUB3, nas="bng-cisco", url=url).accept


def test_a_reply_message_never_carries_a_newline_or_an_expansion(url: str) -> None:
    result = authorize({"Calling-Station-Id": ["%{exec:/bin/true}\n"]}, nas="lab", url=url)
    assert not result.accept
    (message,) = values_of(result.reply)
    assert result.reply["reply:Reply-Message"]["do_xlat"] is False
    assert "\n" not in message


def test_post_auth_stores_nothing(url: str) -> None:
    assert post_auth(SUB3, nas="lab", url=url) is None
