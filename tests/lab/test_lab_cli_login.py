"""Each lab router's CLI login lands in vtysh, as a real router's CLI does: Netmiko's
``cisco_ios`` driver drives it unchanged, and what it configures is the router's config."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netmiko import ConnectHandler
from netmiko.base_connection import BaseConnection

pytestmark = pytest.mark.lab

ROUTE = "ip route 203.0.113.64/26 198.51.100.10"
PBR = ["pbr-map clitest seq 10", "match src-ip 192.0.2.2/32", "set nexthop-group clitest"]


def ssh(lab: dict[str, Any], port: int, command: str) -> subprocess.CompletedProcess[str]:
    """One SSH command with the lab's key, the lab's host keys pinned strictly."""
    lab_dir = Path(lab["lab_dir"])
    return subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(lab_dir / "id_ed25519"),
            "-o",
            f"UserKnownHostsFile={lab_dir / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            str(port),
            "root@127.0.0.1",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def management_config(lab: dict[str, Any], router: str) -> str:
    """The router's running config as vpop's management login (a shell) sees it."""
    out = ssh(lab, lab["nodes"][router]["ssh"]["port"], "vtysh -c 'show running-config'")
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def cli(lab: dict[str, Any]) -> Iterator[BaseConnection]:
    """rc1's CLI login through Netmiko's cisco_ios driver, host key checked against the lab's
    known_hosts; what the test configured is removed again afterwards."""
    lab_dir = Path(lab["lab_dir"])
    node = lab["nodes"]["rc1"]["cli"]
    conn = ConnectHandler(
        device_type="cisco_ios",
        host=node["host"],
        port=node["port"],
        username=node["username"],
        key_file=str(lab_dir / "id_ed25519"),
        use_keys=True,
        allow_agent=False,
        ssh_strict=True,
        system_host_keys=False,
        alt_host_keys=True,
        alt_key_file=str(lab_dir / "known_hosts"),
    )
    try:
        yield conn
    finally:
        conn.send_config_set([f"no {ROUTE}", "no pbr-map clitest"])
        conn.disconnect()


def test_netmiko_cisco_ios_configures_the_router_through_its_vtysh_login(
    lab: dict[str, Any], cli: BaseConnection
) -> None:
    assert cli.find_prompt() == "rc1#"
    # cisco.ios sends these at login; an answer saying "Error" would fail Ansible's network_cli
    for setting in ("terminal length 0", "terminal width 512"):
        assert "error" not in str(cli.send_command(setting)).lower()
    before = management_config(lab, "rc1")
    assert ROUTE not in before and "pbr-map clitest" not in before

    out = cli.send_config_set([ROUTE, *PBR])
    assert "rc1(config)#" in out and "rc1(config-pbr-map)#" in out
    assert cli.find_prompt() == "rc1#"  # back out of configuration mode
    running = str(cli.send_command("show running-config"))
    assert ROUTE in running and "pbr-map clitest seq 10" in running
    # the same lines are the router's own config: staticd's route, pbrd's map
    after = management_config(lab, "rc1")
    assert ROUTE in after
    assert "pbr-map clitest seq 10\n match src-ip 192.0.2.2/32\n" in after

    cli.send_config_set([f"no {ROUTE}", "no pbr-map clitest"])
    cleaned = management_config(lab, "rc1")
    assert ROUTE not in cleaned and "pbr-map clitest" not in cleaned


def test_a_command_on_the_cli_login_runs_in_vtysh_with_the_pinned_host_key(
    lab: dict[str, Any],
) -> None:
    for router in ("rc1", "rc2"):
        node = lab["nodes"][router]
        assert node["cli"]["host"] == "127.0.0.1" and node["cli"]["username"] == "root"
        out = ssh(lab, node["cli"]["port"], "show running-config")
        assert out.returncode == 0, out.stderr
        assert f"hostname {router}\n" in out.stdout
        bad = ssh(lab, node["cli"]["port"], "no-such-command")
        assert bad.returncode != 0 and "Unknown command" in bad.stdout + bad.stderr
        # a shell command is not a router command there: the login is vtysh, not a shell
        assert "Unknown command" in ssh(lab, node["cli"]["port"], "ip netns list").stdout
    pins: dict[str, set[str]] = {}
    for line in (Path(lab["lab_dir"]) / "known_hosts").read_text().splitlines():
        host, kind, key = line.split()[:3]
        pins.setdefault(host, set()).add(f"{kind} {key}")
    for router in ("rc1", "rc2"):
        node = lab["nodes"][router]
        mgmt, cli_pin = f"[127.0.0.1]:{node['ssh']['port']}", f"[127.0.0.1]:{node['cli']['port']}"
        assert pins[cli_pin] == pins[mgmt]  # one sshd, one host key


def test_status_names_each_routers_cli_port(lab: dict[str, Any]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vpop.cli", "lab", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    status = json.loads(
        subprocess.run(
            [sys.executable, "-m", "vpop.cli", "lab", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    )
    assert status["routers"] == 2
    for router in ("rc1", "rc2"):
        port = status["nodes"][router]["cli"]["port"]
        assert status["nodes"][router]["processes"]["sshd"]["answers"] is True
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith(router))
        assert f"cli 127.0.0.1:{port}" in line
