"""The subscriber portal: the list, the recognised line, links, choosing, the order page."""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from tests.web.helpers import SECRET_KEY, hidden_fields, order_count, text
from vpop.core.db import session_scope
from vpop.selection.models import Order, OrderStatus
from vpop.selection.portal_links import SALT, make_token
from webhooks.pages.order_words import plain_words


def choose_fields(client: FlaskClient, isp: str, path: str = "/") -> dict[str, str]:
    """The hidden fields of the choose form for ``isp`` on the portal page."""
    return hidden_fields(client.get(path), f'data-isp="{isp}"')


def old_token(subscriber: str, age_seconds: int, key: str = SECRET_KEY) -> str:
    """A portal link token signed ``age_seconds`` ago."""

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    return URLSafeTimedSerializer(key, salt=SALT, signer=PastSigner).dumps({"s": subscriber})


def orders(url: str) -> list[Order]:
    with session_scope(url) as session:
        return list(session.scalars(select(Order).order_by(Order.id)))


def test_anyone_sees_the_isps_with_plans_prices_and_figures(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    body = text(response)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in body
    for name in ("Alpha Net", "Beta Fibre", "Gamma Air"):
        assert name in body
    assert "Fibre 1000" in body and "1000 Mbit/s" in body and "65.00 EUR a month" in body
    beta = body[body.index('data-isp="isp-b"') :]
    assert re.search(r'data-figure="latency_ms">4\.00<', beta)
    assert re.search(r'data-figure="throughput_mbps">400<', beta)
    ages = re.findall(r'data-age="[a-z_]+">([^<]+)<', body)
    assert len(ages) == 12 and all(re.fullmatch(r"\d+ s ago", age) for age in ages)
    assert body.count('<svg class="spark"') == 12
    assert body.count("<path d=") >= 12
    # a stranger sees no choose button: choosing needs the line or a link
    assert 'action="/choose"' not in body
    assert "open this page from your own line" in body


def test_an_isp_without_fresh_figures_says_not_measured(client: FlaskClient) -> None:
    from datetime import timedelta

    from vpop.monitoring.models import QosSample

    url = client.application.config["DATABASE_URL"]
    with session_scope(url) as session:
        for sample in session.scalars(select(QosSample).where(QosSample.isp_id == "isp-a")):
            sample.at -= timedelta(hours=1)
    body = text(client.get("/"))
    alpha = body[body.index('data-isp="isp-a"') : body.index('data-isp="isp-b"')]
    assert alpha.count("not measured") == 4


def test_the_line_is_recognised_by_the_source_address(line_client: FlaskClient) -> None:
    body = text(line_client.get("/"))
    assert 'data-visitor="sub1"' in body
    assert "Hello Subscriber 1" in body
    assert "We recognised your line" in body
    assert body.count('action="/choose"') == 3
    # sub1 prefers throughput: isp-c measures 900 Mbit/s
    assert 'data-recommended="isp-c"' in body
    assert "you asked for speed (high throughput)" in body


def test_forwarding_headers_do_not_make_a_stranger_a_subscriber(client: FlaskClient) -> None:
    body = text(client.get("/", headers={"X-Forwarded-For": "192.0.2.2"}))
    assert 'data-visitor=""' in body
    assert 'action="/choose"' not in body


def test_a_stranger_gets_the_latency_pick(client: FlaskClient) -> None:
    body = text(client.get("/"))
    assert 'data-recommended="isp-b"' in body
    assert "no preference is set, so the quickest response decides" in body


def test_choosing_on_the_line_makes_an_order_through_the_order_path(
    line_client: FlaskClient, database_url: str, enqueued: list[str]
) -> None:
    fields = choose_fields(line_client, "isp-b")
    response = line_client.post("/choose", data=fields)
    assert response.status_code == 303
    assert response.headers["Location"] == "/orders/1"
    assert enqueued == ["rc1"]
    [order] = orders(database_url)
    assert (order.line_id, order.isp_id, order.router) == (1, "isp-b", "rc1")
    assert order.requester == "portal:sub1"
    assert not order.dry_run
    page = line_client.get("/orders/1")
    assert page.status_code == 200
    body = text(page)
    assert 'data-order-status="RECEIVED"' in body and 'data-final="false"' in body
    assert "Your choice of Beta Fibre is received" in body
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in body
    status = line_client.get("/orders/1.json").get_json()
    assert status["status"] == "RECEIVED" and status["final"] is False
    assert status["headline"] == "Received"


def test_a_double_click_makes_one_order(
    line_client: FlaskClient, database_url: str, enqueued: list[str]
) -> None:
    fields = choose_fields(line_client, "isp-b")
    first = line_client.post("/choose", data=fields)
    second = line_client.post("/choose", data=fields)
    assert first.headers["Location"] == second.headers["Location"] == "/orders/1"
    assert order_count(database_url) == 1
    assert enqueued == ["rc1"]


def test_a_link_lets_the_subscriber_choose_from_anywhere(
    client: FlaskClient, database_url: str, enqueued: list[str]
) -> None:
    token = make_token("sub2", key=SECRET_KEY)
    body = text(client.get(f"/?link={token}"))
    assert "Hello Subscriber 2" in body and "personal portal link" in body
    fields = choose_fields(client, "isp-c", f"/?link={token}")
    assert fields["link"] == token
    response = client.post("/choose", data=fields)
    assert response.status_code == 303
    [order] = orders(database_url)
    assert (order.line_id, order.isp_id, order.router, order.requester) == (
        2,
        "isp-c",
        "rc2",
        "portal:sub2",
    )
    assert enqueued == ["rc2"]
    assert client.get(response.headers["Location"]).status_code == 200


def test_a_subscribers_preference_drives_the_pick_for_a_link(client: FlaskClient) -> None:
    body = text(client.get(f"/?link={make_token('sub3', key=SECRET_KEY)}"))
    assert 'data-recommended="isp-c"' in body  # sub3 prefers price: Value 50 at 19.00
    assert "has the cheapest plan right now (19.00 EUR a month" in body


def _tampered(token: str) -> str:
    payload, _, rest = token.partition(".")
    swapped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    return f"{swapped}.{rest}"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: _tampered(make_token("sub2", key=SECRET_KEY)), "not valid"),
        (lambda: make_token("sub2", key="another-key-entirely-0123456789"), "not valid"),
        (lambda: old_token("sub2", 2 * 24 * 3600), "has expired"),
        (lambda: "garbage", "not valid"),
        (lambda: "", "not valid"),
        (lambda: make_token("sub9", key=SECRET_KEY), "names no line"),
    ],
    ids=["tampered", "other-key", "expired", "garbage", "empty", "unknown-subscriber"],
)
def test_a_bad_link_is_refused_visibly(client: FlaskClient, make: object, words: str) -> None:
    token = make()  # type: ignore[operator]
    response = client.get("/", query_string={"link": token})
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    body = text(response)
    assert words in body and 'role="alert"' in body
    assert "Back to the ISP list" in body


