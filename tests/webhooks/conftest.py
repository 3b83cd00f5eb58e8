"""Fixtures for the HTTP API: a migrated SQLite file, the app, a client, bearer tokens.

Every test here also runs under :func:`conformance`: each response of ``/api/v1`` and
``/healthz`` it provokes is held against the OpenAPI document, and one that does not match
fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, request_finished
from flask.testing import FlaskClient

from tests.dbtemplate import migrated_sqlite
from tests.webhooks.conformance import Conformance
from tests.webhooks.helpers import SECRETS, bearer
from vpop.catalogue.models import Isp, Line, Plan, Subscriber
from vpop.core.db import dispose_engines, session_scope
from vpop.identity.tokens import create_token
from vpop.selection.service import order_accepted
from webhooks import create_app
from webhooks.api import openapi

HOSTS_YAML = """\
rc1:
  hostname: 127.0.0.1
  groups: [frr, lab]
  data:
    uplinks:
      isp-a: {interface: isp-a, address: 198.51.100.1/30, next_hop: 198.51.100.2}
      isp-b: {interface: isp-b, address: 198.51.100.9/30, next_hop: 198.51.100.10}
      isp-z: {interface: isp-z, address: 198.51.100.13/30, next_hop: 198.51.100.14}
rc2:
  hostname: 127.0.0.1
  groups: [frr, lab]
  data:
    uplinks:
      isp-b: {interface: isp-b, address: 198.51.100.17/30, next_hop: 198.51.100.18}
"""


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Nornir hosts file with rc1 (uplinks isp-a, isp-b, isp-z) and rc2 (isp-b)."""
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS_YAML)
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    monkeypatch.setenv("VPOP_LAB_DIR", str(tmp_path / "lab"))
    return hosts


@pytest.fixture(autouse=True)
def conformance() -> Iterator[Conformance]:
    """Hold every API response of the test against the OpenAPI document.

    The checker listens to Flask's ``request_finished`` signal, which every app sends, so
    the apps tests build themselves (``create_app`` in a test) are checked as well as
    :func:`app`. A violation fails the test when it ends; a test that provokes one on
    purpose clears :attr:`Conformance.violations` after looking at it.
    """
    checker = Conformance(openapi.document())
    with request_finished.connected_to(checker.record):
        yield checker
    if checker.violations:
        pytest.fail(
            "responses the OpenAPI document does not describe:\n"
            + "\n".join(checker.violations[:20])
        )


def seed(url: str) -> None:
    """The catalogue every API test starts from: isp-a/isp-b/isp-c with plans, and three
    subscribers with a line each (sub1 and sub3 on rc1, sub2 on rc2)."""
    with session_scope(url) as session:
        session.add_all(
            [
                Isp(id="isp-a", name="Alpha Net"),
                Isp(id="isp-b", name="Beta Fibre"),
                Isp(id="isp-c", name="Gamma Air"),
            ]
        )
        session.flush()
        session.add_all(
            [
                Plan(isp_id="isp-a", name="basic", speed_mbps=100, monthly_price_minor=1999),
                Plan(isp_id="isp-a", name="fast", speed_mbps=1000, monthly_price_minor=4999),
                Plan(
                    isp_id="isp-b",
                    name="fibre",
                    speed_mbps=500,
                    monthly_price_minor=2999,
                    currency="EUR",
                ),
            ]
        )
        for k, (sub, router) in enumerate(
            [("sub1", "rc1"), ("sub2", "rc2"), ("sub3", "rc1")], start=1
        ):
            session.add(Subscriber(id=sub, name=f"Subscriber {k}"))
            session.flush()
            session.add(
                Line(
                    subscriber_id=sub,
                    router=router,
                    interface=sub,
                    prefix=f"192.0.2.{4 * k + 2}/32",
                    calling_number=f"+3120555{k:04d}",
                    circuit_id=f"{router}:{sub}",
                    access_id=f"acc-{sub}",
                )
            )


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file, migrated, with isp-a/isp-b/isp-c and three subscribers."""
    url = migrated_sqlite(tmp_path / "vpop.sqlite")
    seed(url)
    try:
        yield url
    finally:
        dispose_engines()


@pytest.fixture
def enqueued() -> Iterator[list[str]]:
    """Routers announced by ``order_accepted`` (what the wiring queues), in order."""
    seen: list[str] = []
    with order_accepted.connected_to(seen.append):
        yield seen


@pytest.fixture
def app(database_url: str, enqueued: list[str]) -> Flask:
    """The app on the test database, with two webhook secrets and a recording ENQUEUE."""
    return create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "WEBHOOK_SECRETS": ",".join(SECRETS),
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def tokens(database_url: str) -> dict[str, str]:
    """Clear bearer tokens by role: admin, noc, portal, isp-a, isp-b (an ISP's role is isp)."""
    return make_tokens(database_url)


def make_tokens(url: str) -> dict[str, str]:
    """Create the bearer tokens of :func:`tokens` in ``url``'s database; the clear ones."""
    with session_scope(url) as session:
        return {
            "admin": create_token(session, "admin", name="test admin"),
            "noc": create_token(session, "noc", name="test noc"),
            "portal": create_token(session, "portal", name="test portal"),
            "isp-a": create_token(session, "isp", "isp-a", name="test isp-a"),
            "isp-b": create_token(session, "isp", "isp-b", name="test isp-b"),
        }


@pytest.fixture
def admin_headers(tokens: dict[str, str]) -> dict[str, str]:
    """The Authorization header of the admin token."""
    return bearer(tokens["admin"])
