"""End to end in the lab: signed webhooks move real traffic, through a real `vpop serve`."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.lab.helpers import Server, curl, pbrd_config, start_server, stop_server
from vpop.lab.builder import Lab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def server(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("serve"), lab)
    try:
        # the routers may carry earlier modules' selections: converge them to this database
        done = srv.cli("reconcile")
        assert done.returncode == 0, done.stdout + done.stderr
        yield srv
    finally:
        stop_server(srv)


def select_and_wait(server: Server, sub: str, isp: str, **extra: Any) -> dict[str, Any]:
    status, body = server.select({"subscriber": sub, "isp": isp, **extra})
    assert status == 202, body
    assert body["status"] == "RECEIVED"
    return server.wait_order(body["order"])


def test_signed_selection_moves_only_that_subscribers_traffic(server: Server) -> None:
    assert curl("sub1") == "isp-a"
    order = select_and_wait(server, "sub1", "isp-b")
    assert order["status"] == "DONE_SUCCESS", order
    assert "+ set nexthop-group vpop-isp-b" in order["diff"]
    assert curl("sub1") == "isp-b"
    assert curl("sub2") == "isp-a"
    assert curl("sub3") == "isp-a"  # same router as sub1, untouched
    for isp in ("isp-c", "isp-a"):
        order = select_and_wait(server, "sub1", isp)
        assert order["status"] == "DONE_SUCCESS", order
        assert curl("sub1") == isp
    status, sub = server.get("/api/v1/subscribers/sub1")
    assert status == 200
    assert sub["lines"][0]["current_isp"] == "isp-a"


def test_dry_run_returns_the_diff_and_changes_nothing(server: Server, lab: dict[str, Any]) -> None:
    before = pbrd_config("rc2", lab["lab_dir"])
    previous = curl("sub2")
    order = select_and_wait(server, "sub2", "isp-c", dry_run=True)
    assert order["status"] == "DONE_SUCCESS"
    assert order["dry_run"] is True
    assert "+ set nexthop-group vpop-isp-c" in order["diff"]
    assert pbrd_config("rc2", lab["lab_dir"]) == before
    assert curl("sub2") == previous
    status, run = server.get(f"/api/v1/runs/{order['run']}")
    assert status == 200 and run["dry_run"] is True


def test_line_identifier_may_stand_for_the_subscriber(server: Server) -> None:
    order = select_and_wait(server, "sub4", "isp-b")
    assert order["status"] == "DONE_SUCCESS"
    status, body = server.select({"calling_number": "+31205550004", "isp": "isp-c"})
    assert status == 202, body
    assert server.wait_order(body["order"])["status"] == "DONE_SUCCESS"
    assert curl("sub4") == "isp-c"


def test_cli_select_prints_diff_progress_and_result(server: Server) -> None:
    done = server.cli("select", "sub3", "isp-c")
    assert done.returncode == 0, done.stderr
    assert "RECEIVED" in done.stdout and "DONE_SUCCESS" in done.stdout
    assert "+ set nexthop-group vpop-isp-c" in done.stdout
    assert curl("sub3") == "isp-c"
    bad = server.cli("select", "sub3", "no such isp")
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1
    listed = server.cli("runs", "list", "--limit", "5")
    assert listed.returncode == 0 and "rc1" in listed.stdout


def test_concurrent_selections_with_replays(server: Server, lab: dict[str, Any]) -> None:
    rng = random.Random(7)
    subs = [f"sub{i}" for i in range(1, 9)]
    isps = ["isp-a", "isp-b", "isp-c"]
    unique = [(f"conc-{i}", rng.choice(subs), rng.choice(isps)) for i in range(35)]
    replays = [unique[i] for i in rng.sample(range(35), 15)]  # 30 % of 50 are replays
    requests = unique + replays
    rng.shuffle(requests)

    def send(req: tuple[str, str, str]) -> tuple[str, int]:
        msg_id, sub, isp = req
        status, body = server.select({"subscriber": sub, "isp": isp}, msg_id=msg_id)
        assert status == 202, body
        return msg_id, body["order"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(send, requests))
    by_key: dict[str, set[int]] = {}
    for msg_id, order_id in answers:
        by_key.setdefault(msg_id, set()).add(order_id)
    assert all(len(ids) == 1 for ids in by_key.values()), "a replay created a second order"
    order_ids = {next(iter(ids)) for ids in by_key.values()}
    assert len(order_ids) == 35
    orders = {oid: server.wait_order(oid) for oid in order_ids}
    bad = {k: (o["status"], o["error"]) for k, o in orders.items() if o["status"] != "DONE_SUCCESS"}
    assert not bad, bad
    # the last order per subscriber decides, and real traffic agrees with the database
    key_of = {oid: msg for msg, ids in by_key.items() for oid in ids}
    sub_of = {msg: sub for msg, sub, _ in unique}
    isp_of = {msg: isp for msg, _, isp in unique}
    last: dict[str, int] = {}
    for oid in sorted(order_ids):
        last[sub_of[key_of[oid]]] = oid
    for sub, oid in last.items():
        expected = isp_of[key_of[oid]]
        status, view = server.get(f"/api/v1/subscribers/{sub}")
        assert view["lines"][0]["current_isp"] == expected
        assert curl(sub) == expected, sub
    drift = server.cli("reconcile", "--dry-run")
    assert drift.returncode == 0
    assert "rc1: in sync" in drift.stdout and "rc2: in sync" in drift.stdout


def test_unreachable_router_fails_its_orders_only(server: Server, lab: dict[str, Any]) -> None:
    instance = Lab(Path(lab["lab_dir"]))
    sub1_target = next(i for i in ("isp-b", "isp-c") if i != curl("sub1"))
    sub2_before = curl("sub2")
    sub2_target = next(i for i in ("isp-b", "isp-c") if i != sub2_before)
    instance.cut_management("rc2")
    try:
        ok = server.select({"subscriber": "sub1", "isp": sub1_target})[1]["order"]
        bad = server.select({"subscriber": "sub2", "isp": sub2_target})[1]["order"]
        good, failed = server.wait_order(ok), server.wait_order(bad)
    finally:
        instance.restore_management("rc2")
    assert good["status"] == "DONE_SUCCESS"
    assert failed["status"] == "DONE_FAILED"
    assert "unreachable" in failed["error"] and "nothing was changed" in failed["error"]
    assert curl("sub1") == sub1_target
    assert curl("sub2") == sub2_before
    # once reachable again, the same request succeeds
    again = server.select({"subscriber": "sub2", "isp": sub2_target})[1]["order"]
    assert server.wait_order(again)["status"] == "DONE_SUCCESS"
    assert curl("sub2") == sub2_target


def test_push_cut_midway_is_unknown_then_reconciled(server: Server, lab: dict[str, Any]) -> None:
    instance = Lab(Path(lab["lab_dir"]))
    before = curl("sub5")  # sub5 is on rc1
    target = next(i for i in ("isp-b", "isp-c") if i != before)
    instance.set_fault("rc1", "cut-after:1")
    try:
        status, body = server.select({"subscriber": "sub5", "isp": target})
        assert status == 202
        deadline_order = server.wait_order(body["order"], timeout=90)
    finally:
        instance.set_fault("rc1", None)
    assert deadline_order["status"] == "RECONCILED", deadline_order
    assert "broke during the push" in deadline_order["error"]
    assert curl("sub5") == before  # converged back to the confirmed selection
    drift = server.cli("reconcile", "--dry-run", "--router", "rc1")
    assert "rc1: in sync" in drift.stdout
    status, run_list = server.get("/api/v1/runs?router=rc1&limit=50")
    assert status == 200
    assert any(r["kind"] == "reconcile" and r["status"] == "SUCCESS" for r in run_list["runs"])


def test_requester_gets_a_signed_callback_when_the_order_ends(server: Server) -> None:
    import http.server
    import json
    import threading

    from standardwebhooks.webhooks import Webhook

    from tests.lab.helpers import SECRET

    received: list[tuple[dict[str, str], bytes]] = []
    arrived = threading.Event()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((dict(self.headers.items()), body))
            status = 503 if len(received) == 1 else 204  # the first try fails: retried
            self.send_response(status)
            self.end_headers()
            if status == 204:
                arrived.set()

        def log_message(self, *args: object) -> None:
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        target = next(i for i in ("isp-b", "isp-c") if i != curl("sub6"))
        callback = f"http://127.0.0.1:{receiver.server_port}/vpop"
        status, body = server.select(
            {"subscriber": "sub6", "isp": target, "callback_url": callback}
        )
        assert status == 202
        server.wait_order(body["order"])
        assert arrived.wait(30), "no callback arrived after the retry"
    finally:
        receiver.shutdown()
        receiver.server_close()
    headers, payload = received[-1]
    lowered = {k.lower(): v for k, v in headers.items()}
    Webhook(SECRET).verify(payload, lowered)  # raises if the signature is wrong
    event = json.loads(payload)
    assert event["type"] == "order.finished"
    assert event["data"]["order"] == body["order"]
    assert event["data"]["status"] == "DONE_SUCCESS"
    assert len(received) == 2  # one failure, one retry that succeeded
    # the receiver answered before the worker records the outcome: wait (bounded) until the
    # order no longer shows the first, failed try
    deadline = time.monotonic() + 30
    while True:
        _, view = server.get(f"/api/v1/orders/{body['order']}")
        if not (view["callback"] or "").startswith("failed") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert view["callback"].startswith("delivered")


def test_a_change_the_router_does_not_install_is_rolled_back(
    server: Server, lab: dict[str, Any]
) -> None:
    from sqlalchemy import select

    from vpop.catalogue.models import Line, Subscriber
    from vpop.core.db import session_scope

    # a line whose port is missing on the router: pbrd takes the config, never installs it
    with session_scope(server.db_url) as session:
        if session.get(Subscriber, "ghost") is None:
            session.add(Subscriber(id="ghost", name="ghost", profile={}))
            session.flush()
            session.add(
                Line(
                    subscriber_id="ghost",
                    router="rc1",
                    interface="ghost0",
                    prefix="203.0.113.74/32",
                    gateway="203.0.113.73/30",
                )
            )
        line = session.scalars(select(Line).where(Line.subscriber_id == "ghost")).one()
        assert line.selection is None
    before = pbrd_config("rc1", lab["lab_dir"])
    status, body = server.select({"subscriber": "ghost", "isp": "isp-b"})
    assert status == 202
    order = server.wait_order(body["order"])
    assert order["status"] == "DONE_FAILED", order
    assert "did not install" in order["error"] and "rolled back" in order["error"]
    assert pbrd_config("rc1", lab["lab_dir"]) == before
    _, view = server.get("/api/v1/subscribers/ghost")
    assert view["lines"][0]["current_isp"] is None