@pytest.mark.parametrize(
    "make",
    [
        lambda: _tampered(make_token("sub2", key=SECRET_KEY)),
        lambda: old_token("sub2", 2 * 24 * 3600),
    ],
    ids=["tampered", "expired"],
)
def test_choosing_with_a_bad_link_is_refused(
    client: FlaskClient, database_url: str, enqueued: list[str], make: object
) -> None:
    fields = choose_fields(client, "isp-b", f"/?link={make_token('sub2', key=SECRET_KEY)}")
    fields["link"] = make()  # type: ignore[operator]
    response = client.post("/choose", data=fields)
    assert response.status_code == 403
    assert order_count(database_url) == 0 and enqueued == []


def test_a_link_just_inside_its_lifetime_works(client: FlaskClient) -> None:
    response = client.get("/", query_string={"link": old_token("sub2", 23 * 3600)})
    assert response.status_code == 200


def test_choosing_needs_the_line_or_a_link(
    client: FlaskClient, database_url: str, enqueued: list[str]
) -> None:
    token = hidden_fields(client.get("/?link=" + make_token("sub2", key=SECRET_KEY)))
    response = client.post(
        "/choose", data={"csrf_token": token["csrf_token"], "isp": "isp-b", "form_key": "k1"}
    )
    assert response.status_code == 403
    assert "open this page from your own line" in text(response)
    assert order_count(database_url) == 0 and enqueued == []


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"isp": "isp-z"}, 404, "unknown ISP &#39;isp-z&#39;"),
        ({"isp": "isp-b\x00"}, 422, "is not a valid id"),
        ({"isp": "isp-b\r\nX-Injected: 1"}, 422, "is not a valid id"),
        ({"isp": "<script>alert(1)</script>"}, 422, "&lt;script&gt;"),
        ({"isp": ""}, 422, "choose one of the ISPs"),
        ({"form_key": "not a key!"}, 422, "form key is malformed"),
        ({"extra": "1"}, 422, "the form has no field"),
    ],
    ids=["unknown-isp", "nul", "crlf", "markup", "empty", "bad-form-key", "unknown-field"],
)
def test_bad_input_shows_a_message_and_makes_no_order(
    line_client: FlaskClient,
    database_url: str,
    enqueued: list[str],
    change: dict[str, str],
    status: int,
    words: str,
) -> None:
    fields = {**choose_fields(line_client, "isp-b"), **change}
    response = line_client.post("/choose", data=fields)
    assert response.status_code == status
    body = text(response)
    assert "data-form-error" in body and "No order was made." in body
    assert words in body
    assert "<script>alert" not in body
    assert order_count(database_url) == 0 and enqueued == []
    # the list is shown again, ready for another try
    assert body.count('action="/choose"') == 3


