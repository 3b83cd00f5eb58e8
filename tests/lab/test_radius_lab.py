"""RADIUS in the lab: radclient as the NAS, the real FreeRADIUS with vpop's configuration in
front of a real `vpop serve`, and the subscriber's real traffic following the ISP the routing
centre chose (issue 10's first proof), timed from the Access-Request to the first curl that
names the new ISP.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.lab.helpers import Server, curl, start_server, stop_server
from tests.radius_helpers import SECRET, free_port, need_freeradius, radclient

pytestmark = pytest.mark.lab

# the lab's sub3: its calling number and circuit id (vpop/lab/topology.py)
SUB3_NUMBER = "+31205550003"
TRAFFIC_BOUND = 60.0  # seconds from Access-Accept to sub3's traffic through isp-c, at most


@pytest.fixture(scope="module")
def radius_world(
    lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, int, int]]:
    """`vpop serve` on the lab, the routers converged to its database, and FreeRADIUS (vpop's
    configuration, the lab's 127.0.0.1 client) in front of it; both stopped after."""
    need_freeradius()
    from vpop.aaa.service import RadiusPaths, prepare, start_radius, stop_radius
    from vpop.core.db import session_scope

    workdir = tmp_path_factory.mktemp("radius-lab")
    auth, acct = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    server = start_server(workdir, lab)
    paths = RadiusPaths(Path(server.env["VPOP_STATE_DIR"]) / "radius")
    mp = pytest.MonkeyPatch()
    for name, value in {
        "VPOP_DATABASE_URL": server.db_url,
        "VPOP_STATE_DIR": server.env["VPOP_STATE_DIR"],
        "VPOP_RADIUS_SECRET": SECRET,
        "VPOP_RADIUS_AUTH_PORT": str(auth),
        "VPOP_RADIUS_ACCT_PORT": str(acct),
    }.items():
        mp.setenv(name, value)
    try:
        done = server.cli("reconcile")
        assert done.returncode == 0, done.stdout + done.stderr
        with session_scope(server.db_url) as session:
            config_dir = prepare(session, vpop_url=server.base, paths=paths)
        start_radius(config_dir, paths=paths)
        yield server, auth, acct
    finally:
        stop_radius(paths)
        mp.undo()
        stop_server(server)


def test_a_rule_sends_a_calling_number_to_an_isp_and_the_traffic_follows(
    radius_world: tuple[Server, int, int],
) -> None:
    from vpop.aaa.service import AaaDecision
    from vpop.core.db import session_scope

    server, auth, _ = radius_world
    assert curl("sub3") != "isp-c", "sub3 must start elsewhere for the proof to mean anything"
    added = server.cli("aaa", "rules", "add", "--calling-prefix", SUB3_NUMBER, "--isp", "isp-c")
    assert added.returncode == 0, added.stdout + added.stderr
    started = time.monotonic()
    answer = radclient(auth, "auth", {"User-Name": "sub3", "Calling-Station-Id": SUB3_NUMBER})
    assert answer.code == "Access-Accept", answer.output
    assert answer.first("Filter-Id") == "vpop-isp-c", answer.output  # the generic family
    class_ = bytes.fromhex((answer.first("Class") or "0x")[2:]).decode()
    assert class_.endswith(";isp=isp-c"), class_
    deadline = started + TRAFFIC_BOUND
    while (seen := curl("sub3")) != "isp-c":
        assert time.monotonic() < deadline, f"sub3 still reaches {seen!r} after {TRAFFIC_BOUND}s"
        time.sleep(0.05)
    took = time.monotonic() - started
    print(f"Access-Request -> sub3's traffic through isp-c: {took:.2f} s")
    with session_scope(server.db_url) as session:
        decision = session.scalars(
            select(AaaDecision).where(AaaDecision.decision_id == class_.split(";")[0])
        ).one()
        assert (decision.outcome, decision.isp_id) == ("accept", "isp-c")
        assert decision.order_id is not None  # the change went through the order path


def test_an_unknown_number_and_a_suspended_subscriber_are_rejected_with_the_reason(
    radius_world: tuple[Server, int, int],
) -> None:
    from vpop.catalogue.service import Line, Subscriber
    from vpop.core.audit import AuditEntry
    from vpop.core.db import session_scope
    from vpop.core.time import utcnow

    server, auth, _ = radius_world
    unknown = radclient(auth, "auth", {"User-Name": "x", "Calling-Station-Id": "+31209999999"})
    assert unknown.code == "Access-Reject", unknown.output
    assert "unknown line" in (unknown.first("Reply-Message") or ""), unknown.output
    with session_scope(server.db_url) as session:
        circuit = session.scalars(select(Line.circuit_id).where(Line.subscriber_id == "sub4")).one()
    assert circuit
    conflict = radclient(
        auth,
        "auth",
        {
            "User-Name": "x",
            "Calling-Station-Id": SUB3_NUMBER,  # sub3's line
            "ADSL-Agent-Circuit-Id": f"0x{circuit.encode().hex()}",  # sub4's line
        },
    )
    assert conflict.code == "Access-Reject", conflict.output
    assert conflict.first("Reply-Message"), conflict.output
    with session_scope(server.db_url) as session:
        actions = list(session.scalars(select(AuditEntry.action)))
    assert "aaa.conflict" in actions, actions
    with session_scope(server.db_url) as session:
        subscriber = session.get(Subscriber, "sub2")
        assert subscriber is not None
        subscriber.suspended_at = utcnow()
    try:
        number = "+31205550002"
        refused = radclient(auth, "auth", {"User-Name": "sub2", "Calling-Station-Id": number})
        assert refused.code == "Access-Reject", refused.output
        assert "suspended" in (refused.first("Reply-Message") or ""), refused.output
        with session_scope(server.db_url) as session:
            actions = set(session.scalars(select(AuditEntry.action)))
        assert any(action.startswith("aaa.") for action in actions), actions
    finally:
        with session_scope(server.db_url) as session:
            subscriber = session.get(Subscriber, "sub2")
            assert subscriber is not None
            subscriber.suspended_at = None


def test_accounting_through_radclient_counts_each_packet_once(
    radius_world: tuple[Server, int, int],
) -> None:
    """Start, an Interim crossing 2^32 octets (Gigawords), Stop: each sent twice with another
    Acct-Delay-Time; one session with exact totals."""
    from vpop.aaa.service import RadiusSession
    from vpop.core.db import session_scope

    server, _, acct = radius_world
    base = {
        "User-Name": "sub4",
        "Calling-Station-Id": "+31205550004",
        "Acct-Session-Id": "lab-acct-1",
        "NAS-IP-Address": "127.0.0.1",
    }
    packets = [
        {**base, "Acct-Status-Type": "Start"},
        {
            **base,
            "Acct-Status-Type": "Interim-Update",
            "Acct-Input-Octets": "5",
            "Acct-Input-Gigawords": "1",
            "Acct-Output-Octets": "700",
            "Acct-Session-Time": "60",
        },
        {
            **base,
            "Acct-Status-Type": "Stop",
            "Acct-Input-Octets": "10",
            "Acct-Input-Gigawords": "1",
            "Acct-Output-Octets": "900",
            "Acct-Session-Time": "120",
            "Acct-Terminate-Cause": "User-Request",
        },
    ]
    for packet in packets:
        for delay in ("0", "3"):
            answer = radclient(acct, "acct", {**packet, "Acct-Delay-Time": delay})
            assert answer.code == "Accounting-Response", answer.output
    with session_scope(server.db_url) as session:
        rows = list(
            session.scalars(
                select(RadiusSession).where(RadiusSession.acct_session_id == "lab-acct-1")
            )
        )
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row.input_octets, row.output_octets) == (2**32 + 10, 900)
    assert row.stopped_at is not None and row.closed_by == "stop"


