"""Payment callbacks: every change of a payment reaches its payee's callback URL, signed per
Standard Webhooks, through the wiring and the queue, after the change is committed."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.test_payments import ISP_B, NOW, SHOP_B, body, seed
from vpop.billing.service import (
    CaptureBody,
    PaymentState,
    authorise_in,
    capture_in,
    dispute_in,
    ensure_isp_payee,
    events_of,
    expire_in,
    payment_changed,
    send_payment_callback,
    update_payee,
)
from vpop.core.callbacks import CallbackFailed
from vpop.core.db import dispose_engines, session_scope

SECRET = "whsec_" + base64.b64encode(bytes(range(40, 72))).decode()
Received = list[tuple[dict[str, str], bytes]]


class _Receiver(BaseHTTPRequestHandler):
    received: Received = []
    answer = 204

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers["Content-Length"])
        _Receiver.received.append(
            ({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
        )
        self.send_response(_Receiver.answer)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    """An HTTP listener on 127.0.0.1 recording what is POSTed to it; stopped after the test."""
    _Receiver.received, _Receiver.answer = [], 204
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/payments", _Receiver.received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A seeded database, configured as the process's; callbacks to 127.0.0.1 allowed."""
    database = seed(f"sqlite:///{tmp_path}/payments.sqlite")
    monkeypatch.setenv("VPOP_DATABASE_URL", database)
    monkeypatch.setenv("VPOP_CALLBACK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("VPOP_CALLBACK_SECRET", SECRET)
    yield database
    dispose_engines()


@pytest.fixture
def wired() -> Iterator[None]:
    """The wiring connected and the queue in immediate mode (tasks run when queued)."""
    from vpop.jobs import wiring
    from vpop.jobs.queue import huey

    huey.immediate = True
    wiring.connect()
    try:
        yield
    finally:
        wiring.disconnect()
        huey.immediate = False


def arrived(received: Received, count: int) -> Received:
    """The first ``count`` deliveries, waiting for them at most 10 seconds."""
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(received) >= count, f"{len(received)} of {count} callbacks arrived"
    return received[:count]


def test_the_payee_gets_a_signed_callback_for_each_change(
    url: str, receiver: tuple[str, Received], wired: None
) -> None:
    target, received = receiver
    with session_scope(url) as session:
        ensure_isp_payee(session, "isp-b")
        update_payee(session, "isp-b", actor="noc", callback_url=target)
    _, paid, _ = authorise_in(url, ISP_B, body(1200), key="a", now=NOW)
    capture_in(url, ISP_B, paid["id"], CaptureBody(amount_minor=1000), key="c", now=NOW)
    deliveries = arrived(received, 3)
    with session_scope(url) as session:
        event_ids = [event.id for event in events_of(session, paid["id"])]
    kinds = []
    for (headers, raw), event_id in zip(deliveries, event_ids, strict=True):
        payload = Webhook(SECRET).verify(raw, headers)
        assert headers["webhook-id"] == f"payment-{paid['id']}-{event_id}"
        assert payload["payment"]["id"] == paid["id"] and payload["event"]["id"] == event_id
        kinds.append(payload["type"])
    assert kinds == ["payment.authorised", "payment.captured", "payment.released"]
    final = json.loads(deliveries[-1][1])["payment"]
    assert (final["status"], final["captured_minor"]) == ("CAPTURED", 1000)
    with pytest.raises(Exception, match="(?i)signature|verif"):
        Webhook("whsec_" + base64.b64encode(bytes(32)).decode()).verify(*deliveries[0][::-1])
    # a refused change is rolled back and announces nothing
    with pytest.raises(PaymentState):
        capture_in(url, ISP_B, paid["id"], CaptureBody(), key="c2", now=NOW)
    # a replay changes nothing and announces nothing either
    capture_in(url, ISP_B, paid["id"], CaptureBody(amount_minor=1000), key="c", now=NOW)
    _, other, _ = authorise_in(url, ISP_B, body(100), key="b", now=NOW)
    assert json.loads(arrived(received, 4)[3][1])["payment"]["id"] == other["id"]
    assert len(received) == 4


def test_a_payee_without_a_callback_url_gets_none(
    url: str, receiver: tuple[str, Received], wired: None
) -> None:
    announced: list[tuple[int, int]] = []
    with payment_changed.connected_to(announced.append):
        _, paid, _ = authorise_in(url, SHOP_B, body(100), key="a", now=NOW)
    assert announced == [(paid["id"], announced[0][1])] and len(announced) == 1
    assert send_payment_callback(*announced[0]) == "no callback"
    assert receiver[1] == []


def test_a_refused_delivery_is_an_error_the_queue_retries(
    url: str, receiver: tuple[str, Received]
) -> None:
    target, received = receiver
    with session_scope(url) as session:
        update_payee(session, "shop-b", actor="noc", callback_url=target)
    announced: list[tuple[int, int]] = []
    with payment_changed.connected_to(announced.append):
        authorise_in(url, SHOP_B, body(100), key="a", now=NOW)
    _Receiver.answer = 500
    with pytest.raises(CallbackFailed, match="HTTP 500"):
        send_payment_callback(*announced[0])
    _Receiver.answer = 204
    assert send_payment_callback(*announced[0]) == "delivered"
    assert [headers["webhook-id"] for headers, _ in received] == [
        f"payment-{announced[0][0]}-{announced[0][1]}"
    ] * 2  # the same message id on the retry: one message to the receiver


def test_expiries_and_disputes_are_announced_too(
    url: str, receiver: tuple[str, Received], wired: None
) -> None:
    target, received = receiver
    with session_scope(url) as session:
        update_payee(session, "shop-b", actor="noc", callback_url=target)
    _, lapsed, _ = authorise_in(url, SHOP_B, body(100), key="a", now=NOW)
    _, bought, _ = authorise_in(url, SHOP_B, body(200), key="b", now=NOW)
    capture_in(url, SHOP_B, bought["id"], CaptureBody(), key="c", now=NOW)
    assert expire_in(url, now=NOW + timedelta(days=7)) == [lapsed["id"]]
    view = dispute_in(url, "sub1", bought["id"], "never arrived", now=NOW)
    assert view["dispute_reason"] == "never arrived"
    payloads = [Webhook(SECRET).verify(raw, headers) for headers, raw in arrived(received, 5)]
    assert [(p["type"], p["payment"]["id"]) for p in payloads] == [
        ("payment.authorised", lapsed["id"]),
        ("payment.authorised", bought["id"]),
        ("payment.captured", bought["id"]),
        ("payment.expired", lapsed["id"]),
        ("payment.disputed", bought["id"]),
    ]
