"""Switching with consent through the API: an ISP's request for someone else's customer is a
pending order until the subscriber confirms it (by the signed link here; the portal's buttons
in tests/web/test_portal.py), declined and expired requests end and change nothing, and the
losing ISP gets a signed callback when the switch is done.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from tests.web.helpers import hidden_fields
from tests.webhooks.helpers import SECRETS, assert_problem, bearer, post_signed
from vpop.catalogue.models import Isp, Line, Selection
from vpop.core.db import session_scope
from vpop.core.time import utcnow
from vpop.selection.consent import make_consent_token
from vpop.selection.models import Order, OrderStatus
from vpop.selection.service import order_finished, send_losing_isp_callback

PUBLIC = "https://portal.example.net"


@pytest.fixture
def app(database_url: str, enqueued: list[str]) -> Flask:
    """The API's app with a public URL (consent links name it); sub1 uses isp-a."""
    from webhooks import create_app

    with session_scope(database_url) as session:
        line = session.scalars(select(Line).where(Line.subscriber_id == "sub1")).one()
        session.add(Selection(line_id=line.id, isp_id="isp-a"))
    return create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "WEBHOOK_SECRETS": ",".join(SECRETS),
            "PUBLIC_URL": PUBLIC,
        }
    )


@pytest.fixture
def finished() -> Iterator[list[int]]:
    """Order ids announced by ``order_finished``."""
    seen: list[int] = []
    with order_finished.connected_to(seen.append):
        yield seen