def test_a_circuit_id_and_a_user_at_realm_find_their_lines_and_the_traffic_follows(
    radius_world: tuple[Server, int, int],
) -> None:
    """sub5 by its option-82 circuit id (its profile's rule picks isp-b), sub6 by user@realm
    (a realm rule picks isp-c); each subscriber's curl then names that ISP."""
    from vpop.catalogue.service import Line, Subscriber
    from vpop.core.db import session_scope

    server, auth, _ = radius_world
    with session_scope(server.db_url) as session:
        sub5 = session.scalars(select(Line).where(Line.subscriber_id == "sub5")).one()
        circuit = sub5.circuit_id
        subscriber = session.get(Subscriber, "sub5")
        assert subscriber is not None and circuit
        subscriber.profile = {"tier": "gold"}
        sub6 = session.scalars(select(Line).where(Line.subscriber_id == "sub6")).one()
        sub6.user_name = "sub6@gamma.example"
    for args in (
        ("--profile", "tier=gold", "--isp", "isp-b"),
        ("--realm", "gamma.example", "--isp", "isp-c"),
    ):
        added = server.cli("aaa", "rules", "add", *args)
        assert added.returncode == 0, added.stdout + added.stderr
    by_circuit = radclient(
        auth,
        "auth",
        {"User-Name": "line-5", "ADSL-Agent-Circuit-Id": f"0x{circuit.encode().hex()}"},
    )
    assert by_circuit.code == "Access-Accept", by_circuit.output
    assert by_circuit.first("Filter-Id") == "vpop-isp-b", by_circuit.output
    by_realm = radclient(auth, "auth", {"User-Name": "sub6@gamma.example"})
    assert by_realm.code == "Access-Accept", by_realm.output
    assert by_realm.first("Filter-Id") == "vpop-isp-c", by_realm.output
    deadline = time.monotonic() + TRAFFIC_BOUND
    while (seen := (curl("sub5"), curl("sub6"))) != ("isp-b", "isp-c"):
        assert time.monotonic() < deadline, f"sub5, sub6 still reach {seen} after {TRAFFIC_BOUND}s"
        time.sleep(0.05)