def test_a_repeated_field_is_refused(line_client: FlaskClient, database_url: str) -> None:
    fields = choose_fields(line_client, "isp-b")
    data = MultiDict([*fields.items(), ("isp", "isp-c")])
    response = line_client.post("/choose", data=data)
    assert response.status_code == 422
    assert order_count(database_url) == 0


@pytest.mark.parametrize("token", [None, "", "forged-token"], ids=["missing", "empty", "wrong"])
def test_a_form_without_its_csrf_token_is_refused(
    line_client: FlaskClient, database_url: str, enqueued: list[str], token: str | None
) -> None:
    fields = choose_fields(line_client, "isp-b")
    if token is None:
        del fields["csrf_token"]
    else:
        fields["csrf_token"] = token
    response = line_client.post("/choose", data=fields)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    body = text(response)
    assert "security token" in body and 'role="alert"' in body
    assert order_count(database_url) == 0 and enqueued == []


def test_a_csrf_token_from_another_session_is_refused(
    app: Flask, line_client: FlaskClient, database_url: str
) -> None:
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.2"
    stolen = choose_fields(other, "isp-b")["csrf_token"]
    fields = {**choose_fields(line_client, "isp-b"), "csrf_token": stolen}
    assert line_client.post("/choose", data=fields).status_code == 400
    assert order_count(database_url) == 0


def test_a_csrf_token_without_a_session_is_refused(app: Flask, database_url: str) -> None:
    first = app.test_client()
    first.environ_base["REMOTE_ADDR"] = "192.0.2.2"
    fields = choose_fields(first, "isp-b")
    cookieless = app.test_client(use_cookies=False)
    cookieless.environ_base["REMOTE_ADDR"] = "192.0.2.2"
    response = cookieless.post("/choose", data=fields)
    assert response.status_code == 400
    assert "cookies" in text(response)
    assert order_count(database_url) == 0


