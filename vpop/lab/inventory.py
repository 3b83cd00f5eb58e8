"""The Nornir hosts file a lab writes for its routers (read by :mod:`vpop.network.factory`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vpop.lab.topology import DEFAULT_ISP, Topology


def write_inventory(path: Path, topo: Topology, ports: dict[str, int]) -> None:
    """Write the Nornir hosts file for the lab's routers (management on 127.0.0.1 ports)."""
    hosts: dict[str, Any] = {}
    for router in topo.routers:
        hosts[router] = {
            "hostname": "127.0.0.1",
            "port": ports[router],
            "groups": ["frr", "lab"],
            "data": {
                "default_isp": DEFAULT_ISP,
                "uplinks": {
                    u.isp: {
                        "interface": u.interface,
                        "address": u.address,
                        "next_hop": u.next_hop,
                    }
                    for u in topo.uplinks
                    if u.router == router
                },
            },
        }
    path.write_text(
        "# written by `vpop lab up`; removed by `vpop lab down`\n"
        + yaml.safe_dump(hosts, sort_keys=True)
    )
