"""The namespace lab: real FRR routers reached over SSH, real traffic between namespaces."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tasks.connection import CONNECTION_NAME
from tasks.verify import get_version
from tests.lab.helpers import netns
from vpop.lab.topology import ISPS, ROUTERS
from vpop.network.factory import open_nornir

pytestmark = pytest.mark.lab


def vpop(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vpop.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def installed_frr_version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "frr"], capture_output=True, text=True, check=True
    ).stdout
    return out.split("-")[0]


def test_every_router_answers_show_version_over_ssh(lab: dict[str, Any]) -> None:
    with open_nornir() as nr:
        assert sorted(nr.inventory.hosts) == sorted(ROUTERS)
        results = nr.run(task=get_version)
    assert not results.failed, {h: r.exception for h, r in results.failed_hosts.items()}
    for host, multi in results.items():
        parsed = multi[0].result
        assert parsed["version"] == installed_frr_version(), host
        assert parsed["os"] == "Linux"


@pytest.fixture(scope="module")
def no_selections(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    """The routers as a fresh lab leaves them: earlier tests' selections converged away."""
    from vpop.lab.registry import register_lab
    from vpop.selection import engine

    url = f"sqlite:///{tmp_path_factory.mktemp('default') / 'vpop.sqlite'}"
    register_lab(lab, url)  # a fresh database: no line has a selection
    for router in ROUTERS:
        assert engine.reconcile(router, url=url).status == "SUCCESS"


@pytest.mark.parametrize("sub", ["sub1", "sub2", "sub3", "sub4"])
def test_subscriber_traffic_leaves_through_isp_a_by_default(
    lab: dict[str, Any], no_selections: None, sub: str
) -> None:
    out = vpop("lab", "exec", sub, "--", "curl", "-sS", "-m", "5", "http://203.0.113.100/")
    assert out.stdout.strip() == "isp-a"


def test_status_json_lists_nodes_namespaces_and_ports(lab: dict[str, Any]) -> None:
    status = json.loads(vpop("lab", "status", "--json").stdout)
    assert status["up"] is True
    expected = {*ROUTERS, *ISPS, *(f"sub{i}" for i in range(1, 9))}
    assert set(status["nodes"]) == expected
    assert sorted(status["namespaces"]) == sorted(netns(n) for n in expected)
    for router in ROUTERS:
        assert status["nodes"][router]["ssh"]["host"] == "127.0.0.1"
        assert status["nodes"][router]["ssh"]["port"] > 0


def test_exec_returns_the_commands_exit_code(lab: dict[str, Any]) -> None:
    assert vpop("lab", "exec", "sub1", "--", "sh", "-c", "exit 3", check=False).returncode == 3
    bad = vpop("lab", "exec", "nosuch", "--", "true", check=False)
    assert bad.returncode == 2
    assert "unknown lab node" in bad.stderr


def test_a_router_session_configures_routing_acls_and_shaping(lab: dict[str, Any]) -> None:
    with open_nornir() as nr:
        shell = nr.inventory.hosts["rc1"].get_connection(CONNECTION_NAME, nr.config)
        try:
            assert shell.vtysh("conf t", "ip route 203.0.113.0/26 198.51.100.10").ok
            routes = json.loads(shell.vtysh("show ip route 203.0.113.0/26 json").output)
            assert routes["203.0.113.0/26"][0]["nexthops"][0]["ip"] == "198.51.100.10"
            assert shell.run("nft add table inet vpoptest").ok
            tables = json.loads(shell.run("nft -j list tables").output)["nftables"]
            assert any(t.get("table", {}).get("name") == "vpoptest" for t in tables)
            assert shell.run(
                "tc qdisc add dev isp-b root tbf rate 10mbit burst 32k latency 50ms"
            ).ok
            assert "tbf" in shell.run("tc qdisc show dev isp-b").output
            assert not shell.vtysh("conf t", "no-such-command").ok
        finally:
            shell.vtysh("conf t", "no ip route 203.0.113.0/26 198.51.100.10")
            shell.run("nft delete table inet vpoptest")
            shell.run("tc qdisc del dev isp-b root")
