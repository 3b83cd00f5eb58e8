"""CoA on change of ISP (RFC 5176), against a simulated NAS.

The NAS is a real RADIUS listener: a pyrad ``Server`` with ``coa_enabled=True`` on a free
UDP port of 127.0.0.1, in a thread, that verifies each request's authenticator with the
client's secret and answers as the test tells it (ACK, NAK with an Error-Cause, or nothing).
The order goes through the real order path: ``submit_selection`` -> the wiring's
``order_accepted`` -> the queue (huey in immediate mode) -> the engine, whose device step is
the only fake (it reports the change installed) -> ``DONE_SUCCESS`` -> ``order_finished`` ->
:func:`vpop.jobs.wiring.order_done` -> the CoA task -> the simulated NAS.
"""

from __future__ import annotations

import os
import queue as queues
import select
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyrad import packet
from pyrad.server import RemoteHost, Server
from sqlalchemy import select as sql_select

from tests.web.helpers import hidden_fields
from vpop.aaa import coa
from vpop.aaa.models import RadiusClient, RadiusSession
from vpop.catalogue.models import Isp, Line, Plan, Selection, Subscriber
from vpop.core.audit import AuditEntry
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.core.time import utcnow
from vpop.jobs import aaa_tasks, wiring
from vpop.jobs.queue import huey
from vpop.selection import engine
from vpop.selection.models import Order, OrderStatus
from vpop.selection.service import Caller, SelectionRequest, submit_selection
from webhooks import create_app

SECRET = b"nas-secret-for-tests"
SESSION_ID = "4c2a0001"


@dataclass
class Received:
    """One request the simulated NAS got."""

    code: int
    attributes: dict[str, list[Any]]


class SimulatedNas(Server):  # type: ignore[misc]
    """A NAS's CoA listener: records each request, answers with ``answer``.

    ``answer`` is ``"ack"``, ``"nak"`` (with ``error_cause``) or ``"silent"``. :meth:`serve`
    runs until :meth:`stop`, which wakes the poll through a pipe (no time-outs).
    """

    def __init__(self) -> None:
        super().__init__(
            addresses=["127.0.0.1"],
            coaport=0,  # the kernel picks a free port
            hosts={"127.0.0.1": RemoteHost("127.0.0.1", SECRET, "vpop")},
            dict=coa.dictionary(),
            auth_enabled=False,
            acct_enabled=False,
            coa_enabled=True,
            enable_pkt_verify=True,  # a request not signed with SECRET is dropped
        )
        self.port: int = self.coafds[0].getsockname()[1]
        self.answer = "ack"
        self.error_cause = 503
        self.received: queues.Queue[Received] = queues.Queue()
        self._stop_r, self._stop_w = os.pipe()

    def _record_and_answer(self, pkt: Any, nak: int) -> None:
        attributes = {str(key): list(pkt[key]) for key in pkt.keys()}  # noqa: SIM118 (names, not codes)
        self.received.put(Received(pkt.code, attributes))
        if self.answer == "silent":
            return
        reply = self.CreateReplyPacket(pkt)
        if self.answer == "nak":
            reply.code = nak
            reply.AddAttribute("Error-Cause", self.error_cause)
        self.SendReplyPacket(pkt.fd, reply)

    def HandleCoaPacket(self, pkt: Any) -> None:  # noqa: N802 (pyrad's name)
        """Record a CoA-Request and answer it."""
        self._record_and_answer(pkt, packet.CoANAK)

    def HandleDisconnectPacket(self, pkt: Any) -> None:  # noqa: N802 (pyrad's name)
        """Record a Disconnect-Request and answer it."""
        self._record_and_answer(pkt, packet.DisconnectNAK)

    def serve(self) -> None:
        """pyrad's ``Run`` loop, plus a way out: a byte on the stop pipe."""
        self._poll = select.poll()
        self._fdmap: dict[int, Any] = {}
        self._PrepareSockets()
        self._poll.register(self._stop_r, select.POLLIN)
        while True:
            for fd, _event in self._poll.poll():
                if fd == self._stop_r:
                    return
                try:
                    self._ProcessInput(self._fdmap[fd])
                except packet.PacketError:
                    continue  # a request that does not verify is dropped, as a NAS does

    def stop(self) -> None:
        """Stop :meth:`serve` and close every socket."""
        os.write(self._stop_w, b"x")

    def close(self) -> None:
        """Close the sockets and the pipe (after :meth:`serve` returned)."""
        for sock in self.coafds:
            sock.close()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def next_request(self) -> Received:
        """The next request received (waits up to 5 s for it)."""
        return self.received.get(timeout=5)

    def nothing_more(self) -> bool:
        """True when no further request has arrived."""
        return self.received.empty()


