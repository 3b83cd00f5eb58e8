"""`vpop lab status` tells a dead sshd or FRR daemon from a live one; `vpop lab restore`
brings the router back, and an SSH-based selection works again (a lab of its own)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.helpers import curl, private_lab
from tests.lab.helpers import run_vpop as vpop

pytestmark = pytest.mark.lab
PREFIX = "vpop-r-"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A two-subscriber lab (prefix vpop-r-) built by `vpop lab up`, registered in a fresh
    database; taken down afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, FRR, sshd)")
    work = tmp_path_factory.mktemp("restore")
    with private_lab(work, "restore", PREFIX, "--subscribers", "2") as (environment, _):
        yield environment


def recorded_pid(env: dict[str, str], what: str) -> int:
    """The newest PID the lab recorded for ``what`` (``sshd rc1``, ``rc1/zebra``)."""
    lines = (Path(env["VPOP_LAB_DIR"]) / "pids").read_text().splitlines()
    return [int(line.split()[0]) for line in lines if line.split(maxsplit=2)[2] == what][-1]


def status_line(output: str, node: str) -> str:
    """The line of `vpop lab status` for ``node``."""
    return next(line for line in output.splitlines() if line.split()[0] == node)


def assert_up(env: dict[str, str]) -> None:
    status = vpop(env, "lab", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert " up " in status_line(status.stdout, "rc1") + " "
    assert "DEAD" not in status.stdout and status.stderr == ""


def select(env: dict[str, str], isp: str) -> None:
    """`vpop select sub1 ISP` succeeds and sub1's traffic leaves through ISP."""
    done = vpop(env, "select", "sub1", isp)
    assert done.returncode == 0, done.stdout + done.stderr
    assert curl("sub1", PREFIX) == isp


def test_a_dead_sshd_is_degraded_and_restore_brings_management_back(
    env: dict[str, str],
) -> None:
    assert_up(env)
    pid = recorded_pid(env, "sshd rc1")
    os.kill(pid, signal.SIGKILL)
    status = vpop(env, "lab", "status")
    assert status.returncode == 1
    line = status_line(status.stdout, "rc1")
    assert "DEGRADED" in line and "sshd DEAD" in line and "zebra" in line
    assert " up " in status_line(status.stdout, "rc2") + " "
    (error,) = status.stderr.splitlines()
    assert error.startswith("error: VPOP-LAB: ") and f"sshd dead (pid {pid})" in error
    assert "`vpop lab restore rc1`" in error
    assert vpop(env, "select", "sub1", "isp-b").returncode != 0  # unreachable: no change

    restored = vpop(env, "lab", "restore", "rc1")
    assert restored.returncode == 0, restored.stderr
    assert "restarted sshd" in restored.stdout
    assert_up(env)
    select(env, "isp-b")
    again = vpop(env, "lab", "restore", "rc1")
    assert again.returncode == 0 and "nothing to restore" in again.stdout


def test_a_dead_frr_daemon_is_degraded_and_restore_restarts_the_daemons(
    env: dict[str, str],
) -> None:
    assert_up(env)
    os.kill(recorded_pid(env, "rc1/zebra"), signal.SIGKILL)
    status = vpop(env, "lab", "status", "--json")
    assert status.returncode == 1
    rc1 = json.loads(status.stdout)["nodes"]["rc1"]
    assert rc1["state"] == "degraded"
    assert rc1["processes"]["zebra"]["alive"] is False
    assert rc1["processes"]["sshd"]["answers"] is True

    restored = vpop(env, "lab", "restore", "rc1")
    assert restored.returncode == 0, restored.stderr
    assert "restarted zebra, staticd, pbrd" in restored.stdout
    assert "vpop reconcile --router rc1" in restored.stdout
    assert_up(env)
    select(env, "isp-c")


def test_restoring_an_unknown_router_is_one_line_exit_2(env: dict[str, str]) -> None:
    result = vpop(env, "lab", "restore", "rc9")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: VPOP-404-ROUTER: unknown lab router 'rc9'")
    assert result.stdout == ""
