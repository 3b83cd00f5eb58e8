"""Per-tenant diffs: an order's diff shows only its own line, even when orders share a run.

The diffs are real: the router's configuration is rendered with the real templates
(:func:`vpop.network.service.render_router`) before and after two coalesced orders and
diffed the way the deploy task does (:func:`tasks.frr_config.unified_diff`), then stored on
the run and both orders as the engine stores them; each ISP reads its order through the API.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tasks.frr_config import unified_diff
from tests.webhooks.helpers import bearer
from vpop.catalogue.models import Line, Selection
from vpop.core.db import session_scope
from vpop.network.service import render_router
from vpop.selection.diffs import line_diff, line_names
from vpop.selection.models import Order, OrderStatus, Run

# (interface, prefix, gateway) per platform for three lines: sub1 and sub2 change, sub3 is a
# neighbour in between whose stanzas would show up as context
LINES = {
    "frr": [("sub1", "192.0.2.6/32", "192.0.2.5/30"), ("sub2", "192.0.2.10/32", "192.0.2.9/30"),
            ("sub3", "192.0.2.14/32", "192.0.2.13/30")],
    "ios": [("GigabitEthernet0/1", "192.0.2.4/30", "192.0.2.5/30"),
            ("GigabitEthernet0/2", "192.0.2.8/30", "192.0.2.9/30"),
            ("GigabitEthernet0/10", "192.0.2.12/30", "192.0.2.13/30")],
    "junos": [("ge-0/0/1", "192.0.2.4/30", "192.0.2.5/30"),
              ("ge-0/0/2.100", "192.0.2.8/30", "192.0.2.9/30"),
              ("ge-0/0/2.1000", "192.0.2.12/30", "192.0.2.13/30")],
}  # fmt: skip
UPLINKS = {
    "frr": ("isp-a", "isp-b"),
    "ios": ("GigabitEthernet1/0/1", "GigabitEthernet1/0/2"),
    "junos": ("xe-0/0/1", "xe-0/0/2"),
}
SUBSCRIBERS = ("sub1", "sub2", "sub3")


def intent(platform: str, isps: tuple[str | None, str | None, str | None]) -> dict[str, Any]:
    """The router's intent with the three lines on these ISPs."""
    up_a, up_b = UPLINKS[platform]
    return {
        "router": "rc1",
        "platform": platform,
        "isps": [
            {"id": "isp-a", "instance": "vpop-isp-a", "interface": up_a,
             "address": "198.51.100.1/30", "next_hop": "198.51.100.2",
             "outbound_deny": ["203.0.113.0/24"]},
            {"id": "isp-b", "instance": "vpop-isp-b", "interface": up_b,
             "address": "198.51.100.9/30", "next_hop": "198.51.100.10", "outbound_deny": []},
        ],
        "lines": [
            {"subscriber": sub, "interface": iface, "policy": f"vpop-{iface}", "prefix": prefix,
             "gateway": gateway, "isp": isp}
            for sub, (iface, prefix, gateway), isp in zip(
                SUBSCRIBERS, LINES[platform], isps, strict=True
            )
        ],
    }  # fmt: skip


def coalesced_diff(platform: str) -> str:
    """The run's diff of two coalesced orders: sub1 isp-a -> isp-b, sub2 isp-b -> isp-a."""
    before = render_router(intent(platform, ("isp-a", "isp-b", "isp-a")))
    after = render_router(intent(platform, ("isp-b", "isp-a", "isp-a")))
    return "".join(unified_diff(before[f], after[f], f) for f in before)


def names_of(platform: str, index: int) -> tuple[str, ...]:
    iface, prefix, _ = LINES[platform][index]
    return line_names(iface, prefix, SUBSCRIBERS[index])


def mentions(text: str, platform: str, index: int) -> bool:
    """Whether ``text`` names line ``index`` in any spelling (as a whole word)."""
    return any(
        re.search(rf"(?<![A-Za-z0-9_.:/-]){re.escape(name)}(?![A-Za-z0-9_.:/-])", text)
        for name in names_of(platform, index)
    )


@pytest.mark.parametrize("platform", sorted(LINES))
def test_each_order_of_a_coalesced_run_sees_only_its_line(platform: str) -> None:
    diff = coalesced_diff(platform)
    # the run's diff names both changed lines and the neighbour in their context
    assert all(mentions(diff, platform, k) for k in (0, 1)), diff
    for mine, other in ((0, 1), (1, 0)):
        own = line_diff(diff, names_of(platform, mine))
        assert mentions(own, platform, mine), own
        assert not mentions(own, platform, other), own
        assert not mentions(own, platform, 2), own
        # every hunk header counts its lines right: the result is still a unified diff
        for hunk in re.split(r"(?m)^(?=@@ )", own)[1:]:
            header, _, body = hunk.partition("\n")
            old, new = re.match(
                r"@@ -[0-9]+(?:,([0-9]+))? \+[0-9]+(?:,([0-9]+))? @@", header
            ).groups()  # type: ignore[union-attr]  # noqa: E501
            rows = [row for row in body.splitlines() if not row.startswith(("---", "+++"))]
            assert sum(r[:1] in " -" for r in rows) == int(1 if old is None else old)
            assert sum(r[:1] in " +" for r in rows) == int(1 if new is None else new)


def test_the_frr_diff_keeps_the_whole_pbr_map_of_the_line() -> None:
    own = line_diff(coalesced_diff("frr"), names_of("frr", 0))
    assert "-pbr-map vpop-sub1 seq 10" not in own  # unchanged header: context
    assert " pbr-map vpop-sub1 seq 10\n" in own
    assert "- set nexthop-group vpop-isp-a\n+ set nexthop-group vpop-isp-b\n" in own
    assert "nexthop-group vpop-isp-a\n nexthop" not in own  # the ISPs' shared stanzas go
    assert "vpop-sub2" not in own and "192.0.2.10" not in own