def test_an_order_page_is_only_for_its_subscriber(
    app: Flask, line_client: FlaskClient, client: FlaskClient
) -> None:
    line_client.post("/choose", data=choose_fields(line_client, "isp-b"))
    assert client.get("/orders/1").status_code == 404
    assert client.get("/orders/1.json").status_code == 404
    sub2 = app.test_client()
    sub2.environ_base["REMOTE_ADDR"] = "192.0.2.6"
    assert sub2.get("/orders/1").status_code == 404
    # the same line from a fresh browser may look
    again = app.test_client()
    again.environ_base["REMOTE_ADDR"] = "192.0.2.2"
    assert again.get("/orders/1").status_code == 200


def test_the_order_page_shows_the_result_in_plain_words(
    line_client: FlaskClient, database_url: str
) -> None:
    line_client.post("/choose", data=choose_fields(line_client, "isp-b"))
    with session_scope(database_url) as session:
        order = session.get(Order, 1)
        assert order is not None
        order.status = OrderStatus.DONE_FAILED.value
        order.error = "router rc1 is unreachable; nothing was changed"
    body = text(line_client.get("/orders/1"))
    assert 'data-final="true"' in body and "http-equiv" not in body
    assert "Not switched" in body
    assert "your line still uses the network&#39;s default ISP" in body
    assert "Try again in a few minutes" in body and "quote order 1" in body
    assert "unreachable" not in body  # operators' words stay on the NOC pages


@pytest.mark.parametrize(
    ("status", "dry_run", "headline", "tone"),
    [
        ("RECEIVED", False, "Received", "progress"),
        ("RUNNING", False, "Switching", "progress"),
        ("UNKNOWN", False, "Checking", "progress"),
        ("DONE_SUCCESS", False, "Done", "success"),
        ("DONE_SUCCESS", True, "Checked", "success"),
        ("DONE_FAILED", False, "Not switched", "failure"),
        ("RECONCILED", False, "Not switched", "failure"),
    ],
    ids=["received", "running", "unknown", "success", "dry-run", "failed", "reconciled"],
)
def test_plain_words(status: str, dry_run: bool, headline: str, tone: str) -> None:
    view = {"order": 7, "status": status, "isp": "isp-b", "dry_run": dry_run}
    words = plain_words(view, {"isp-b": "Beta Fibre", "isp-a": "Alpha Net"}, "isp-a")
    assert (words["headline"], words["tone"]) == (headline, tone)
    assert "Beta Fibre" in words["detail"]
    assert bool(words["advice"]) == (tone != "success")
    if tone == "failure":
        assert "Alpha Net" in words["detail"] and "order 7" in words["advice"]


def test_page_errors_are_html_and_api_errors_stay_problems(client: FlaskClient) -> None:
    page = client.get("/orders/999")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert client.get("/orders/abc").mimetype == "text/html"
    assert client.get("/choose").status_code == 405
    assert client.get("/choose").mimetype == "text/html"
    assert client.get("/nothing-here").mimetype == "application/problem+json"
    assert client.get("/api/v1/orders/1").mimetype == "application/problem+json"
    assert client.get("/api/v1/nothing").mimetype == "application/problem+json"


def test_pages_carry_security_headers_and_a_safe_cookie(line_client: FlaskClient) -> None:
    response = line_client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_every_asset_is_served_by_vpop(client: FlaskClient) -> None:
    body = text(client.get("/"))
    assets = re.findall(r'(?:src|href)="([^"]+)"', body)
    assert assets, body
    assert all(asset.startswith("/") and not asset.startswith("//") for asset in assets)
    for asset in ("/static/vpop.css", "/static/vpop.js", "/static/favicon.svg"):
        with client.get(asset) as response:
            assert response.status_code == 200, asset
            content = response.data.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")
        assert b"http://" not in content and b"https://" not in content
    assert "style=" not in body and "<script>" not in body  # the CSP forbids inline code