def test_a_stop_without_start_and_an_interim_after_stop_give_one_session_each(
    radius_world: tuple[Server, int, int],
) -> None:
    from vpop.aaa.service import RadiusSession
    from vpop.core.db import session_scope

    server, _, acct = radius_world
    base = {
        "User-Name": "sub4",
        "Calling-Station-Id": "+31205550004",
        "NAS-IP-Address": "127.0.0.1",
    }
    lone_stop = {
        **base,
        "Acct-Session-Id": "lab-acct-2",
        "Acct-Status-Type": "Stop",
        "Acct-Session-Time": "30",
        "Acct-Input-Octets": "100",
        "Acct-Output-Octets": "200",
    }
    late = {
        **base,
        "Acct-Session-Id": "lab-acct-3",
        "Acct-Session-Time": "90",
        "Acct-Input-Octets": "50",
        "Acct-Output-Octets": "60",
    }
    for packet in (
        lone_stop,
        {**late, "Acct-Status-Type": "Start"},
        {**late, "Acct-Status-Type": "Stop"},
        {**late, "Acct-Status-Type": "Interim-Update", "Acct-Input-Octets": "70"},
    ):
        answer = radclient(acct, "acct", packet)
        assert answer.code == "Accounting-Response", answer.output
    with session_scope(server.db_url) as session:
        rows = {
            row.acct_session_id: row
            for row in session.scalars(
                select(RadiusSession).where(
                    RadiusSession.acct_session_id.in_(["lab-acct-2", "lab-acct-3"])
                )
            )
        }
    stop_only, stopped = rows["lab-acct-2"], rows["lab-acct-3"]
    assert stop_only.stopped_at is not None and stop_only.input_octets == 100
    assert stop_only.session_time == 30
    assert stopped.stopped_at is not None, "an Interim after the Stop reopened the session"
    assert len(rows) == 2
