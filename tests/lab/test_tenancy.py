"""Per-tenant views in the lab: two ISPs' orders coalesced into one real run on rc1, each ISP
reading its own order (and the other's, and the other's customer) through the API.

isp-b and isp-c each ask for a line on rc1 that is not theirs (sub5, sub7); sub5's request is
confirmed in the test's process (recorded, not queued: the test process wires no queue), then
sub7's through its consent link on the server, both while the test holds rc1's lock: the
worker then takes both RECEIVED orders into one run, so they share one diff on the router.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.consent_helpers import as_token, confirm_by_link, isp_token, wait_final
from tests.lab.helpers import Server, curl, start_server, stop_server

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def server(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`vpop serve` on the lab (API only); stopped afterwards."""
    running = start_server(tmp_path_factory.mktemp("tenancy"), lab)
    try:
        yield running
    finally:
        stop_server(running)


def test_two_isps_orders_in_one_run_each_see_only_their_line(
    server: Server, tmp_path: Path
) -> None:
    from vpop.selection.service import answer_consent, router_lock

    # earlier modules may have left sub5 or sub7 on isp-b or isp-c on the router: converge the
    # routers to this server's database (every line on its default) so that each order's
    # diff names only its own line's move from the default
    done = server.cli("reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    tokens = {isp: isp_token(server, isp) for isp in ("isp-b", "isp-c")}
    asks = {"isp-b": "sub5", "isp-c": "sub7"}
    pending: dict[str, dict[str, Any]] = {}
    for isp, sub in asks.items():
        status, body = as_token(
            server, tokens[isp], "POST", "/api/v1/selections", {"subscriber": sub, "isp": isp}
        )
        assert status == 202 and body["status"] == "PENDING_CONSENT", body
        pending[isp] = body
    # rc1's lock held meanwhile: a worker that looks between the two answers (its safety look
    # runs after any quiet second) cannot take the first order alone; once it is let go,
    # the worker's next look finds both waiting
    with router_lock("rc1", url=server.db_url):
        answer_consent(
            pending["isp-b"]["order"], confirm=True, actor="portal:sub5", url=server.db_url
        )
        confirm_by_link(server.base, pending["isp-c"]["consent_url"])

    views = {isp: wait_final(server, tokens[isp], pending[isp]["order"]) for isp in asks}
    assert {view["status"] for view in views.values()} == {"DONE_SUCCESS"}, views
    run_ids = {view["run"] for view in views.values()}
    assert len(run_ids) == 1, f"the orders were not coalesced: runs {run_ids}"
    status, run = server.get(f"/api/v1/runs/{run_ids.pop()}")  # the noc token
    assert status == 200
    assert "vpop-sub5" in run["diff"] and "vpop-sub7" in run["diff"], run["diff"]

    for isp, sub in asks.items():
        other_isp, other_sub = next((i, s) for i, s in asks.items() if i != isp)
        view = views[isp]
        assert f"pbr-map vpop-{sub} " in view["diff"], view["diff"]
        assert other_sub not in view["diff"] and f"vpop-{other_isp}" not in view["diff"]
        # the other's order, and the other's new customer, are "not there"
        status, _ = as_token(
            server, tokens[isp], "GET", f"/api/v1/orders/{views[other_isp]['order']}"
        )
        assert status == 404
        status, _ = as_token(server, tokens[isp], "GET", f"/api/v1/subscribers/{other_sub}")
        assert status == 404
        status, mine = as_token(server, tokens[isp], "GET", f"/api/v1/subscribers/{sub}")
        assert status == 200 and mine["lines"][0]["current_isp"] == isp
        for path in ("/api/v1/runs", "/metrics"):
            assert as_token(server, tokens[isp], "GET", path)[0] == 403
    assert curl("sub5") == "isp-b"
    assert curl("sub7") == "isp-c"