def request_switch(client: FlaskClient, token: str, isp: str, sub: str = "sub1") -> dict:  # type: ignore[type-arg]
    response = client.post(
        "/api/v1/selections", json={"subscriber": sub, "isp": isp}, headers=bearer(token)
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    body: dict = response.get_json()  # type: ignore[type-arg]
    return body


def stored(url: str, order_id: int) -> Order:
    with session_scope(url) as session:
        order = session.get(Order, order_id)
        assert order is not None
        session.expunge(order)
    return order


def link_path(body: dict) -> str:  # type: ignore[type-arg]
    parts = urlsplit(body["consent_url"])
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    return f"{parts.path}?{parts.query}"


def test_an_isp_asking_for_another_isps_customer_gets_a_pending_order(
    client: FlaskClient, tokens: dict[str, str], database_url: str, enqueued: list[str]
) -> None:
    body = request_switch(client, tokens["isp-b"], "isp-b")
    assert body["status"] == "PENDING_CONSENT"
    assert body["consent_url"].startswith(f"{PUBLIC}/consent?c=")
    assert enqueued == []  # nothing is queued until the subscriber says yes
    order = stored(database_url, body["order"])
    assert order.losing_isp_id == "isp-a"
    assert order.consent_expires_at is not None
    left = order.consent_expires_at.replace(tzinfo=utcnow().tzinfo) - utcnow()
    assert timedelta(days=2, hours=23) < left <= timedelta(days=3)
    view = client.get(f"/api/v1/orders/{body['order']}", headers=bearer(tokens["isp-b"]))
    assert view.get_json()["status"] == "PENDING_CONSENT" and not view.get_json()["final"]
    # a request is not a customer: the subscriber's details stay hidden
    refused = client.get("/api/v1/subscribers/sub1", headers=bearer(tokens["isp-b"]))
    assert_problem(refused, 404, "VPOP-404-SUBSCRIBER")


@pytest.mark.parametrize("who", ["isp-a", "admin", "noc", "portal", "webhook"])
def test_the_lines_own_isp_operators_and_the_subscriber_switch_directly(
    client: FlaskClient, tokens: dict[str, str], enqueued: list[str], who: str
) -> None:
    isp = "isp-a" if who == "isp-a" else "isp-c"
    if who == "webhook":
        response = post_signed(client, {"subscriber": "sub1", "isp": isp})
        body = response.get_json()
    else:
        body = request_switch(client, tokens[who], isp)
    assert body["status"] == "RECEIVED"
    assert "consent_url" not in body
    assert enqueued == ["rc1"]


def test_an_isp_asking_for_a_line_on_the_default_needs_consent_too(
    client: FlaskClient, tokens: dict[str, str], enqueued: list[str], database_url: str
) -> None:
    body = request_switch(client, tokens["isp-a"], "isp-a", sub="sub3")
    assert body["status"] == "PENDING_CONSENT" and enqueued == []
    assert stored(database_url, body["order"]).losing_isp_id is None


def test_the_subscriber_confirms_with_the_link_once(
    client: FlaskClient,
    tokens: dict[str, str],
    database_url: str,
    enqueued: list[str],
    finished: list[int],
) -> None:
    body = request_switch(client, tokens["isp-b"], "isp-b")
    page = client.get(link_path(body))
    assert page.status_code == 200
    assert f'data-confirm="{body["order"]}"' in page.get_data(as_text=True)
    assert "Beta Fibre" in page.get_data(as_text=True)
    fields = hidden_fields(page)
    answer = client.post("/consent", data={**fields, "answer": "confirm"})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/orders/{body['order']}")
    order = stored(database_url, body["order"])
    assert order.status == OrderStatus.RECEIVED
    assert order.consented_by == "consent-link"
    assert enqueued == ["rc1"]
    # a second click changes nothing and queues nothing
    again = client.post("/consent", data={**fields, "answer": "decline"})
    assert again.status_code == 303
    assert stored(database_url, body["order"]).status == OrderStatus.RECEIVED
    assert enqueued == ["rc1"] and finished == []
    # the order page tells the subscriber where it stands
    assert client.get(f"/orders/{body['order']}").status_code == 200
    view = client.get(f"/api/v1/orders/{body['order']}", headers=bearer(tokens["isp-b"]))
    assert view.get_json()["consented_by"] == "consent-link"


def test_a_declined_request_ends_and_changes_nothing(
    client: FlaskClient,
    tokens: dict[str, str],
    database_url: str,
    enqueued: list[str],
    finished: list[int],
) -> None:
    body = request_switch(client, tokens["isp-b"], "isp-b")
    fields = hidden_fields(client.get(link_path(body)))
    assert client.post("/consent", data={**fields, "answer": "decline"}).status_code == 303
    order = stored(database_url, body["order"])
    assert order.status == OrderStatus.DECLINED and order.finished_at is not None
    assert enqueued == [] and finished == [body["order"]]
    view = client.get(f"/api/v1/orders/{body['order']}", headers=bearer(tokens["isp-b"]))
    assert view.get_json()["final"] is True
    # and cannot be confirmed afterwards
    client.post("/consent", data={**fields, "answer": "confirm"})
    assert stored(database_url, body["order"]).status == OrderStatus.DECLINED
    assert enqueued == []


def test_an_unanswered_request_expires(
    client: FlaskClient,
    tokens: dict[str, str],
    database_url: str,
    enqueued: list[str],
    finished: list[int],
) -> None:
    body = request_switch(client, tokens["isp-b"], "isp-b")
    fields = hidden_fields(client.get(link_path(body)))
    with session_scope(database_url) as session:
        order = session.get(Order, body["order"])
        assert order is not None
        order.consent_expires_at = utcnow() - timedelta(seconds=1)
    view = client.get(f"/api/v1/orders/{body['order']}", headers=bearer(tokens["isp-b"]))
    assert (view.get_json()["status"], view.get_json()["final"]) == ("EXPIRED", True)
    assert finished == [body["order"]]
    client.post("/consent", data={**fields, "answer": "confirm"})
    assert stored(database_url, body["order"]).status == OrderStatus.EXPIRED
    assert enqueued == []


def test_the_sweep_expires_a_request_nobody_reads(
    client: FlaskClient,
    tokens: dict[str, str],
    database_url: str,
    finished: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vpop.jobs import queue

    body = request_switch(client, tokens["isp-b"], "isp-b")
    with session_scope(database_url) as session:
        order = session.get(Order, body["order"])
        assert order is not None
        order.consent_expires_at = utcnow() - timedelta(seconds=1)
    monkeypatch.setenv("VPOP_DATABASE_URL", database_url)
    assert queue.sweep()["consents_expired"] == [body["order"]]
    assert stored(database_url, body["order"]).status == OrderStatus.EXPIRED
    assert finished == [body["order"]]
    assert queue.sweep()["consents_expired"] == []


def test_a_tampered_or_foreign_link_is_refused(
    client: FlaskClient, tokens: dict[str, str], database_url: str, enqueued: list[str]
) -> None:
    body = request_switch(client, tokens["isp-b"], "isp-b")
    token = parse_qs(urlsplit(body["consent_url"]).query)["c"][0]
    assert client.get(f"/consent?c={token[:-2]}xx").status_code == 403
    forged = make_consent_token(body["order"], key="another-server-key-0123456789abcdef")
    assert client.get(f"/consent?c={forged}").status_code == 403
    fields = hidden_fields(client.get(link_path(body)))
    refused = client.post("/consent", data={**fields, "c": forged, "answer": "confirm"})
    assert refused.status_code == 403
    assert stored(database_url, body["order"]).status == OrderStatus.PENDING_CONSENT
    assert enqueued == []


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers["Content-Length"])
        _Receiver.received.append((dict(self.headers.items()), self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """An HTTP listener on 127.0.0.1 recording what is POSTed to it; stopped after the test."""
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/vpop", _Receiver.received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_losing_isp_gets_a_signed_callback_when_the_switch_is_done(
    database_url: str,
    receiver: tuple[str, list[tuple[dict[str, str], bytes]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, received = receiver
    monkeypatch.setenv("VPOP_DATABASE_URL", database_url)
    monkeypatch.setenv("VPOP_CALLBACK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("VPOP_CALLBACK_SECRET", SECRETS[1])
    with session_scope(database_url) as session:
        isp = session.get(Isp, "isp-a")
        assert isp is not None
        isp.callback_url = url
        line = session.scalars(select(Line).where(Line.subscriber_id == "sub1")).one()
        order = Order(line_id=line.id, isp_id="isp-b", router="rc1", requester="token:5",
                      status=OrderStatus.RUNNING.value, losing_isp_id="isp-a")  # fmt: skip
        session.add(order)
        session.flush()
        order_id = order.id
    # not done yet: nothing is sent
    assert send_losing_isp_callback(order_id) == "no callback"
    assert received == []
    with session_scope(database_url) as session:
        done = session.get(Order, order_id)
        assert done is not None
        done.status = OrderStatus.DONE_SUCCESS.value
        done.finished_at = utcnow()
    assert send_losing_isp_callback(order_id) == "delivered"
    [(sent, raw)] = received
    headers = {k.lower(): v for k, v in sent.items()}
    payload = Webhook(SECRETS[1]).verify(raw, headers)
    assert headers["webhook-id"] == f"order-{order_id}-lost"
    assert payload["type"] == "line.switched_away"
    data = payload["data"]
    assert (data["order"], data["isp"], data["subscriber"]) == (order_id, "isp-a", "sub1")
    assert data["calling_number"] == "+31205550001"
    assert "isp-b" not in json.dumps(payload)  # the gaining ISP is not named
    with pytest.raises(Exception, match="verif|signature|Signature"):
        Webhook(SECRETS[0]).verify(raw, headers)


def _done_orders(database_url: str, fields: list[dict[str, Any]]) -> list[int]:
    """Orders of sub1's line for isp-b that ended done, one per entry of ``fields`` (each
    with those fields set as well); their ids."""
    with session_scope(database_url) as session:
        line = session.scalars(select(Line).where(Line.subscriber_id == "sub1")).one()
        orders = [
            Order(
                line_id=line.id,
                isp_id="isp-b",
                router="rc1",
                requester="token:5",
                status=OrderStatus.DONE_SUCCESS.value,
                **extra,
            )
            for extra in fields
        ]
        session.add_all(orders)
        session.flush()
        return [order.id for order in orders]


def test_the_wiring_queues_every_due_follow_up_of_a_finished_order_from_one_read(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vpop.jobs import aaa_tasks, consent_tasks, queue, wiring

    monkeypatch.setenv("VPOP_DATABASE_URL", database_url)
    (order_id,) = _done_orders(database_url, [{}])
    asked: list[tuple[str, int, int]] = []  # (which, order, the session it was asked in)
    queued: list[tuple[str, int]] = []
    for name, module, due, task in (
        ("order", queue, "callback_due", "callback_task"),
        ("losing", consent_tasks, "losing_isp_callback_due", "losing_isp_callback_task"),
        ("coa", aaa_tasks, "coa_due", "coa_task"),
    ):
        monkeypatch.setattr(
            module,
            due,
            lambda session, o, name=name: (
                asked.append((name, o.id, id(session))) or name != "losing"
            ),
        )
        monkeypatch.setattr(module, task, lambda o, name=name: queued.append((name, o)))
    woken: list[bool] = []
    monkeypatch.setattr(queue, "wake_workers", lambda: woken.append(True))
    assert (order_finished, wiring.order_done) in wiring.RECEIVERS
    wiring.connect()
    try:
        order_finished.send(order_id)
    finally:
        wiring.disconnect()
    assert [(name, o) for name, o, _ in asked] == [
        ("order", order_id),
        ("losing", order_id),
        ("coa", order_id),
    ]
    assert len({s for _, _, s in asked}) == 1  # one read decides them all
    assert queued == [("order", order_id), ("coa", order_id)]  # only what is due
    assert woken == [True]


def test_orders_that_end_while_the_follow_ups_are_busy_are_decided_together_in_one_read(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vpop.jobs import queue, wiring
    from vpop.jobs.followups import FollowUps

    monkeypatch.setenv("VPOP_DATABASE_URL", database_url)
    hooked = "https://portal.example.net/hooks"
    ids = _done_orders(
        database_url,
        [
            {"dry_run": True, "callback_url": None},  # nothing can follow: not even read
            {"dry_run": True, "callback_url": hooked},
            {"dry_run": False},  # a done switch: its CoA and losing ISP are decided
            {"dry_run": True, "callback_url": hooked},
        ],
    )
    busy = FollowUps()  # a worker's follow-ups thread, busy with an earlier order's
    busy.start()
    monkeypatch.setattr(wiring, "followups", busy)
    release = threading.Event()
    busy.submit(lambda: None if release.wait(30) else None)
    asked: list[tuple[int, int]] = []  # (order, the session it was decided in)
    queued: list[int] = []

    def callback_due(session: Any, order: Order) -> bool:
        asked.append((order.id, id(session)))
        return bool(order.callback_url)

    monkeypatch.setattr(queue, "callback_due", callback_due)
    monkeypatch.setattr(queue, "callback_task", queued.append)
    monkeypatch.setattr(queue, "wake_workers", lambda: None)
    wiring.connect()
    try:
        for order_id in ids:
            order_finished.send(order_id)
    finally:
        wiring.disconnect()
    assert asked == []  # all three wait behind the busy thread
    release.set()
    busy.stop(30)
    assert [order for order, _ in asked] == ids[1:]
    assert len({session for _, session in asked}) == 1  # one read for the three
    assert queued == [ids[1], ids[3]]  # only those with a callback URL


def test_a_switch_away_from_an_isp_without_a_callback_url_queues_no_job(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vpop.jobs import consent_tasks, queue, wiring

    monkeypatch.setenv("VPOP_DATABASE_URL", database_url)
    queued: list[int] = []
    monkeypatch.setattr(consent_tasks, "losing_isp_callback_task", queued.append)
    monkeypatch.setattr(queue, "wake_workers", lambda: None)
    with session_scope(database_url) as session:
        session.get(Isp, "isp-a").callback_url = None  # type: ignore[union-attr]
    without, with_url = _done_orders(database_url, [{"losing_isp_id": "isp-a"}] * 2)
    wiring.order_done(without)
    assert queued == []  # nothing to send: no job stored, dequeued and run for it
    with session_scope(database_url) as session:
        session.get(Isp, "isp-a").callback_url = "https://isp-a.example.net/hooks"  # type: ignore[union-attr]
    wiring.order_done(with_url)
    assert queued == [with_url]
