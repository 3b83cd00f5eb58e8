"""The Nornir hosts file a lab writes for its routers (read by :mod:`vpop.network.factory`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tasks.connection import CONNECTION_NAME
from vpop.lab.drill_agent import write_drill_agent
from vpop.lab.topology import DEFAULT_ISP, Topology


def write_inventory(
    path: Path, topo: Topology, ports: dict[str, int], known_hosts: Path | None = None
) -> None:
    """Write the Nornir hosts file for the lab's routers (management on 127.0.0.1 ports).

    The routers' ``vpop_shell`` sessions run the lab's drill agent, written beside the file
    (:mod:`vpop.lab.drill_agent`: the product agent plus the cut-after drill). Their
    host keys are pinned in ``known_hosts``, which each host's data names.
    """
    agent_file = write_drill_agent(path.parent)
    hosts: dict[str, Any] = {}
    for router in topo.routers:
        hosts[router] = {
            "hostname": "127.0.0.1",
            "port": ports[router],
            "groups": ["frr", "lab"],
            "connection_options": {CONNECTION_NAME: {"extras": {"agent_file": str(agent_file)}}},
            "data": {
                **({"known_hosts": str(known_hosts)} if known_hosts else {}),
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
