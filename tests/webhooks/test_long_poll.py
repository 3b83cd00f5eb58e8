"""Waiting for an order without polling: ``GET /api/v1/orders/{id}`` with ``Prefer: wait=N``
answers when the order ends (the worker's wake-up on the ``finished`` channel), or after N
seconds with where it stands; ``GET /api/v1/isps`` is built again as soon as the probe job
announces new samples, and otherwise served from the process's cache.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient

from tests.webhooks.helpers import bearer, post_signed
from vpop.core.db import session_scope
from vpop.core.wake import QOS, notify
from vpop.jobs.dispatch import announce_finished
from vpop.monitoring.service import QosSample
from vpop.selection.models import Order, OrderStatus
from webhooks.api import catalogue
from webhooks.api import selection as selection_api
from webhooks.api.selection import MAX_WAIT_SECONDS, prefer_wait


@pytest.mark.parametrize(
    ("values", "wanted"),
    [
        (["wait=5"], 5),
        (["respond-async, wait=12"], 12),
        (["wait = 3"], 3),
        (["handling=lenient; x=1", "wait=7"], 7),
        (["wait=100000"], MAX_WAIT_SECONDS),
        (["wait=0"], None),
        (["wait=-1"], None),
        (["wait=soon"], None),
        ([], None),
    ],
)
def test_the_wait_preference_is_read_as_rfc_7240_says(
    values: list[str], wanted: int | None
) -> None:
    assert prefer_wait(values) == wanted


def _finish_when_asked(database_url: str, order_id: int, go: threading.Event) -> None:
    """Play the worker: when ``go`` is set, end the order and send its wake-up."""
    go.wait(30)
    with session_scope(database_url) as session:
        order = session.get(Order, order_id)
        assert order is not None
        order.status = OrderStatus.DONE_SUCCESS.value
        order.diff = "+ set nexthop-group vpop-isp-b"
    announce_finished(order_id)


def test_a_long_poll_answers_with_the_order_once_it_has_ended(
    client: FlaskClient,
    tokens: dict[str, str],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accepted = post_signed(client, {"subscriber": "sub1", "isp": "isp-b"}, msg_id="lp-1")
    order_id = accepted.get_json()["order"]
    go = threading.Event()
    worker = threading.Thread(target=_finish_when_asked, args=(database_url, order_id, go))
    worker.start()
    # the order ends only once the GET has read it (not final) and begun to wait
    waiter = selection_api._finished
    original_wait = waiter.wait

    def wait_and_let_the_worker_go(seen: int, timeout: float) -> int:
        go.set()
        return original_wait(seen, timeout)

    monkeypatch.setattr(waiter, "wait", wait_and_let_the_worker_go)
    answer = client.get(
        f"/api/v1/orders/{order_id}", headers={**bearer(tokens["noc"]), "Prefer": "wait=30"}
    )
    worker.join(30)
    assert answer.status_code == 200
    assert answer.headers["Preference-Applied"] == "wait=30"
    body = answer.get_json()
    assert body["status"] == "DONE_SUCCESS" and body["final"] is True
    assert body["diff"] == "+ set nexthop-group vpop-isp-b"


def test_a_long_poll_gives_up_after_its_wait_with_the_order_as_it_stands(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    accepted = post_signed(client, {"subscriber": "sub1", "isp": "isp-b"}, msg_id="lp-2")
    order_id = accepted.get_json()["order"]
    started = datetime.now(UTC)
    answer = client.get(
        f"/api/v1/orders/{order_id}", headers={**bearer(tokens["noc"]), "Prefer": "wait=1"}
    )
    assert (datetime.now(UTC) - started).total_seconds() >= 1  # it did wait its second
    assert answer.headers["Preference-Applied"] == "wait=1"
    assert answer.get_json()["status"] == "RECEIVED"
    assert answer.get_json()["final"] is False


def test_without_the_preference_the_answer_is_immediate_and_says_nothing_applied(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    accepted = post_signed(client, {"subscriber": "sub1", "isp": "isp-b"}, msg_id="lp-3")
    answer = client.get(
        f"/api/v1/orders/{accepted.get_json()['order']}", headers=bearer(tokens["noc"])
    )
    assert "Preference-Applied" not in answer.headers
    assert answer.get_json()["status"] == "RECEIVED"


def test_a_long_poll_does_not_reveal_another_isps_order(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    accepted = post_signed(client, {"subscriber": "sub1", "isp": "isp-b"}, msg_id="lp-4")
    answer = client.get(
        f"/api/v1/orders/{accepted.get_json()['order']}",
        headers={**bearer(tokens["isp-a"]), "Prefer": "wait=5"},
    )
    assert answer.status_code == 404
    assert answer.get_json()["code"] == "VPOP-404-ORDER"


def test_the_catalogue_cache_is_refreshed_by_the_probe_jobs_wake_up(
    client: FlaskClient, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalogue, "ISPS_CACHE_SECONDS", 3600.0)  # only a wake-up refreshes

    def latency_of_isp_a() -> object:
        isps = client.get("/api/v1/isps").get_json()["isps"]
        return next(isp for isp in isps if isp["id"] == "isp-a")["qos"]["latency_ms"]

    assert latency_of_isp_a() is None
    with session_scope(database_url) as session:
        session.add(QosSample(isp_id="isp-a", router="rc1", at=datetime.now(UTC), latency_ms=7.5))
    assert latency_of_isp_a() is None  # served from the cache: no probe announced it
    notify(QOS)  # what the probe job does after writing its samples
    deadline = datetime.now(UTC).timestamp() + 10
    while (seen := latency_of_isp_a()) is None and datetime.now(UTC).timestamp() < deadline:
        threading.Event().wait(0.01)  # the wake-up is read by the process's listener thread
    assert seen == 7.5
