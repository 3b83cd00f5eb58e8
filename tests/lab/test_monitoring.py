"""Monitoring in the lab: measurements follow known impairments; leases raise events."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from tests.lab.helpers import SECRET, netns
from vpop.catalogue.models import Isp, Line
from vpop.core.db import session_scope
from vpop.lab.builder import Lab
from vpop.lab.processes import children_of, start_time
from vpop.lab.registry import register_lab
from vpop.lab.service import SERVICE_ADDRESS
from vpop.leasing.callbacks import send_event_callback
from vpop.leasing.models import Lease, UtilisationEvent, UtilisationSample
from vpop.leasing.service import create_lease, provision
from vpop.monitoring import poller as monitoring
from vpop.monitoring.models import CounterSample, PollLog
from vpop.monitoring.qos import current_qos
from vpop.monitoring.signals import utilisation_event
from vpop.selection import engine
from vpop.selection.service import Caller, SelectionRequest, submit_selection

pytestmark = pytest.mark.lab
DELAY_MS = 30.0
SHAPED_MBIT = 20.0
DROP_PCT = 20


@pytest.fixture(scope="module")
def db(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('monitoring') / 'vpop.sqlite'}"
    register_lab(lab, url)
    mp = pytest.MonkeyPatch()
    mp.setenv("VPOP_DATABASE_URL", url)  # callbacks and hooks use the default database
    mp.setenv("VPOP_WEBHOOK_SECRETS", SECRET)
    mp.setenv("VPOP_CALLBACK_ALLOW_PRIVATE", "1")  # the test's receiver is on 127.0.0.1
    for router in ("rc1", "rc2"):  # routing instances exist before anything is probed
        assert engine.reconcile(router, url=url).status == "SUCCESS"
    try:
        yield url
    finally:
        mp.undo()


def ns(node: str, *cmd: str, stdin: str | None = None) -> None:
    subprocess.run(
        ["ip", "netns", "exec", netns(node), *cmd],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
        timeout=30,
    )


def probe(
    url: str, count: int = 200, tput: float = 1.0, every: float = 0
) -> dict[str, dict[str, Any]]:
    """Probe rc1's ISPs; ``every``: seconds between throughput tests (0: on this probe)."""
    settings = monitoring.MonitorSettings(
        probe_count=count,
        probe_interval=0.002,
        throughput_seconds=tput,
        throughput_every_seconds=every,
    )
    return monitoring.probe_router("rc1", url, settings)


def test_latency_follows_a_known_delay(db: str, lab: dict[str, Any]) -> None:
    instance = Lab(Path(lab["lab_dir"]))
    before = probe(db, count=50, tput=0)["isp-a"]["latency_ms"]
    instance.set_isp_delay("isp-a", DELAY_MS)
    try:
        after = probe(db, count=50, tput=0)["isp-a"]["latency_ms"]
    finally:
        instance.set_isp_delay("isp-a", 0)
    assert abs((after - before) - DELAY_MS) <= 5.0, (before, after)


def test_throughput_follows_a_known_shaping_rate(db: str) -> None:
    ns(
        "rc1",
        "tc",
        "qdisc",
        "replace",
        "dev",
        "isp-b",
        "root",
        "tbf",
        "rate",
        f"{SHAPED_MBIT:g}mbit",
        "burst",
        "32kb",
        "latency",
        "50ms",
    )
    try:
        measured = probe(db, count=20, tput=1.5)["isp-b"]["throughput_mbps"]
    finally:
        ns("rc1", "tc", "qdisc", "del", "dev", "isp-b", "root")
    assert abs(measured - SHAPED_MBIT) <= 0.15 * SHAPED_MBIT, measured


def test_loss_follows_a_known_drop_share(db: str) -> None:
    ns(
        "rc1",
        "nft",
        "-f",
        "-",
        stdin=(
            "table inet vpoptest {\n chain out {\n  type filter hook output priority filter;"
            f'\n  oifname "isp-c" udp dport 7 numgen random mod 100 < {DROP_PCT} drop\n }}\n}}\n'
        ),
    )
    try:
        figures = probe(db, count=400, tput=0)["isp-c"]
    finally:
        ns("rc1", "nft", "delete", "table", "inet", "vpoptest")
    # binomial: n=400, p=0.2 -> sd 2 points; the tolerance is 4 sd
    assert abs(figures["loss_pct"] - DROP_PCT) <= 8.0, figures
    assert figures["sent"] == 400


