"""Accounting in the lab (issue 11): a known upload is counted where a bill reads it.

A real ``vpop serve`` polls rc1's counters on its own every second (its Monitor thread; the
test never calls the poll function). sub1 is put on isp-b by a signed selection and uploads a
known amount to the isp-b host's TCP discard sink; what sub1's interface really put on the
wire (``ip -s -j link``: Layer-2 bytes) must be within 2 % of sub1's open isp-b session and
of isp-b's usage for the window, both read over the API. sub1 then moves to isp-c: the isp-b
session closes (``moved``) with its totals unchanged, and a second, different upload is
counted by the new isp-c session only.

The second upload starts the moment the move is confirmed, inside the poll interval that
holds the move: the engine reads the line's counters right after the push, and the poll
gives the isp-b session exactly what was counted up to that reading (nothing) and the isp-c
session the rest, instead of sharing the interval's traffic in proportion to time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from tests.lab.helpers import Server, curl, netns, start_server, stop_server
from vpop.accounting.service import bucket_of
from vpop.core.db import session_scope
from vpop.core.time import utcnow
from vpop.lab.service import SERVICE_ADDRESS
from vpop.monitoring.service import PollLog

pytestmark = pytest.mark.lab

POLL_SECONDS = 1.0
FIRST = 20_000_000  # bytes sub1 sends through isp-b
SECOND = 5_000_000  # bytes sub1 sends through isp-c, after the move
TOLERANCE = 0.02

# run in sub1's namespace: send exactly N bytes to the discard sink, then wait for the sink
# to close its side, so every byte (and the FIN) has been sent and acknowledged
SENDER = """
import socket, sys
n = int(sys.argv[1])
chunk = bytes(65536)
with socket.create_connection((sys.argv[2], 9), timeout=30) as s:
    while n > 0:
        s.sendall(chunk[: min(n, len(chunk))])
        n -= min(n, len(chunk))
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
"""


@pytest.fixture(scope="module")
def server(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("accounting"),
        lab,
        # counters every second; the ISP probes (which fill every uplink for a moment and
        # share the queue with the counter polls) only once, at the start
        extra_env={
            "VPOP_POLL_COUNTERS_SECONDS": str(POLL_SECONDS),
            "VPOP_POLL_PROBES_SECONDS": "3600",
        },
    )
    try:
        # the routers may carry earlier modules' selections: converge them to this database
        done = srv.cli("reconcile")
        assert done.returncode == 0, done.stdout + done.stderr
        yield srv
    finally:
        stop_server(srv)


def tx_bytes(sub: str) -> int:
    """Bytes the subscriber host's interface has sent (Layer 2, as the kernel counts them)."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns(sub), "ip", "-s", "-j", "link", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    count: int = json.loads(out)[0]["stats64"]["tx"]["bytes"]
    return count


