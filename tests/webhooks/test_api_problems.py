"""Every error is application/problem+json with a stable code that docs/errors.md explains."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.webhooks.helpers import assert_problem
from vpop.core.errors import VpopError
from webhooks.problems import Problem

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/v1/nothing-here", 404, "VPOP-404-ROUTE"),
        ("get", "/nothing-here", 404, "VPOP-404-ROUTE"),
        ("get", "/api/v1/orders/not-a-number", 404, "VPOP-404-ROUTE"),
        ("get", "/api/v1/selections", 405, "VPOP-405-METHOD"),
        ("delete", "/api/v1/isps", 405, "VPOP-405-METHOD"),
        ("put", "/api/v1/orders/1", 405, "VPOP-405-METHOD"),
    ],
    ids=["unknown-api-route", "unknown-route", "bad-id", "get-selections", "delete-isps", "put"],
)
def test_routing_errors_are_problems(
    client: FlaskClient, method: str, path: str, status: int, code: str
) -> None:
    response = getattr(client, method)(path)
    assert_problem(response, status, code)
    if status == 405:
        assert response.headers["Allow"]


def test_an_unexpected_error_is_a_bare_500(app: Flask, client: FlaskClient) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    response = client.get("/boom")
    body = assert_problem(response, 500, "VPOP-500-INTERNAL")
    assert "secret" not in response.get_data(as_text=True)
    assert body["title"] == "Internal Server Error"


def test_vpop_errors_keep_their_code_and_status() -> None:
    problem = Problem.from_exception(VpopError("odd", code="VPOP-503-BUSY"))
    assert (problem.status, problem.code, problem.detail) == (500, "VPOP-503-BUSY", "odd")
    assert problem.body()["type"] == "tag:vpop,2025:VPOP-503-BUSY"


def _codes_in_source() -> set[str]:
    codes: set[str] = set()
    sources = [*sorted((ROOT / "webhooks").rglob("*.py")), *sorted((ROOT / "vpop").rglob("*.py"))]
    sources += sorted((ROOT / "tasks").glob("*.py"))
    for path in sources:
        codes |= set(re.findall(r'"(VPOP-[A-Z0-9-]*[A-Z0-9])"', path.read_text()))
    return codes


def test_every_code_the_api_uses_is_documented() -> None:
    documented = set(re.findall(r"`(VPOP-[A-Z0-9-]+)`", (ROOT / "docs/errors.md").read_text()))
    codes = _codes_in_source()
    assert len(codes) > 20
    assert codes - documented == set()
