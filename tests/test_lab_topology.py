"""The lab's topology with 2 to 8 routers: names, uplinks, round-robin lines, address plan."""

from __future__ import annotations

import ipaddress

import pytest

from vpop.core.errors import BadInput
from vpop.lab.topology import PORTAL_ADDRESS, build_topology

UPLINK_RANGE = ipaddress.IPv4Network("198.51.100.0/24")
SUBSCRIBER_RANGE = ipaddress.IPv4Network("192.0.2.0/24")


def test_the_default_lab_keeps_two_routers_and_its_address_plan() -> None:
    topo = build_topology(4)
    assert topo.routers == ("rc1", "rc2")
    uplinks = {(u.isp, u.router): (u.address, u.next_hop) for u in topo.uplinks}
    # the plan of the two-router lab, unchanged: ISP i towards router j is 198.51.100.4(2i+j)/30
    assert uplinks[("isp-a", "rc1")] == ("198.51.100.1/30", "198.51.100.2")
    assert uplinks[("isp-a", "rc2")] == ("198.51.100.5/30", "198.51.100.6")
    assert uplinks[("isp-b", "rc1")] == ("198.51.100.9/30", "198.51.100.10")
    assert uplinks[("isp-c", "rc2")] == ("198.51.100.21/30", "198.51.100.22")
    assert [line.router for line in topo.lines] == ["rc1", "rc2", "rc1", "rc2"]


@pytest.mark.parametrize("routers", [2, 3, 4, 8])
def test_every_isp_has_an_uplink_on_every_router_and_subscribers_go_round_robin(
    routers: int,
) -> None:
    topo = build_topology(48, routers=routers)
    names = tuple(f"rc{j}" for j in range(1, routers + 1))
    assert topo.routers == names
    assert {(u.isp, u.router) for u in topo.uplinks} == {
        (isp, r) for isp in topo.isps for r in names
    }
    assert [line.router for line in topo.lines] == [names[k % routers] for k in range(48)]
    per_router = {r: sum(line.router == r for line in topo.lines) for r in names}
    assert max(per_router.values()) - min(per_router.values()) <= 1
    # each uplink its own /30 inside 198.51.100.0/24, none holding the portal address
    nets = [ipaddress.IPv4Interface(u.address).network for u in topo.uplinks]
    assert len(set(nets)) == len(nets) == 3 * routers
    portal = ipaddress.IPv4Address(PORTAL_ADDRESS)
    for net in nets:
        assert net.subnet_of(UPLINK_RANGE) and portal not in net
    for line in topo.lines:
        assert ipaddress.IPv4Interface(line.gateway).network.subnet_of(SUBSCRIBER_RANGE)
        assert line.circuit_id == f"{line.router}:{line.subscriber}"
    # each router's links: one per ISP and one per subscriber it serves
    for router in names:
        ends = [link for link in topo.links if link.a == router]
        assert len(ends) == 3 + per_router[router]


@pytest.mark.parametrize("routers", [0, 1, 9])
def test_a_router_count_outside_two_to_eight_is_bad_input(routers: int) -> None:
    with pytest.raises(BadInput, match="--routers must be between 2 and 8"):
        build_topology(4, routers=routers)