@pytest.fixture
def nas() -> Iterator[SimulatedNas]:
    """The simulated NAS, serving in a thread; stopped and closed in teardown."""
    server = SimulatedNas()
    thread = threading.Thread(target=server.serve, name="simulated-nas", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(5)
        server.close()


@dataclass
class World:
    """The test database, the line of sub1 and its open RADIUS session."""

    url: str
    line_id: int
    session_id: int


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nas: SimulatedNas) -> Iterator[World]:
    """sub1's line on rc1 uses isp-a and has an open session on NAS ``nas1`` (accel-ppp,
    127.0.0.1, its secret in the state directory); CoA goes to the simulated NAS's port."""
    url = f"sqlite:///{tmp_path}/vpop.sqlite"
    monkeypatch.setenv("VPOP_DATABASE_URL", url)
    monkeypatch.setenv("VPOP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VPOP_RADIUS_COA_PORT", str(nas.port))
    monkeypatch.setattr(coa, "FIRST_WAIT", 0.05)
    secrets = tmp_path / "state" / "radius" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "nas1").write_bytes(SECRET + b"\n")
    (secrets / "nas1").chmod(0o600)
    upgrade(url)
    now = utcnow()
    with session_scope(url) as db:
        db.add_all([Isp(id="isp-a", name="Alpha"), Isp(id="isp-b", name="Beta")])
        db.add(Subscriber(id="sub1", name="Subscriber 1"))
        db.flush()
        for isp in ("isp-a", "isp-b"):
            db.add(Plan(isp_id=isp, name="basic", speed_mbps=100, monthly_price_minor=1999))
        line = Line(subscriber_id="sub1", router="rc1", interface="eth1", prefix="192.0.2.6/32")
        db.add(line)
        db.add(RadiusClient(name="nas1", address="127.0.0.1", family="accel-ppp"))
        db.flush()
        db.add(Selection(line_id=line.id, isp_id="isp-a"))
        session = RadiusSession(
            nas="nas1",
            acct_session_id=SESSION_ID,
            decision_id="d-1",
            line_id=line.id,
            subscriber_id="sub1",
            isp_id="isp-a",
            user_name="sub1@isp-a.example",
            framed_ip="192.0.2.6",
            started_at=now,
            updated_at=now,
        )
        db.add(session)
        db.flush()
        found = World(url=url, line_id=line.id, session_id=session.id)
    try:
        yield found
    finally:
        dispose_engines()


@pytest.fixture
def order_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The wiring connected, the queue in immediate mode, the device step faked as done."""

    def device_run(
        router: str, overrides: dict[int, str], dry_run: bool, session: Any
    ) -> tuple[engine.Outcome, dict[str, float]]:
        lines = {line.id: line.interface for line in session.scalars(sql_select(Line))}
        installed = {
            engine.INSTANCE_PREFIX + lines[line_id]: engine.INSTANCE_PREFIX + isp
            for line_id, isp in overrides.items()
        }
        return engine.Outcome(failed=False, changed=True, result={"installed": installed}), {}

    monkeypatch.setattr(engine, "_device_run", device_run)
    huey.immediate = True
    wiring.connect()
    try:
        yield
    finally:
        wiring.disconnect()
        huey.immediate = False


def _choose(isp: str, requester: str = "portal") -> int:
    """sub1 chooses ``isp`` through the order path; the order's id."""
    order, created = submit_selection(
        SelectionRequest(isp=isp, subscriber="sub1"), Caller(name=requester, role="portal"), None
    )
    assert created
    return order.id


def _order(url: str, order_id: int) -> Order:
    with session_scope(url) as db:
        order = db.get(Order, order_id)
        assert order is not None
        db.expunge(order)
        return order


def test_a_change_of_isp_sends_the_nas_a_coa_with_the_new_vrf(
    world: World, nas: SimulatedNas, order_path: None
) -> None:
    order_id = _choose("isp-b")
    request = nas.next_request()
    assert request.code == packet.CoARequest
    assert request.attributes == {
        "NAS-IP-Address": ["127.0.0.1"],
        "Acct-Session-Id": [SESSION_ID],
        "User-Name": ["sub1@isp-a.example"],
        "Framed-IP-Address": ["192.0.2.6"],
        "Accel-VRF-Name": ["vpop-isp-b"],  # alone: no Class, no Session-Timeout (accel-ppp)
    }
    order = _order(world.url, order_id)
    assert order.status == OrderStatus.DONE_SUCCESS
    assert order.coa_result == "ACK"
    with session_scope(world.url) as db:
        entry = db.scalars(sql_select(AuditEntry).where(AuditEntry.action == "radius.coa")).one()
        assert entry.object == f"order:{order_id}"
        assert entry.details["result"] == "ACK"
    assert nas.nothing_more()


def test_choosing_on_the_portal_moves_the_live_session(
    world: World, nas: SimulatedNas, order_path: None
) -> None:
    app = create_app({"TESTING": True, "DATABASE_URL": world.url, "SECRET_KEY": "k" * 40})
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = "192.0.2.6"  # on sub1's line
    fields = hidden_fields(browser.get("/"), 'data-isp="isp-b"')
    response = browser.post("/choose", data=fields)
    assert response.status_code == 303, response.get_data(as_text=True)
    request = nas.next_request()
    assert request.code == packet.CoARequest
    assert request.attributes["Accel-VRF-Name"] == ["vpop-isp-b"]
    assert request.attributes["Acct-Session-Id"] == [SESSION_ID]
    with session_scope(world.url) as db:
        order = db.scalars(sql_select(Order)).one()
        assert (order.requester, order.status) == ("portal:sub1", OrderStatus.DONE_SUCCESS)
        assert order.coa_result == "ACK"