def upload(sub: str, amount: int) -> tuple[int, datetime]:
    """Send ``amount`` bytes from ``sub`` to the sink; return what really left its interface
    and the moment the transfer was over."""
    before = tx_bytes(sub)
    subprocess.run(
        ["ip", "netns", "exec", netns(sub), sys.executable, "-c", SENDER, str(amount)]
        + [SERVICE_ADDRESS],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    sent = tx_bytes(sub) - before
    return sent, utcnow()


def wait_polls_after(server: Server, moment: datetime, count: int = 1, timeout: float = 60) -> None:
    """Wait (bounded) until ``count`` successful counter polls of rc1 that started after
    ``moment`` are stored. A poll's start is at most ``at - seconds`` (its duration runs to
    after the readings were taken)."""
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(server.db_url) as session:
            polls = session.scalars(
                select(PollLog).where(
                    PollLog.job == "counters",
                    PollLog.router == "rc1",
                    PollLog.ok.is_(True),
                    PollLog.at > moment,
                )
            ).all()
            started_after = [p for p in polls if p.at - timedelta(seconds=p.seconds) > moment]
        if len(started_after) >= count:
            return
        assert time.monotonic() < deadline, (
            f"no counter poll of rc1 started after {moment} and was stored within {timeout}s; "
            f"see {server.log}"
        )
        time.sleep(0.1)


def select_and_wait(server: Server, sub: str, isp: str) -> None:
    status, body = server.select({"subscriber": sub, "isp": isp})
    assert status == 202, body
    order = server.wait_order(body["order"])
    assert order["status"] == "DONE_SUCCESS", order


def sessions(server: Server, subscriber: str) -> list[dict[str, Any]]:
    status, body = server.get("/api/v1/sessions?" + urlencode({"subscriber": subscriber}))
    assert status == 200, body
    rows: list[dict[str, Any]] = body["sessions"]
    assert all(r["subscriber"] == subscriber for r in rows), rows
    return rows


def isp_usage(server: Server, start: datetime) -> dict[str, dict[str, Any]]:
    """The usage report by ISP over the whole hours from ``start`` to now, by ISP id."""
    window = {
        "by": "isp",
        "from": bucket_of(start, "hour").isoformat(),
        "to": (bucket_of(utcnow(), "hour") + timedelta(hours=1)).isoformat(),
    }
    status, body = server.get("/api/v1/reports/usage?" + urlencode(window))
    assert status == 200, body
    return {row["isp"]: row for row in body["rows"]}


def totals(row: dict[str, Any]) -> tuple[int, ...]:
    return tuple(row[key] for key in ("bytes_in", "bytes_out", "packets_in", "packets_out"))


def near(counted: int, measured: int) -> bool:
    return abs(counted - measured) <= TOLERANCE * measured


def test_sessions_and_isp_usage_count_a_known_upload_and_follow_a_move(server: Server) -> None:
    started = utcnow()
    select_and_wait(server, "sub1", "isp-b")
    assert curl("sub1") == "isp-b"  # real traffic leaves through isp-b
    # the line's previous reading must be in hand, or the transfer falls in a first poll
    wait_polls_after(server, utcnow(), count=2)
    first, first_done = upload("sub1", FIRST)
    assert first >= FIRST, first  # payload plus headers left sub1
    wait_polls_after(server, first_done)

    open_b = [s for s in sessions(server, "sub1") if s["isp"] == "isp-b"]
    assert len(open_b) == 1, open_b
    on_b = open_b[0]
    assert on_b["ended_at"] is None and on_b["source"] == "selection", on_b
    assert (on_b["router"], on_b["interface"]) == ("rc1", "sub1")
    assert near(on_b["bytes_in"], first), (on_b["bytes_in"], first)
    usage = isp_usage(server, started)
    assert near(usage["isp-b"]["bytes_in"], first), (usage["isp-b"], first)

    select_and_wait(server, "sub1", "isp-c")
    # at once, in the same poll interval as the move: all of it belongs to isp-c
    second, second_done = upload("sub1", SECOND)
    assert second >= SECOND, second
    wait_polls_after(server, second_done)
    assert curl("sub1") == "isp-c"  # the second upload's path: isp-c

    rows = sessions(server, "sub1")
    closed = next(s for s in rows if s["id"] == on_b["id"])
    assert closed["ended_at"] is not None and closed["end_reason"] == "moved", closed
    assert totals(closed) == totals(on_b)  # nothing of the second upload went to isp-b
    on_c = [s for s in rows if s["isp"] == "isp-c" and s["ended_at"] is None]
    assert len(on_c) == 1, rows
    ended, begun = (datetime.fromisoformat(t) for t in (closed["ended_at"], on_c[0]["started_at"]))
    assert begun >= ended, (closed, on_c)
    assert near(on_c[0]["bytes_in"], second), (on_c[0]["bytes_in"], second)
    usage = isp_usage(server, started)
    assert near(usage["isp-b"]["bytes_in"], first), (usage["isp-b"], first)
    assert near(usage["isp-c"]["bytes_in"], second), (usage["isp-c"], second)
