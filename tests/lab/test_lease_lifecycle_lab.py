"""The lease schedule on real routers: a lease created to start a few seconds from now is
unshaped until then and shaped after; one whose planned end passes is unshaped and its open
events are closed. The server's own scheduler does both (``VPOP_LEASE_CHECK_SECONDS`` is small
here); the test only creates, renews and reads back (tc in the router's namespace).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.lab.helpers import Server, netns, start_server, stop_server

pytestmark = pytest.mark.lab

ROUTER, UPLINK = "rc2", "isp-c"
START_IN = timedelta(seconds=6)


@pytest.fixture(scope="module")
def server(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("lease-lifecycle"),
        lab,
        extra_env={"VPOP_LEASE_CHECK_SECONDS": "0.5"},
    )
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
    return next((q for q in json.loads(out) if q.get("root")), {"kind": None})


def post(server: Server, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return server.request(
        "POST",
        path,
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {server.token}", "content-type": "application/json"},
    )


def lease_status(server: Server, lease_id: int) -> str:
    code, body = server.get(f"/api/v1/leases/{lease_id}")
    assert code == 200, body
    status: str = body["status"]
    return status


def test_a_scheduled_lease_is_shaped_when_it_starts_and_unshaped_when_it_ends(
    server: Server,
) -> None:
    from vpop.core.db import session_scope
    from vpop.leasing.service import UtilisationEvent

    assert root_qdisc(ROUTER, UPLINK)["kind"] != "tbf"
    starts_at = datetime.now(UTC) + START_IN
    code, lease = post(
        server,
        "/api/v1/leases",
        {
            "isp": UPLINK,
            "router": ROUTER,
            "committed_mbps": 40,
            "price_minor": 90000,
            "peak_pct": 125,
            "starts_at": starts_at.isoformat(),
        },
    )
    assert code == 201, lease
    lease_id = lease["lease"]
    assert lease["status"] == "scheduled"

    # until its start: scheduled and unshaped (read back on the router), then shaped
    deadline = time.monotonic() + START_IN.total_seconds() + 60
    while (status := lease_status(server, lease_id)) != "active":
        assert status in ("scheduled", "provisioning"), status
        if status == "scheduled":
            assert root_qdisc(ROUTER, UPLINK)["kind"] != "tbf"
        assert time.monotonic() < deadline, f"lease {lease_id} still {status}"
        time.sleep(0.1)
    assert datetime.now(UTC) >= starts_at
    qdisc = root_qdisc(ROUTER, UPLINK)
    assert qdisc["kind"] == "tbf"
    assert qdisc["options"]["rate"] * 8 == 50_000_000  # 40 Mbit/s at 125 %

    # an open event, then a renewal that ends it a few seconds from now
    with session_scope(server.db_url) as session:
        event = UtilisationEvent(
            lease_id=lease_id,
            isp_id=UPLINK,
            kind="under",
            opened_at=datetime.now(UTC) - timedelta(minutes=1),
            extreme_pct=0.0,
        )
        session.add(event)
        session.flush()
        event_id = event.id
    ends_at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    code, version = post(
        server, f"/api/v1/leases/{lease_id}/versions", {"ends_at": ends_at.isoformat()}
    )
    assert code == 201, version
    assert (version["version"], version["reason"]) == (2, "renew")

    deadline = time.monotonic() + 60
    while (status := lease_status(server, lease_id)) != "ended":
        assert status in ("active", "ending"), status
        assert time.monotonic() < deadline, f"lease {lease_id} still {status}"
        time.sleep(0.1)
    assert datetime.now(UTC) >= ends_at
    assert root_qdisc(ROUTER, UPLINK)["kind"] != "tbf"
    code, events = server.get("/api/v1/events?open=true")
    assert code == 200 and event_id not in [e["event"] for e in events["events"]]
    code, events = server.get("/api/v1/events?open=false")
    (closed,) = [e for e in events["events"] if e["event"] == event_id]
    assert closed["closed_at"] == ends_at.isoformat()
    code, versions = server.get(f"/api/v1/leases/{lease_id}/versions")
    assert [(v["version"], v["reason"]) for v in versions["versions"]] == [
        (1, "create"),
        (2, "renew"),
    ]
