"""`vpop lab up --routers 4`: four FRR routers, every ISP on each, subscribers round-robin, and
a selection on the fourth router really moves that subscriber's traffic.

The lab here is a second one (its own directory and namespace prefix, as in
test_lab_lifecycle), so the session's shared two-router lab stays as the other tests expect.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.helpers import curl, private_lab, run_vpop
from vpop.lab.builder import lab_namespaces

pytestmark = pytest.mark.lab
PREFIX = "vpop-r4-"
ROUTERS = ("rc1", "rc2", "rc3", "rc4")


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    """A four-router lab with 8 subscribers, registered in its own database: the environment
    that reaches it and what `vpop lab up` printed."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, FRR, sshd)")
    work = tmp_path_factory.mktemp("routers4")
    with private_lab(work, "r4", PREFIX, "--routers", "4", "--subscribers", "8") as lab:
        yield lab
    assert lab_namespaces(PREFIX) == []


def test_four_routers_are_up_and_reached_over_ssh(four: tuple[dict[str, str], str]) -> None:
    env, printed = four
    status = run_vpop(env, "lab", "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    lab = json.loads(status.stdout)
    assert lab["routers"] == 4
    assert sorted(n for n, v in lab["nodes"].items() if v["kind"] == "router") == list(ROUTERS)
    for router in ROUTERS:
        node = lab["nodes"][router]
        assert node["state"] == "up", node["problems"]
        assert all(p["alive"] for p in node["processes"].values()), node["processes"]
        assert f"{router} ssh 127.0.0.1:{node['ssh']['port']} cli 127.0.0.1:" in printed
    # vpop itself logs in to every router (pinned host keys, the router agent), converges
    # it to the database, and then finds nothing left to change
    converged = run_vpop(env, "reconcile")
    assert converged.returncode == 0, converged.stdout + converged.stderr
    drift = run_vpop(env, "reconcile", "--dry-run")
    assert drift.returncode == 0, drift.stdout + drift.stderr
    for router in ROUTERS:
        assert f"{router}: run " in converged.stdout and f"{router}: in sync" in drift.stdout
    # every ISP's uplink on every router is up: each router pings each ISP's end
    uplinks = json.loads(Path(lab["lab_dir"], "state.json").read_text())["uplinks"]
    assert {(u["isp"], u["router"]) for u in uplinks} == {
        (i, r) for i in ("isp-a", "isp-b", "isp-c") for r in ROUTERS
    }
    for uplink in uplinks:
        ping = subprocess.run(
            ["ip", "netns", "exec", PREFIX + uplink["router"], "ping", "-c1", "-W2"]
            + [uplink["next_hop"]],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert ping.returncode == 0, uplink


def test_subscribers_on_the_added_routers_reach_isp_a_by_default(
    four: tuple[dict[str, str], str],
) -> None:
    env, _ = four
    lab = json.loads(run_vpop(env, "lab", "status", "--json").stdout)
    lines = json.loads(Path(lab["lab_dir"], "state.json").read_text())["lines"]
    on = {line["subscriber"]: line["router"] for line in lines}
    assert on == {f"sub{k}": ROUTERS[(k - 1) % 4] for k in range(1, 9)}
    for sub in ("sub3", "sub7", "sub4", "sub8"):
        assert curl(sub, PREFIX) == "isp-a", sub


def test_a_selection_for_a_subscriber_on_rc4_moves_its_traffic(
    four: tuple[dict[str, str], str],
) -> None:
    env, _ = four
    assert curl("sub4", PREFIX) == "isp-a"
    done = run_vpop(env, "select", "sub4", "isp-c")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on rc4" in done.stdout and "DONE_SUCCESS" in done.stdout
    assert curl("sub4", PREFIX) == "isp-c"
    assert curl("sub8", PREFIX) == "isp-a"  # the same router's other subscriber is untouched
    assert curl("sub3", PREFIX) == "isp-a"
    back = run_vpop(env, "select", "sub4", "isp-a")
    assert back.returncode == 0, back.stdout + back.stderr
    assert curl("sub4", PREFIX) == "isp-a"
