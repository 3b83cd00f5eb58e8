"""POST /api/v1/selections: orders, idempotency, concurrency and strict input."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.webhooks.helpers import assert_problem, bearer, order_count, post_signed, sign_headers
from vpop.core.audit import AuditEntry
from vpop.core.db import session_scope
from vpop.selection.models import IdempotencyRecord, Order
from vpop.selection.service import order_accepted


def test_signed_selection_is_accepted_and_recorded(
    client: FlaskClient, database_url: str, enqueued: list[str]
) -> None:
    response = post_signed(client, {"subscriber": "sub1", "isp": "isp-b"}, msg_id="msg_happy")
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body == {"order": body["order"], "status": "RECEIVED"}
    assert response.headers["Location"] == f"/api/v1/orders/{body['order']}"
    assert "Idempotent-Replayed" not in response.headers
    with session_scope(database_url) as session:
        order = session.get(Order, body["order"])
        assert order is not None
        assert (order.isp_id, order.router, order.requester) == ("isp-b", "rc1", "webhook")
        assert order.status == "RECEIVED" and order.dry_run is False
        assert order.line.subscriber_id == "sub1"
        record = session.scalars(select(IdempotencyRecord)).one()
        assert (record.scope, record.key, record.order_id) == ("webhook", "msg_happy", order.id)
        assert session.scalars(select(AuditEntry.action)).all() == ["order.create"]
    assert enqueued == ["rc1"]


@pytest.mark.parametrize(
    ("payload", "router"),
    [
        ({"subscriber": "sub2", "isp": "isp-a"}, "rc2"),
        ({"calling_number": "+31205550002", "isp": "isp-a"}, "rc2"),
        ({"circuit_id": "rc1:sub3", "isp": "isp-a"}, "rc1"),
        ({"access_id": "acc-sub3", "isp": "isp-a"}, "rc1"),
        (
            {
                "subscriber": "sub1",
                "isp": "isp-c",
                "dry_run": True,
                "callback_url": "https://portal.example.net/vpop/callback",
            },
            "rc1",
        ),
    ],
    ids=["subscriber", "calling-number", "circuit-id", "access-id", "dry-run-with-callback"],
)
def test_a_line_identifier_may_name_the_line(
    client: FlaskClient, enqueued: list[str], payload: dict[str, Any], router: str
) -> None:
    response = post_signed(client, payload)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert enqueued == [router]


def test_replay_returns_the_same_order_and_enqueues_once(
    client: FlaskClient, database_url: str, enqueued: list[str]
) -> None:
    payload = {"subscriber": "sub1", "isp": "isp-b"}
    first = post_signed(client, payload, msg_id="msg_replay")
    second = post_signed(client, payload, msg_id="msg_replay")
    assert first.status_code == second.status_code == 202
    assert first.get_json()["order"] == second.get_json()["order"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    assert order_count(database_url) == 1
    assert enqueued == ["rc1"]


def test_same_key_with_another_body_is_refused(
    client: FlaskClient, database_url: str, enqueued: list[str]
) -> None:
    assert (
        post_signed(client, {"subscriber": "sub1", "isp": "isp-b"}, msg_id="k").status_code == 202
    )
    response = post_signed(client, {"subscriber": "sub1", "isp": "isp-c"}, msg_id="k")
    assert_problem(response, 422, "VPOP-409-IDEMPOTENCY")
    assert order_count(database_url) == 1
    assert enqueued == ["rc1"]


def test_a_new_webhook_id_is_a_new_order(client: FlaskClient, database_url: str) -> None:
    payload = {"subscriber": "sub1", "isp": "isp-b"}
    first = post_signed(client, payload, msg_id="msg_a").get_json()["order"]
    second = post_signed(client, payload, msg_id="msg_b").get_json()["order"]
    assert first != second
    assert order_count(database_url) == 2


def test_concurrent_replays_create_exactly_one_order(
    app: Flask, database_url: str, enqueued: list[str]
) -> None:
    body = json.dumps({"subscriber": "sub1", "isp": "isp-b"}).encode()
    headers = sign_headers(body, msg_id="msg_race")
    start = threading.Barrier(20)
    results: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def send() -> None:
        client = app.test_client()
        start.wait(timeout=10)
        response = client.post("/api/v1/selections", data=body, headers=headers)
        with lock:
            results.append((response.status_code, response.get_json(force=True)))

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 20
    assert {status for status, _ in results} == {202}, results
    assert len({body["order"] for _, body in results}) == 1
    assert order_count(database_url) == 1
    assert enqueued == ["rc1"]


# ---- strict input: every refusal is a problem and leaves no order behind ----

CONTROL_CHARACTERS = {
    "newline": "\n",
    "carriage-return": "\r",
    "line-separator-u2028": "\u2028",
    "paragraph-separator-u2029": "\u2029",
    "nul": "\x00",
    "tab": "\t",
    "escape": "\x1b",
    "delete": "\x7f",
    "next-line-u0085": "\x85",
}
VALID_BODIES: dict[str, dict[str, Any]] = {
    "isp": {"subscriber": "sub1", "isp": "isp-b"},
    "subscriber": {"subscriber": "sub1", "isp": "isp-b"},
    "calling_number": {"calling_number": "+31205550001", "isp": "isp-b"},
    "circuit_id": {"circuit_id": "rc1:sub1", "isp": "isp-b"},
    "access_id": {"access_id": "acc-sub1", "isp": "isp-b"},
    "callback_url": {
        "subscriber": "sub1",
        "isp": "isp-b",
        "callback_url": "https://portal.example.net/cb",
    },
}


def _inject(value: str, char: str, where: str) -> str:
    if where == "end":
        return value + char
    if where == "start":
        return char + value
    half = len(value) // 2
    return value[:half] + char + value[half:]


@pytest.mark.parametrize("where", ["end", "start", "middle"])
@pytest.mark.parametrize("char", list(CONTROL_CHARACTERS.values()), ids=list(CONTROL_CHARACTERS))
@pytest.mark.parametrize("field", list(VALID_BODIES), ids=list(VALID_BODIES))
def test_control_characters_are_refused_in_every_string_field(
    client: FlaskClient,
    database_url: str,
    enqueued: list[str],
    field: str,
    char: str,
    where: str,
) -> None:
    payload = dict(VALID_BODIES[field])
    payload[field] = _inject(payload[field], char, where)
    response = post_signed(client, payload)
    assert_problem(response, 422)
    assert order_count(database_url) == 0
    assert enqueued == []


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"subscriber": "sub1", "isp": "isp-z"}, 404, "VPOP-404-ISP"),
        ({"subscriber": "nobody", "isp": "isp-b"}, 404, "VPOP-404-SUBSCRIBER"),
        ({"calling_number": "+31205559999", "isp": "isp-b"}, 404, "VPOP-404-LINE"),
        ({"circuit_id": "rc9:sub9", "isp": "isp-b"}, 404, "VPOP-404-LINE"),
        ({"subscriber": "sub1", "isp": "isp-b", "priority": 1}, 422, "VPOP-400-UNKNOWN-FIELD"),
        ({"subscriber": "sub1", "isp": "isp-b", "ISP": "isp-a"}, 422, "VPOP-400-UNKNOWN-FIELD"),
        ({"subscriber": "sub1", "isp": 2}, 422, "VPOP-400-TYPE"),
        ({"subscriber": "sub1", "isp": None}, 422, "VPOP-400-TYPE"),
        ({"subscriber": "sub1", "isp": ["isp-b"]}, 422, "VPOP-400-TYPE"),
        ({"subscriber": 1, "isp": "isp-b"}, 422, "VPOP-400-TYPE"),
        ({"subscriber": "sub1", "isp": "isp-b", "dry_run": "false"}, 422, "VPOP-400-TYPE"),
        ({"subscriber": "sub1", "isp": "isp-b", "dry_run": 0}, 422, "VPOP-400-TYPE"),
        ({"subscriber": "sub1", "isp": "isp-b", "dry_run": None}, 422, "VPOP-400-TYPE"),
        ({"subscriber": "sub1", "isp": "isp-b", "callback_url": 5}, 422, "VPOP-400-TYPE"),
        ({"subscriber": "sub1"}, 422, "VPOP-400-MISSING"),
        ({"isp": "isp-b"}, 422, "VPOP-400-LINE-ID"),
        (
            {"subscriber": "sub1", "calling_number": "+31205550001", "isp": "isp-b"},
            422,
            "VPOP-400-LINE-ID",
        ),
        ([{"subscriber": "sub1", "isp": "isp-b"}], 422, "VPOP-400-TYPE"),
        ("sub1 isp-b", 422, "VPOP-400-TYPE"),
        (42, 422, "VPOP-400-TYPE"),
        (None, 422, "VPOP-400-TYPE"),
        ({"subscriber": "", "isp": "isp-b"}, 422, None),
        ({"subscriber": "sub1", "isp": "ISP-B"}, 422, None),
        ({"subscriber": "sub1", "isp": "isp-b" * 20}, 422, None),
        ({"calling_number": "0031205550001", "isp": "isp-b"}, 422, None),
        (
            {"subscriber": "sub1", "isp": "isp-b", "callback_url": "file:///etc/passwd"},
            422,
            None,
        ),
        (
            {"subscriber": "sub1", "isp": "isp-b", "callback_url": "javascript:alert(1)"},
            422,
            None,
        ),
    ],
    ids=[
        "unknown-isp",
        "unknown-subscriber",
        "unknown-calling-number",
        "unknown-circuit-id",
        "unknown-key",
        "unknown-key-case",
        "int-isp",
        "null-isp",
        "list-isp",
        "int-subscriber",
        "string-dry-run",
        "int-dry-run",
        "null-dry-run",
        "int-callback-url",
        "missing-isp",
        "no-line-identifier",
        "two-line-identifiers",
        "array-body",
        "string-body",
        "number-body",
        "null-body",
        "empty-subscriber",
        "uppercase-isp",
        "overlong-isp",
        "calling-number-not-e164",
        "file-callback-url",
        "javascript-callback-url",
    ],
)
def test_bad_input_is_a_problem_and_no_order(
    client: FlaskClient,
    database_url: str,
    enqueued: list[str],
    payload: Any,
    status: int,
    code: str | None,
) -> None:
    assert_problem(post_signed(client, payload), status, code)
    assert order_count(database_url) == 0
    assert enqueued == []


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"subscriber": "sub1", "isp": ', "application/json", 400, "VPOP-400-JSON"),
        (b"", "application/json", 400, "VPOP-400-JSON"),
        (
            b'{"isp": "isp-b", "isp": "isp-a", "subscriber": "sub1"}',
            "application/json",
            400,
            "VPOP-400-JSON",
        ),
        (
            b'{"subscriber": "sub1", "isp": "isp-b", "x": NaN}',
            "application/json",
            400,
            "VPOP-400-JSON",
        ),
        (b'{"subscriber": "sub1", "isp": "isp-\xff"}', "application/json", 400, "VPOP-400-JSON"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "VPOP-400-JSON"),
        (b'{"subscriber": "sub1", "isp": "isp-b"}', "text/plain", 415, "VPOP-415-MEDIA-TYPE"),
        (
            b"subscriber=sub1&isp=isp-b",
            "application/x-www-form-urlencoded",
            415,
            "VPOP-415-MEDIA-TYPE",
        ),
    ],
    ids=[
        "truncated",
        "empty",
        "duplicate-key",
        "nan",
        "not-utf8",
        "deep-nesting",
        "text-plain",
        "form",
    ],
)
def test_malformed_bodies_are_refused(
    client: FlaskClient,
    database_url: str,
    admin_headers: dict[str, str],
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = client.post(
        "/api/v1/selections",
        data=body,
        headers={**admin_headers, "Content-Type": content_type},
    )
    assert_problem(response, status, code)
    assert order_count(database_url) == 0


@pytest.mark.parametrize("signed", [True, False], ids=["webhook", "bearer"])
def test_a_body_over_the_limit_is_refused(
    client: FlaskClient, database_url: str, admin_headers: dict[str, str], signed: bool
) -> None:
    body = json.dumps(
        {"subscriber": "sub1", "isp": "isp-b", "callback_url": "https://x.example/" + "a" * 70000}
    ).encode()
    headers = (
        sign_headers(body) if signed else {**admin_headers, "Content-Type": "application/json"}
    )
    response = client.post("/api/v1/selections", data=body, headers=headers)
    assert_problem(response, 413, "VPOP-413-TOO-LARGE")
    assert order_count(database_url) == 0


def test_a_failing_enqueue_still_answers_202(
    database_url: str, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    from webhooks import create_app

    def broken(router: str) -> None:
        raise ConnectionError(f"queue down for {router}")

    app = create_app({"TESTING": True, "DATABASE_URL": database_url})
    with order_accepted.connected_to(broken):
        response = app.test_client().post(
            "/api/v1/selections",
            json={"subscriber": "sub1", "isp": "isp-b"},
            headers=bearer(tokens["admin"]),
        )
    assert response.status_code == 202
    assert order_count(database_url) == 1
    assert "receiver of order-accepted failed for 'rc1'" in caplog.text


# ---- bearer callers ----


@pytest.mark.parametrize("role", ["admin", "noc", "portal", "isp-b"])
def test_every_role_may_select(
    client: FlaskClient, database_url: str, tokens: dict[str, str], role: str
) -> None:
    response = client.post(
        "/api/v1/selections",
        json={"subscriber": "sub1", "isp": "isp-b"},
        headers=bearer(tokens[role]),
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    with session_scope(database_url) as session:
        order = session.scalars(select(Order)).one()
        assert order.requester.startswith("token:")


def test_an_isp_token_cannot_select_another_isp(
    client: FlaskClient, database_url: str, tokens: dict[str, str], enqueued: list[str]
) -> None:
    response = client.post(
        "/api/v1/selections",
        json={"subscriber": "sub1", "isp": "isp-b"},
        headers=bearer(tokens["isp-a"]),
    )
    assert_problem(response, 403, "VPOP-403")
    assert order_count(database_url) == 0
    assert enqueued == []


def test_idempotency_key_makes_bearer_requests_replayable(
    client: FlaskClient, database_url: str, tokens: dict[str, str], enqueued: list[str]
) -> None:
    headers = {**bearer(tokens["portal"]), "Idempotency-Key": "0b7c6f0e-portal-1"}
    payload = {"subscriber": "sub1", "isp": "isp-b"}
    first = client.post("/api/v1/selections", json=payload, headers=headers)
    second = client.post("/api/v1/selections", json=payload, headers=headers)
    assert first.get_json()["order"] == second.get_json()["order"]
    assert second.headers["Idempotent-Replayed"] == "true"
    # the key is scoped to its caller: another token with the same key is another order
    other = {**bearer(tokens["noc"]), "Idempotency-Key": "0b7c6f0e-portal-1"}
    third = client.post("/api/v1/selections", json=payload, headers=other)
    assert third.get_json()["order"] != first.get_json()["order"]
    assert order_count(database_url) == 2
    assert enqueued == ["rc1", "rc1"]


def test_without_idempotency_key_each_bearer_request_is_an_order(
    client: FlaskClient, database_url: str, tokens: dict[str, str]
) -> None:
    for _ in range(2):
        response = client.post(
            "/api/v1/selections",
            json={"subscriber": "sub1", "isp": "isp-b"},
            headers=bearer(tokens["admin"]),
        )
        assert response.status_code == 202
    assert order_count(database_url) == 2


@pytest.mark.parametrize(
    "key",
    ["", "has space", "a" * 201, "comma,separated", "semi;colon", "ünïcode"],
    ids=["empty", "space", "too-long", "comma", "semicolon", "non-ascii"],
)
def test_a_malformed_idempotency_key_is_refused(
    client: FlaskClient, database_url: str, admin_headers: dict[str, str], key: str
) -> None:
    response = client.post(
        "/api/v1/selections",
        json={"subscriber": "sub1", "isp": "isp-b"},
        headers={**admin_headers, "Idempotency-Key": key},
    )
    assert_problem(response, 400, "VPOP-400-IDEMPOTENCY-KEY")
    assert order_count(database_url) == 0


def test_a_repeated_idempotency_key_header_is_refused(
    client: FlaskClient, database_url: str, tokens: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/selections",
        json={"subscriber": "sub1", "isp": "isp-b"},
        headers=[
            ("Authorization", f"Bearer {tokens['admin']}"),
            ("Idempotency-Key", "one"),
            ("Idempotency-Key", "two"),
        ],
    )
    assert_problem(response, 400, "VPOP-400-IDEMPOTENCY-KEY")
    assert order_count(database_url) == 0
