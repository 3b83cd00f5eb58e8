"""A lease created through the API is provisioned on the router (tc), and ended likewise."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.helpers import Server, netns, start_server, stop_server

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def server(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("leases"), lab)
    try:
        yield srv
    finally:
        stop_server(srv)


def root_qdisc(router: str, interface: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ip", "netns", "exec", netns(router), "tc", "-j", "qdisc", "show", "dev", interface],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return next(q for q in json.loads(out) if q.get("root"))


def wait_status(server: Server, lease_id: int, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code, body = server.get(f"/api/v1/leases/{lease_id}")
        assert code == 200, body
        if body["status"] == status:
            return
        assert time.monotonic() < deadline, f"lease {lease_id} still {body['status']}"
        time.sleep(0.05)


def test_a_lease_from_the_api_shapes_the_uplink_and_ending_it_unshapes(server: Server) -> None:
    assert root_qdisc("rc2", "isp-c")["kind"] != "tbf"
    code, lease = server.request(
        "POST",
        "/api/v1/leases",
        json.dumps(
            {
                "isp": "isp-c",
                "router": "rc2",
                "committed_mbps": 40,
                "price_minor": 90000,
                "peak_pct": 125,
            }
        ).encode(),
        {"Authorization": f"Bearer {server.token}", "content-type": "application/json"},
    )
    assert code == 201, lease
    wait_status(server, lease["lease"], "active")
    qdisc = root_qdisc("rc2", "isp-c")
    assert qdisc["kind"] == "tbf"
    assert qdisc["options"]["rate"] * 8 == 50_000_000  # 40 Mbit/s at 125 %
    code, body = server.request(
        "POST",
        f"/api/v1/leases/{lease['lease']}/end",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert code == 202, body
    wait_status(server, lease["lease"], "ended")
    assert root_qdisc("rc2", "isp-c")["kind"] != "tbf"