def test_a_lone_order_loses_its_neighbours_context_lines() -> None:
    before = render_router(intent("frr", ("isp-a", "isp-a", "isp-a")))
    after = render_router(intent("frr", ("isp-a", "isp-b", "isp-a")))
    diff = "".join(unified_diff(before[f], after[f], f) for f in before)
    assert "vpop-sub3" in diff  # the leak this filter stops: a neighbour in the context
    own = line_diff(diff, names_of("frr", 1))
    assert "vpop-sub2" in own
    assert "sub1" not in own and "sub3" not in own and "192.0.2.6" not in own


def test_a_name_inside_a_longer_name_is_not_the_line() -> None:
    diff = (
        "--- pbr (running)\n+++ pbr (intended)\n@@ -1,3 +1,3 @@\n"
        " pbr-map vpop-eth10 seq 10\n  match src-ip 192.0.2.20/32\n"
        "- set nexthop-group vpop-isp-a\n+ set nexthop-group vpop-isp-b\n"
    )
    assert line_diff(diff, line_names("eth1", "192.0.2.2/32", "s1")) == ""
    assert line_diff(diff, line_names("eth10", "192.0.2.20/32", "s10")) == diff


def test_a_junos_unit_is_not_its_physical_interface() -> None:
    diff = (
        "--- interfaces (running)\n+++ interfaces (intended)\n@@ -1,2 +1,2 @@\n"
        '-set interfaces ge-0/0/1 unit 5 description "vpop line s5"\n'
        '+set interfaces ge-0/0/1 unit 5 description "vpop line s6"\n'
    )
    assert line_diff(diff, line_names("ge-0/0/1", "192.0.2.4/30", "s1")) == ""
    assert "s6" in line_diff(diff, line_names("ge-0/0/1.5", "192.0.2.8/30", "s6"))


@pytest.fixture
def coalesced_orders(database_url: str, tokens: dict[str, str]) -> dict[str, int]:
    """A finished run that served isp-b's order for sub1 and isp-a's for sub3 on rc1, with
    the real FRR diff of the two lines' switch (sub1 from isp-a, sub3 from isp-b)."""
    with session_scope(database_url) as session:
        lines = {
            line.subscriber_id: line
            for line in session.scalars(select(Line).where(Line.router == "rc1"))
        }

        def entry(sub: str, isp: str) -> dict[str, Any]:
            line = lines[sub]
            gateway = line.prefix.replace("/32", "/30")
            return {"subscriber": sub, "interface": line.interface,
                    "policy": f"vpop-{line.interface}", "prefix": line.prefix,
                    "gateway": gateway, "isp": isp}  # fmt: skip

        base = intent("frr", ("isp-a", "isp-b", "isp-a"))
        before = render_router({**base, "lines": [entry("sub1", "isp-a"), entry("sub3", "isp-b")]})
        after = render_router({**base, "lines": [entry("sub1", "isp-b"), entry("sub3", "isp-a")]})
        diff = "".join(unified_diff(before[f], after[f], f) for f in before)
        run = Run(router="rc1", kind="selection", trigger="orders", requester="t",
                  status="SUCCESS", diff=diff)  # fmt: skip
        session.add(run)
        session.add(Selection(line_id=lines["sub1"].id, isp_id="isp-b"))
        session.add(Selection(line_id=lines["sub3"].id, isp_id="isp-a"))
        session.flush()
        ids = {}
        for isp, sub, token_id in (("isp-b", "sub1", 5), ("isp-a", "sub3", 4)):
            order = Order(line_id=lines[sub].id, isp_id=isp, router="rc1",
                          requester=f"token:{token_id}", status=OrderStatus.DONE_SUCCESS.value,
                          run_id=run.id, diff=diff)  # fmt: skip
            session.add(order)
            session.flush()
            ids[isp] = order.id
        ids["run"] = run.id
    return ids


def test_each_isp_reads_only_its_line_of_a_shared_run(
    client: FlaskClient, tokens: dict[str, str], coalesced_orders: dict[str, int]
) -> None:
    others = {"isp-b": ("sub3", "192.0.2.14", "+3120555"), "isp-a": ("sub1", "192.0.2.6", "+3120")}
    owns = {"isp-b": "vpop-sub1", "isp-a": "vpop-sub3"}
    for isp in ("isp-a", "isp-b"):
        response = client.get(
            f"/api/v1/orders/{coalesced_orders[isp]}", headers=bearer(tokens[isp])
        )
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        view = response.get_json()
        assert owns[isp] in view["diff"]
        for leaked in others[isp][:2]:
            assert leaked not in body, (isp, leaked, view["diff"])
        assert "nexthop-group vpop-isp-a\n nexthop" not in view["diff"]
    # operators read the run's whole diff, on the order and on the run
    for isp in ("isp-a", "isp-b"):
        whole = client.get(f"/api/v1/orders/{coalesced_orders[isp]}", headers=bearer(tokens["noc"]))
        assert "vpop-sub1" in whole.get_json()["diff"] and "vpop-sub3" in whole.get_json()["diff"]
    run = client.get(f"/api/v1/runs/{coalesced_orders['run']}", headers=bearer(tokens["admin"]))
    assert "vpop-sub1" in run.get_json()["diff"] and "vpop-sub3" in run.get_json()["diff"]
