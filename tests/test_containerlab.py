"""lab/vpop.clab.yml describes the same topology as the namespace lab."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from vpop.lab.topology import PORTAL_ADDRESS, SERVICE_ADDRESS, build_topology

CLAB = Path(__file__).resolve().parent.parent / "lab" / "vpop.clab.yml"


def test_clab_file_has_the_namespace_labs_nodes_links_and_addresses() -> None:
    clab = yaml.safe_load(CLAB.read_text())
    topo = build_topology(4, routers=2)  # the file is the default two-router lab
    nodes = clab["topology"]["nodes"]
    assert set(nodes) == set(topo.nodes)
    links = {tuple(link["endpoints"]) for link in clab["topology"]["links"]}
    expected = {(f"{x.a}:{x.a_ifname}", f"{x.b}:{x.b_ifname}") for x in topo.links}
    assert links == expected
    for link in topo.links:
        assert f"ip addr add {link.a_address} dev {link.a_ifname}" in nodes[link.a]["exec"]
        assert f"ip addr add {link.b_address} dev {link.b_ifname}" in nodes[link.b]["exec"]
    for router in topo.routers:
        assert re.match(r"quay\.io/frrouting/frr:", nodes[router]["image"])
        assert f"ip addr add {PORTAL_ADDRESS}/32 dev lo" in nodes[router]["exec"]
    for isp in topo.isps:
        assert f"ip addr add {SERVICE_ADDRESS}/32 dev lo" in nodes[isp]["exec"]