def test_qos_samples_are_stored_per_isp_and_router(db: str) -> None:
    probe(db, count=10, tput=0.2)
    from vpop.monitoring.models import QosSample

    with session_scope(db) as session:
        isps = {
            s.isp_id for s in session.scalars(select(QosSample).where(QosSample.router == "rc1"))
        }
    assert isps == {"isp-a", "isp-b", "isp-c"}


def test_throughput_is_tested_once_per_interval_and_stays_shown(db: str) -> None:
    """Latency on every probe; a throughput test (traffic at full speed through every
    uplink) only when the router's last one is ``every`` seconds old. The QoS shown keeps
    the last measured throughput meanwhile."""
    tested = probe(db, count=10, tput=0.2)  # every=0: tested on this probe
    assert all(tested[isp]["throughput_mbps"] > 0 for isp in ("isp-a", "isp-b", "isp-c"))
    skipped = probe(db, count=10, tput=0.2, every=240)
    for isp in ("isp-a", "isp-b", "isp-c"):
        assert skipped[isp]["latency_ms"] is not None and skipped[isp]["sent"] == 10
        assert skipped[isp]["throughput_mbps"] is None
    with session_scope(db) as session:
        shown = current_qos(session, isps=["isp-b"])["isp-b"]
    assert shown["throughput_mbps"] == round(tested["isp-b"]["throughput_mbps"], 3)
    assert shown["age_seconds"]["throughput_mbps"] >= shown["age_seconds"]["latency_ms"]
    # the last test is older than a (short) interval: the next probe tests again
    again = probe(db, count=10, tput=0.2, every=0.001)
    assert again["isp-b"]["throughput_mbps"] > 0


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_lease_over_and_under_utilisation_events(db: str, lab: dict[str, Any]) -> None:
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 is not installed")
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with session_scope(db) as session:
        isp = session.get(Isp, "isp-b")
        assert isp is not None
        isp.callback_url = f"http://127.0.0.1:{receiver.server_port}/events"
    delivered: list[str] = []
    hook = lambda event_id: delivered.append(send_event_callback(event_id))  # noqa: E731
    utilisation_event.connect(hook)
    # sub1's traffic leaves through isp-b, whose uplink on rc1 is leased at 10 Mbit/s
    order, _ = submit_selection(
        SelectionRequest(isp="isp-b", subscriber="sub1"), Caller("test", "admin"), None, db
    )
    engine.process_router("rc1", db)
    lease = create_lease(
        isp="isp-b",
        router="rc1",
        committed_mbps=10,
        price_minor=10000,
        peak_pct=150,
        event_seconds=2,
        hysteresis_pct=5,
        actor="test",
        url=db,
    )
    assert provision(lease.id, db) == "active"
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns("isp-b"),
            "iperf3",
            "-s",
            "-1",
            "-B",
            "203.0.113.100",
            "-p",
            "5201",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client: subprocess.Popen[bytes] | None = None
    settings = monitoring.MonitorSettings(counters_seconds=0.5)

    def poll_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # polls paced at the poll interval (a rate is per time)
            monitoring.poll_counters("rc1", db, settings)
            time.sleep(settings.counters_seconds)

    try:
        poll_for(3.5)  # idle: under-utilisation
        client = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns("sub1"),
                "iperf3",
                "-c",
                "203.0.113.100",
                "-p",
                "5201",
                "-t",
                "7",
                "-b",
                "30M",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        poll_for(6.0)  # above the committed rate (shaped to 15 Mbit/s, 150 %)
        client.wait(timeout=30)
        poll_for(4.0)  # idle again: the over event closes
    finally:
        utilisation_event.disconnect(hook)
        for proc in (client, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        receiver.shutdown()
        receiver.server_close()
        with session_scope(db) as session:
            stored = session.get(Lease, lease.id)
            assert stored is not None
            stored.status = "ending"
        provision(lease.id, db)
    with session_scope(db) as session:
        events = list(
            session.scalars(
                select(UtilisationEvent)
                .where(UtilisationEvent.lease_id == lease.id)
                .order_by(UtilisationEvent.id)
            )
        )
        peak = max(
            s.utilisation_pct
            for s in session.scalars(
                select(UtilisationSample).where(UtilisationSample.lease_id == lease.id)
            )
        )
        over = [e for e in events if e.kind == "over"]
        under = [e for e in events if e.kind == "under"]
        assert len(over) == 1, [(e.kind, e.opened_at, e.closed_at) for e in events]
        assert over[0].closed_at is not None
        assert over[0].extreme_pct > 100
        assert under and under[0].opened_at < over[0].opened_at
    assert 100 < peak <= 170, peak  # shaped to 150 % of committed
    assert order.id > 0
    assert delivered and all(d.startswith("delivered") for d in delivered)
    kinds = [json.loads(body)["type"] for _, body in _Receiver.received]
    assert "utilisation.over.opened" in kinds and "utilisation.over.closed" in kinds
    headers, body = _Receiver.received[0]
    Webhook(SECRET).verify(body, headers)


def test_a_batch_polls_its_routers_at_once_and_an_unreachable_one_costs_the_others_nothing(
    db: str, lab: dict[str, Any]
) -> None:
    """The monitor's counters job on the real routers: both answer in one batch, sub1's
    pings through rc1 between two batches are in rc1's line counter, and while rc2's
    management is cut, rc1's poll is stored all the same and rc2's failure is logged."""
    with session_scope(db) as session:
        line = session.scalars(select(Line).where(Line.subscriber_id == "sub1")).one()
        router, interface = line.router, line.interface
    other = "rc2" if router == "rc1" else "rc1"
    settings = monitoring.MonitorSettings(counters_seconds=1)
    first = monitoring.poll_counters_many([router, other], db, settings)
    assert all(summary["samples"] > 0 for summary in first.values()), first
    # 20 echo requests of 1,000 bytes of data: 20 x 1,028 bytes of IP from sub1 at least
    ns("sub1", "ping", "-c", "20", "-i", "0.01", "-s", "1000", "-W", "1", "-q", SERVICE_ADDRESS)
    instance = Lab(Path(lab["lab_dir"]))
    instance.cut_management(other)
    try:
        second = monitoring.poll_counters_many([router, other], db, settings)
    finally:
        instance.restore_management(other)
    assert second[router]["samples"] == first[router]["samples"]
    assert "error" in second[other] and other in second[other]["error"], second[other]
    with session_scope(db) as session:
        counted = session.scalars(
            select(CounterSample.rx_bytes)
            .where(
                CounterSample.router == router,
                CounterSample.kind == "line",
                CounterSample.name == interface,
            )
            .order_by(CounterSample.id.desc())
            .limit(2)
        ).all()
        failed = session.scalars(
            select(PollLog).where(PollLog.router == other, PollLog.ok.is_(False))
        ).all()
    assert counted[0] - counted[1] >= 20 * 1_028
    assert [entry.error for entry in failed] == [second[other]["error"]]
    third = monitoring.poll_counters_many([router, other], db, settings)  # reachable again
    assert all("error" not in summary for summary in third.values()), third


def _sessions_of(lab_dir: Path, router: str) -> list[tuple[int, str | None]]:
    """The processes serving ``router``'s SSH sessions (its agent among them): every
    descendant of its sshd listener, by PID and start time."""
    found: list[tuple[int, str | None]] = []
    todo = [int((lab_dir / f"sshd-{router}.spawned").read_text())]
    while todo:  # bounded: the lab's process tree
        for child in children_of(todo.pop()):
            found.append((child, start_time(child)))
            todo.append(child)
    return found


def _signal(processes: list[tuple[int, str | None]], signum: int) -> None:
    for pid, started in processes:
        if started is not None and start_time(pid) == started:  # still the same process
            os.kill(pid, signum)


def test_a_router_that_answers_late_does_not_make_the_others_readings_late(
    db: str, lab: dict[str, Any]
) -> None:
    """In a batch, each router's readings are stamped when its answer came: rc2's sessions
    are stopped for 1.5 s, and rc1's samples keep the time rc1 answered (a rate computed
    with rc2's time would count rc1's traffic over the wrong interval)."""
    settings = monitoring.MonitorSettings(counters_seconds=1)
    assert all("error" not in s for s in monitoring.poll_counters_many(["rc1", "rc2"], db).values())
    paused = _sessions_of(Path(lab["lab_dir"]), "rc2")
    assert paused, "rc2 has no SSH session to stop"
    _signal(paused, signal.SIGSTOP)
    resume = threading.Timer(1.5, _signal, (paused, signal.SIGCONT))
    resume.start()
    try:
        polled = monitoring.poll_counters_many(["rc1", "rc2"], db, settings)
    finally:
        resume.cancel()
        _signal(paused, signal.SIGCONT)
    assert all("error" not in summary for summary in polled.values()), polled
    with session_scope(db) as session:
        newest = {
            router: session.scalar(
                select(CounterSample.at)
                .where(CounterSample.router == router)
                .order_by(CounterSample.id.desc())
                .limit(1)
            )
            for router in ("rc1", "rc2")
        }
    assert newest["rc1"] is not None and newest["rc2"] is not None
    assert newest["rc2"] - newest["rc1"] >= timedelta(seconds=1)
