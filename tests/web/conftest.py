"""Fixtures for the portal and NOC pages: a migrated SQLite file with ISPs, plans, lines,
current QoS and its rollups, an app with recording hooks, and a signed-in NOC client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.dbtemplate import migrated_sqlite
from tests.web.helpers import NOC_PASSWORD, SECRET_KEY, form_token
from vpop.catalogue.models import Isp, Line, Plan, Subscriber
from vpop.core.db import dispose_engines, session_scope
from vpop.core.time import utcnow
from vpop.identity.users import create_user
from vpop.monitoring.models import QosSample, Rollup
from vpop.monitoring.rollups import bucket_start, series_name
from vpop.selection.service import order_accepted, reconcile_requested
from webhooks import create_app

# per ISP: latency, jitter, loss, throughput (isp-b is the quickest, isp-c the fastest)
FIGURES = {
    "isp-a": (12.0, 1.5, 0.0, 90.0),
    "isp-b": (4.0, 0.5, 0.0, 400.0),
    "isp-c": (30.0, 4.0, 1.0, 900.0),
}


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh migrated SQLite file: three ISPs with plans, three subscribers with one line
    each (sub1 on 192.0.2.2/32 prefers throughput), fresh QoS samples and 24 h of rollups,
    and a NOC user ``alice``."""
    url = migrated_sqlite(tmp_path / "vpop.sqlite")
    now = utcnow()
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
                Plan(isp_id="isp-a", name="Basic 100", speed_mbps=100, monthly_price_minor=2900),
                Plan(isp_id="isp-b", name="Fibre 500", speed_mbps=500, monthly_price_minor=4500),
                Plan(isp_id="isp-b", name="Fibre 1000", speed_mbps=1000, monthly_price_minor=6500),
                Plan(isp_id="isp-c", name="Value 50", speed_mbps=50, monthly_price_minor=1900),
            ]
        )
        profiles = {"sub1": {"prefer": "throughput"}, "sub2": {}, "sub3": {"prefer": "price"}}
        for k, (sub, router) in enumerate([("sub1", "rc1"), ("sub2", "rc2"), ("sub3", "rc1")]):
            session.add(Subscriber(id=sub, name=f"Subscriber {k + 1}", profile=profiles[sub]))
            session.flush()
            session.add(
                Line(
                    subscriber_id=sub,
                    router=router,
                    interface=sub,
                    prefix=f"192.0.2.{4 * k + 2}/32",
                    calling_number=f"+3120555{k + 1:04d}",
                    circuit_id=f"{router}:{sub}",
                )
            )
        for isp, (latency, jitter, loss, throughput) in FIGURES.items():
            session.add(
                QosSample(
                    isp_id=isp,
                    router="rc1",
                    at=now - timedelta(seconds=4),
                    latency_ms=latency,
                    jitter_ms=jitter,
                    loss_pct=loss,
                    throughput_mbps=throughput,
                    sent=10,
                    received=10,
                )
            )
            # 24 hours of 10-minute rollups, as the probes would leave them
            for step in range(144):
                bucket = bucket_start(now - timedelta(minutes=10 * step + 1))
                swing = 1 + (step % 12) / 20
                for metric, value in zip(
                    ("latency_ms", "jitter_ms", "loss_pct", "throughput_mbps"),
                    (latency * swing, jitter * swing, loss, throughput / swing),
                    strict=True,
                ):
                    session.add(
                        Rollup(
                            series=series_name("qos", isp, "rc1", metric),
                            bucket=bucket,
                            count=2,
                            total=2 * value,
                            minimum=value,
                            maximum=value,
                        )
                    )
        create_user(session, "alice", NOC_PASSWORD, "noc", actor="tests")
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
def reconciles() -> Iterator[list[str]]:
    """Routers announced by ``reconcile_requested`` (NOC asked), in order."""
    seen: list[str] = []
    with reconcile_requested.connected_to(seen.append):
        yield seen


@pytest.fixture
def app(database_url: str, enqueued: list[str], reconciles: list[str]) -> Flask:
    """The app on the test database, with a fixed secret key (the fixtures record signals)."""
    return create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "SECRET_KEY": SECRET_KEY,
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser from nowhere in particular (127.0.0.1: no line)."""
    return app.test_client()


@pytest.fixture
def line_client(app: Flask) -> FlaskClient:
    """A browser on sub1's line: its requests come from 192.0.2.2."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.2"
    return client


@pytest.fixture
def noc(app: Flask) -> FlaskClient:
    """A browser signed in to the NOC pages as ``alice`` (role noc)."""
    client = app.test_client()
    token = form_token(client.get("/noc/login"))
    response = client.post(
        "/noc/login",
        data={"csrf_token": token, "username": "alice", "password": NOC_PASSWORD},
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    return client