def test_a_nak_and_its_error_cause_are_recorded_on_the_order(
    world: World, nas: SimulatedNas, order_path: None
) -> None:
    nas.answer = "nak"
    nas.error_cause = 503
    order_id = _choose("isp-b")
    assert nas.next_request().code == packet.CoARequest
    assert _order(world.url, order_id).coa_result == "NAK 503 session context not found"
    # the operator reads it where orders are read: the API's order view and the NOC page
    from vpop.selection.service import order_view

    assert order_view(_order(world.url, order_id))["coa"] == "NAK 503 session context not found"


def test_a_silent_nas_gets_the_same_request_three_times_then_it_is_recorded(
    world: World, nas: SimulatedNas, order_path: None
) -> None:
    nas.answer = "silent"
    order_id = _choose("isp-b")
    sent = [nas.next_request() for _ in range(coa.TRIES)]
    assert all(request.attributes == sent[0].attributes for request in sent)
    assert nas.nothing_more()
    assert _order(world.url, order_id).coa_result == "no answer after 3 tries"


def test_a_retry_that_gets_an_answer_is_an_ack(world: World, nas: SimulatedNas) -> None:
    target = coa.CoaTarget("nas1", "127.0.0.1", "accel-ppp", SESSION_ID)

    class SilentOnce(threading.Thread):
        def run(self) -> None:
            nas.next_request()  # the first send arrives while the NAS is silent
            nas.answer = "ack"

    nas.answer = "silent"
    watcher = SilentOnce()
    watcher.start()
    result = coa.send(target, "isp-b", secret=SECRET, port=nas.port, first_wait=0.5)
    watcher.join(5)
    assert (result.text, result.tries) == ("ACK", 2)


def test_a_juniper_nas_gets_a_disconnect_request_with_identification_only(
    world: World, nas: SimulatedNas, order_path: None
) -> None:
    with session_scope(world.url) as db:
        client = db.get(RadiusClient, "nas1")
        assert client is not None
        client.family = "juniper"
    order_id = _choose("isp-b")
    request = nas.next_request()
    assert request.code == packet.DisconnectRequest
    assert request.attributes == {
        "NAS-IP-Address": ["127.0.0.1"],
        "Acct-Session-Id": [SESSION_ID],
        "User-Name": ["sub1@isp-a.example"],
        "Framed-IP-Address": ["192.0.2.6"],
    }
    assert _order(world.url, order_id).coa_result == "Disconnect-ACK"


def test_an_order_requested_by_radius_sends_no_coa(
    world: World, nas: SimulatedNas, order_path: None
) -> None:
    order_id = _choose("isp-b", requester=aaa_tasks.RADIUS_REQUESTER)
    order = _order(world.url, order_id)
    assert order.status == OrderStatus.DONE_SUCCESS
    assert order.coa_result is None
    assert aaa_tasks.send_coa_for_order(order_id) is None  # the task refuses it too
    assert nas.nothing_more()


def test_a_stopped_session_gets_no_coa(world: World, nas: SimulatedNas, order_path: None) -> None:
    with session_scope(world.url) as db:
        session = db.get(RadiusSession, world.session_id)
        assert session is not None
        session.stopped_at = utcnow()
    order_id = _choose("isp-b")
    assert _order(world.url, order_id).coa_result is None
    assert nas.nothing_more()


def test_cisco_and_generic_nas_get_their_own_attribute(world: World, nas: SimulatedNas) -> None:
    for family, expected in (
        ("cisco", {"Cisco-AVPair": ["ip:vrf-id=vpop-isp-b"]}),
        ("generic", {"Filter-Id": ["vpop-isp-b"]}),
    ):
        target = coa.CoaTarget("nas1", "127.0.0.1", family, SESSION_ID)
        assert coa.send(target, "isp-b", secret=SECRET, port=nas.port).text == "ACK"
        request = nas.next_request()
        assert request.code == packet.CoARequest
        assert {k: v for k, v in request.attributes.items() if k in expected} == expected


def test_a_wrong_secret_is_silence(world: World, nas: SimulatedNas) -> None:
    target = coa.CoaTarget("nas1", "127.0.0.1", "accel-ppp", SESSION_ID)
    result = coa.send(target, "isp-b", secret=b"not-the-secret", port=nas.port, first_wait=0.05)
    assert result.text == "no answer after 3 tries"


def test_a_nas_without_a_secret_file_is_recorded_and_nothing_is_sent(
    world: World, nas: SimulatedNas, order_path: None, tmp_path: Path
) -> None:
    (tmp_path / "state" / "radius" / "secrets" / "nas1").unlink()
    order_id = _choose("isp-b")
    result = _order(world.url, order_id).coa_result
    assert result is not None and result.startswith("no secret for RADIUS client nas1")
    assert nas.nothing_more()