@pytest.fixture
def isp_request(database_url: str, enqueued: list[str]) -> int:
    """isp-b's pending request to take over sub1's line (sub1 is not its customer)."""
    from vpop.selection.service import Caller, SelectionRequest, submit_selection

    order, _ = submit_selection(
        SelectionRequest(isp="isp-b", subscriber="sub1"),
        Caller(name="token:9", role="isp", isp="isp-b"),
        None,
        url=database_url,
    )
    assert order.status == OrderStatus.PENDING_CONSENT and enqueued == []
    return order.id


def _status(url: str, order_id: int) -> tuple[str, str | None]:
    with session_scope(url) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order.status, order.consented_by


def test_the_subscriber_sees_a_pending_request_and_confirms_it(
    line_client: FlaskClient, isp_request: int, database_url: str, enqueued: list[str]
) -> None:
    page = line_client.get("/")
    body = text(page)
    assert f'data-request="{isp_request}"' in body and 'data-request-isp="isp-b"' in body
    assert "Beta Fibre</strong> asked to take over your line" in body
    fields = hidden_fields(page, after=f'data-request="{isp_request}"')
    assert fields["order"] == str(isp_request) and "c" not in fields
    answer = line_client.post("/consent", data={**fields, "answer": "confirm"})
    assert answer.status_code == 303
    assert _status(database_url, isp_request) == ("RECEIVED", "portal")
    assert enqueued == ["rc1"]
    # the order page is the subscriber's now, and the request is gone from the list
    assert line_client.get(answer.headers["Location"]).status_code == 200
    assert "data-request=" not in text(line_client.get("/"))


def test_the_subscriber_declines_a_request(
    line_client: FlaskClient, isp_request: int, database_url: str, enqueued: list[str]
) -> None:
    fields = hidden_fields(line_client.get("/"), after=f'data-request="{isp_request}"')
    answer = line_client.post("/consent", data={**fields, "answer": "decline"})
    assert answer.status_code == 303
    assert _status(database_url, isp_request) == ("DECLINED", None)
    assert enqueued == []
    assert "Declined" in text(line_client.get(answer.headers["Location"]))


def test_another_line_cannot_answer_a_request(
    app: Flask, line_client: FlaskClient, isp_request: int, database_url: str
) -> None:
    fields = hidden_fields(line_client.get("/"), after=f'data-request="{isp_request}"')
    neighbour = app.test_client()
    neighbour.environ_base["REMOTE_ADDR"] = "192.0.2.10"  # sub3's line
    page = neighbour.get("/")
    assert "data-request=" not in text(page)
    token = hidden_fields(page)["csrf_token"]
    refused = neighbour.post("/consent", data={**fields, "csrf_token": token, "answer": "confirm"})
    assert refused.status_code == 404
    nobody = app.test_client()  # 127.0.0.1: no line, no link
    with nobody.session_transaction() as session:
        session["csrf"] = "t"
    unknown = nobody.post("/consent", data={**fields, "csrf_token": "t", "answer": "confirm"})
    assert unknown.status_code == 403
    assert _status(database_url, isp_request) == ("PENDING_CONSENT", None)


def test_an_answer_without_the_csrf_token_is_refused(
    line_client: FlaskClient, isp_request: int, database_url: str, enqueued: list[str]
) -> None:
    fields = hidden_fields(line_client.get("/"), after=f'data-request="{isp_request}"')
    del fields["csrf_token"]
    refused = line_client.post("/consent", data={**fields, "answer": "confirm"})
    assert refused.status_code in (400, 403)
    assert _status(database_url, isp_request) == ("PENDING_CONSENT", None)
    assert enqueued == []


def test_a_portal_link_visitor_answers_too(
    client: FlaskClient, isp_request: int, database_url: str, enqueued: list[str]
) -> None:
    link = make_token("sub1", key=SECRET_KEY)
    page = client.get(f"/?link={link}")
    fields = hidden_fields(page, after=f'data-request="{isp_request}"')
    assert fields["link"] == link
    assert client.post("/consent", data={**fields, "answer": "confirm"}).status_code == 303
    assert _status(database_url, isp_request) == ("RECEIVED", "portal")
    assert enqueued == ["rc1"]
