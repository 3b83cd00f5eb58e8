"""Scale-out: a second `vpop worker` process shares the queue with `vpop serve`; orders for
the same routers are still applied one run at a time per router, none lost or doubled."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.lab.helpers import Server, curl, start_server, stop_server

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def cluster(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("scale"), lab)
    log = (srv.log.parent / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "vpop.cli", "worker", "--workers", "2"],
        env=srv.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        assert srv.cli("reconcile").returncode == 0
        yield srv
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=15)
        log.close()
        stop_server(srv)


def test_orders_are_shared_between_processes_and_none_is_lost(cluster: Server) -> None:
    plan = [(f"sub{i % 8 + 1}", ("isp-b", "isp-c", "isp-a")[i % 3]) for i in range(24)]

    def send(item: tuple[str, str]) -> int:
        status, body = cluster.select({"subscriber": item[0], "isp": item[1]})
        assert status == 202, body
        return int(body["order"])

    with ThreadPoolExecutor(max_workers=12) as pool:
        ids = list(pool.map(send, plan))
    assert len(set(ids)) == len(plan)
    orders = [cluster.wait_order(i) for i in ids]
    assert all(o["status"] == "DONE_SUCCESS" for o in orders), [
        (o["order"], o["status"], o["error"]) for o in orders if o["status"] != "DONE_SUCCESS"
    ]
    # orders of one line are applied in id order, so the highest id per line decides
    by_sub: dict[str, tuple[int, str]] = {}
    for (sub, isp), order_id in zip(plan, ids, strict=True):
        if sub not in by_sub or order_id > by_sub[sub][0]:
            by_sub[sub] = (order_id, isp)
    for sub, (_, isp) in by_sub.items():
        assert curl(sub) == isp, sub
    drift = cluster.cli("reconcile", "--dry-run")
    assert "rc1: in sync" in drift.stdout and "rc2: in sync" in drift.stdout
