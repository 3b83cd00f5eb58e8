"""Authentication of writes: Standard Webhooks signatures and bearer tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.webhooks.helpers import (
    SECRETS,
    UNKNOWN_SECRET,
    assert_problem,
    bearer,
    minutes,
    order_count,
    post_signed,
    sign_headers,
)
from vpop.core.db import session_scope
from vpop.core.errors import ConfigError
from vpop.core.time import utcnow
from vpop.identity.models import ApiToken
from webhooks import create_app

BODY = json.dumps({"subscriber": "sub1", "isp": "isp-b"}).encode()


def post(client: FlaskClient, headers: Any, body: bytes = BODY) -> Any:
    return client.post("/api/v1/selections", data=body, headers=headers)


def test_a_signature_made_with_the_second_secret_is_accepted(
    client: FlaskClient, database_url: str
) -> None:
    response = post_signed(client, json.loads(BODY), secret=SECRETS[1])
    assert response.status_code == 202, response.get_data(as_text=True)
    assert order_count(database_url) == 1


def test_one_matching_signature_among_several_is_enough(
    client: FlaskClient, database_url: str
) -> None:
    headers = sign_headers(BODY)
    wrong = sign_headers(BODY, secret=UNKNOWN_SECRET)["webhook-signature"]
    headers["webhook-signature"] = f"{wrong} {headers['webhook-signature']}"
    assert post(client, headers).status_code == 202
    assert order_count(database_url) == 1


@pytest.mark.parametrize(
    ("offset", "status"),
    [(-6, 401), (6, 401), (-4, 202), (4, 202)],
    ids=["6-minutes-past", "6-minutes-future", "4-minutes-past", "4-minutes-future"],
)
def test_the_timestamp_must_be_within_five_minutes_either_way(
    client: FlaskClient, database_url: str, offset: int, status: int
) -> None:
    when = datetime.now(UTC) + minutes(offset)
    response = post(client, sign_headers(BODY, timestamp=when))
    if status == 401:
        assert_problem(response, 401, "VPOP-401-TIMESTAMP")
        assert order_count(database_url) == 0
    else:
        assert response.status_code == 202


def _without(name: str) -> dict[str, str]:
    headers = sign_headers(BODY)
    del headers[name]
    return headers


def _with(name: str, value: str) -> dict[str, str]:
    headers = sign_headers(BODY)
    headers[name] = value
    return headers


def _repeated(name: str) -> list[tuple[str, str]]:
    """The signed headers with ``name`` sent twice (same value: still refused)."""
    headers = sign_headers(BODY)
    return [*headers.items(), (name, headers[name])]


def _signature_of(body: bytes) -> str:
    return sign_headers(body)["webhook-signature"]


# built when the test runs, not at collection: signatures carry the current time
BAD_HEADERS: dict[str, tuple[Callable[[], Any], str]] = {
    "none": (lambda: {"Content-Type": "application/json"}, "VPOP-401-MISSING"),
    "no-id": (lambda: _without("webhook-id"), "VPOP-401-HEADER"),
    "no-timestamp": (lambda: _without("webhook-timestamp"), "VPOP-401-HEADER"),
    "no-signature": (lambda: _without("webhook-signature"), "VPOP-401-HEADER"),
    "empty-signature": (lambda: _with("webhook-signature", ""), "VPOP-401-HEADER"),
    "signature-without-version": (
        lambda: _with("webhook-signature", _signature_of(BODY).removeprefix("v1,")),
        "VPOP-401-HEADER",
    ),
    "signature-not-base64": (
        lambda: _with("webhook-signature", "v1,not*base64!"),
        "VPOP-401-HEADER",
    ),
    "signature-empty-value": (lambda: _with("webhook-signature", "v1,"), "VPOP-401-HEADER"),
    "signature-unknown-version-only": (
        lambda: _with("webhook-signature", "v2," + _signature_of(BODY).removeprefix("v1,")),
        "VPOP-401-SIGNATURE",
    ),
    "signature-of-other-body": (
        lambda: _with("webhook-signature", _signature_of(b'{"isp": "isp-a"}')),
        "VPOP-401-SIGNATURE",
    ),
    "signature-with-unknown-secret": (
        lambda: sign_headers(BODY, secret=UNKNOWN_SECRET),
        "VPOP-401-SIGNATURE",
    ),
    "signature-trailing-space": (
        lambda: _with("webhook-signature", _signature_of(BODY) + " "),
        "VPOP-401-HEADER",
    ),
    "timestamp-not-a-number": (lambda: _with("webhook-timestamp", "yesterday"), "VPOP-401-HEADER"),
    "timestamp-fractional": (
        lambda: _with("webhook-timestamp", f"{datetime.now(UTC).timestamp():.3f}"),
        "VPOP-401-HEADER",
    ),
    "timestamp-negative": (lambda: _with("webhook-timestamp", "-1"), "VPOP-401-HEADER"),
    "timestamp-huge": (lambda: _with("webhook-timestamp", "9" * 30), "VPOP-401-HEADER"),
    "id-with-space": (lambda: _with("webhook-id", "msg 1"), "VPOP-401-HEADER"),
    "id-too-long": (lambda: _with("webhook-id", "m" * 201), "VPOP-401-HEADER"),
    "repeated-signature": (lambda: _repeated("webhook-signature"), "VPOP-401-HEADER"),
    "repeated-id": (lambda: _repeated("webhook-id"), "VPOP-401-HEADER"),
    "repeated-timestamp": (lambda: _repeated("webhook-timestamp"), "VPOP-401-HEADER"),
}


@pytest.mark.parametrize(("headers", "code"), list(BAD_HEADERS.values()), ids=list(BAD_HEADERS))
def test_missing_malformed_or_repeated_signatures_are_refused(
    client: FlaskClient,
    database_url: str,
    enqueued: list[str],
    headers: Callable[[], Any],
    code: str,
) -> None:
    response = post(client, headers())
    assert_problem(response, 401, code)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="vpop"'
    assert order_count(database_url) == 0
    assert enqueued == []


def test_a_tampered_body_is_refused(client: FlaskClient, database_url: str) -> None:
    headers = sign_headers(BODY)
    tampered = BODY.replace(b"isp-b", b"isp-a")
    assert_problem(post(client, headers, tampered), 401, "VPOP-401-SIGNATURE")
    assert order_count(database_url) == 0


def test_signatures_are_refused_when_no_secret_is_configured(
    database_url: str, enqueued: list[str]
) -> None:
    app = create_app({"TESTING": True, "DATABASE_URL": database_url})
    response = post(app.test_client(), sign_headers(BODY))
    assert_problem(response, 401, "VPOP-401-SIGNATURE")
    assert order_count(database_url) == 0


def test_a_401_challenges_for_a_bearer_token(client: FlaskClient) -> None:
    response = post(client, {"Content-Type": "application/json"})
    assert_problem(response, 401, "VPOP-401-MISSING")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="vpop"'


def test_authentication_runs_before_parsing(client: FlaskClient) -> None:
    # garbage that would be a 400/415 if parsed: the caller is refused first
    response = client.post("/api/v1/selections", data=b"\xff{", content_type="text/plain")
    assert_problem(response, 401, "VPOP-401-MISSING")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer vpop_" + "x" * 43,
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "vpop_" + "x" * 43,
        "Bearer  vpop_" + "x" * 43,
        "Bearer vpop_a, Bearer vpop_b",
    ],
    ids=[
        "unknown-token",
        "scheme-only",
        "empty-token",
        "basic",
        "no-scheme",
        "two-spaces",
        "two-tokens",
    ],
)
def test_bad_bearer_tokens_are_refused(
    client: FlaskClient, database_url: str, tokens: dict[str, str], authorization: str
) -> None:
    response = client.post(
        "/api/v1/selections",
        json={"subscriber": "sub1", "isp": "isp-b"},
        headers={"Authorization": authorization},
    )
    assert_problem(response, 401)
    assert order_count(database_url) == 0


def test_the_bearer_scheme_is_case_insensitive(client: FlaskClient, tokens: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/selections",
        json={"subscriber": "sub1", "isp": "isp-b"},
        headers={"Authorization": f"bearer {tokens['admin']}"},
    )
    assert response.status_code == 202


def test_a_revoked_token_is_refused(
    client: FlaskClient, database_url: str, tokens: dict[str, str]
) -> None:
    with session_scope(database_url) as session:
        for token in session.query(ApiToken).filter(ApiToken.role == "admin"):
            token.revoked_at = utcnow()
    response = client.post(
        "/api/v1/selections",
        json={"subscriber": "sub1", "isp": "isp-b"},
        headers=bearer(tokens["admin"]),
    )
    assert_problem(response, 401, "VPOP-401-TOKEN")
    assert order_count(database_url) == 0


def test_a_token_and_a_signature_together_are_ambiguous(
    client: FlaskClient, database_url: str, tokens: dict[str, str]
) -> None:
    headers = {**sign_headers(BODY), **bearer(tokens["admin"])}
    assert_problem(post(client, headers), 401, "VPOP-401-AMBIGUOUS")
    assert order_count(database_url) == 0


@pytest.mark.parametrize(
    "secrets",
    [
        "not-a-secret",
        "whsec_",
        "whsec_" + base64.b64encode(b"short").decode(),
        "whsec_***",
        42,
    ],
    ids=["no-prefix", "empty", "too-short", "not-base64", "not-a-string"],
)
def test_a_malformed_secret_stops_the_app_from_starting(database_url: str, secrets: Any) -> None:
    with pytest.raises(ConfigError) as err:
        create_app({"DATABASE_URL": database_url, "WEBHOOK_SECRETS": secrets})
    assert err.value.code == "VPOP-CFG-WEBHOOK-SECRET"


def test_secrets_come_from_the_environment(
    database_url: str, monkeypatch: pytest.MonkeyPatch, enqueued: list[str]
) -> None:
    monkeypatch.setenv("VPOP_WEBHOOK_SECRETS", f" {SECRETS[1]} , {SECRETS[0]} ")
    monkeypatch.setenv("VPOP_DATABASE_URL", database_url)
    app = create_app({"TESTING": True})
    assert app.config["DATABASE_URL"] == database_url
    assert post(app.test_client(), sign_headers(BODY)).status_code == 202
    assert enqueued == ["rc1"]


def test_a_webhook_caller_cannot_read(client: FlaskClient) -> None:
    headers = sign_headers(b"")
    response = client.get("/api/v1/runs", headers=headers)
    assert_problem(response, 401, "VPOP-401-BEARER-REQUIRED")


def test_a_hook_in_the_config_is_refused(database_url: str) -> None:
    with pytest.raises(ConfigError):
        create_app({"DATABASE_URL": database_url, "ENQUEUE": "vpop.jobs.queue.enqueue_router"})
