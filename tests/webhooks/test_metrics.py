"""``GET /metrics``: Prometheus text built from the database at scrape time, for operators."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.webhooks.helpers import assert_problem, bearer
from vpop.catalogue.models import Isp, Line
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.core.time import utcnow
from vpop.identity.tokens import create_token
from vpop.leasing.models import Lease, UtilisationEvent, UtilisationSample
from vpop.monitoring.models import PollLog, QosSample
from vpop.selection.models import Order, Run
from webhooks import create_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Samples:
    """Every sample of a scrape, keyed by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the scrape does not have it."""
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    """The metric names in a scrape."""
    return {name for name, _ in samples}


@pytest.fixture
def client(app: Flask, tokens: dict[str, str]) -> FlaskClient:
    """A test client that scrapes as Prometheus does here: with a noc token."""
    scraper = app.test_client()
    scraper.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {tokens['noc']}"
    return scraper


@pytest.fixture
def now() -> datetime:
    """The time the rows are dated against."""
    return utcnow()


@pytest.fixture
def rows(database_url: str, now: datetime) -> dict[str, int]:
    """QoS samples, three leases (one ended), utilisation, events, orders, runs, polls."""
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    with session_scope(database_url) as session:
        session.add_all(
            [
                QosSample(isp_id="isp-a", router="rc1", at=ago(30), latency_ms=10.0, loss_pct=0.0),
                QosSample(isp_id="isp-a", router="rc2", at=ago(60), latency_ms=30.0, loss_pct=4.0),
                QosSample(isp_id="isp-a", router="rc1", at=ago(90), throughput_mbps=95.5),
                QosSample(isp_id="isp-b", router="rc1", at=ago(3600), latency_ms=7.0),
            ]
        )
        leases = [
            Lease(isp_id="isp-a", router="rc1", uplink="isp-a", committed_mbps=100, price_minor=1),
            Lease(isp_id="isp-b", router="rc2", uplink="isp-b", committed_mbps=50, price_minor=1),
            Lease(
                isp_id="isp-b",
                router="rc1",
                uplink="isp-b",
                committed_mbps=10,
                price_minor=1,
                status="ended",
            ),
        ]
        session.add_all(leases)
        session.flush()
        session.add_all(
            [
                UtilisationSample(
                    lease_id=leases[0].id, at=ago(20), rate_mbps=40, utilisation_pct=40
                ),
                UtilisationSample(
                    lease_id=leases[0].id, at=ago(10), rate_mbps=45, utilisation_pct=45
                ),
                UtilisationSample(
                    lease_id=leases[0].id, at=ago(70), rate_mbps=99, utilisation_pct=99
                ),
                UtilisationSample(
                    lease_id=leases[2].id, at=ago(10), rate_mbps=1, utilisation_pct=10
                ),
            ]
        )
        for kind, closed in (("over", None), ("over", ago(5)), ("under", ago(5))):
            session.add(
                UtilisationEvent(
                    lease_id=leases[0].id,
                    isp_id="isp-a",
                    kind=kind,
                    opened_at=ago(100),
                    closed_at=closed,
                    extreme_pct=1.0,
                )
            )
        line = session.scalars(select(Line).order_by(Line.id)).first()
        assert line is not None
        for status in ("DONE_SUCCESS", "DONE_SUCCESS", "DONE_FAILED", "RECEIVED"):
            session.add(
                Order(
                    line_id=line.id,
                    isp_id="isp-b",
                    router=line.router,
                    requester="test",
                    status=status,
                )
            )
        for kind, status in (
            ("selection", "SUCCESS"),
            ("selection", "SUCCESS"),
            ("reconcile", "FAILED"),
        ):
            session.add(Run(router="rc1", kind=kind, trigger="t", requester="test", status=status))
        for job, seconds, ok in (
            ("counters", 0.25, True),
            ("counters", 0.5, False),
            ("counters", 0.25, True),
            ("probes", 2.0, True),
        ):
            session.add(PollLog(job=job, router="rc1", at=now, seconds=seconds, ok=ok))
        return {"active": leases[0].id, "idle": leases[1].id, "ended": leases[2].id}


def test_isp_qos_gauges(client: FlaskClient, rows: dict[str, int]) -> None:
    samples = scrape(client)
    assert value(samples, "vpop_isp_latency_ms", isp="isp-a") == 20.0
    assert value(samples, "vpop_isp_loss_pct", isp="isp-a") == 2.0
    assert value(samples, "vpop_isp_throughput_mbps", isp="isp-a") == 95.5
    assert value(samples, "vpop_isp_jitter_ms", isp="isp-a") is None  # never measured
    assert value(samples, "vpop_isp_latency_ms", isp="isp-b") is None  # an hour old: stale
    assert value(samples, "vpop_isp_qos_age_seconds", isp="isp-a") == pytest.approx(30, abs=5)
    assert value(samples, "vpop_isp_qos_age_seconds", isp="isp-b") == pytest.approx(3600, abs=5)
    assert value(samples, "vpop_isp_qos_age_seconds", isp="isp-c") is None


def test_lease_gauges(client: FlaskClient, rows: dict[str, int]) -> None:
    samples = scrape(client)
    active = {"lease": str(rows["active"]), "isp": "isp-a", "router": "rc1", "uplink": "isp-a"}
    idle = {"lease": str(rows["idle"]), "isp": "isp-b", "router": "rc2", "uplink": "isp-b"}
    assert value(samples, "vpop_lease_utilisation_pct", **active) == 45.0  # the newest sample
    assert value(samples, "vpop_lease_committed_mbps", **active) == 100.0
    assert value(samples, "vpop_lease_committed_mbps", **idle) == 50.0
    assert value(samples, "vpop_lease_utilisation_pct", **idle) is None  # no sample yet
    assert not any(
        dict(labels).get("lease") == str(rows["ended"])
        for name, labels in samples
        if name.startswith("vpop_lease_")
    )
    assert value(samples, "vpop_events_open", kind="over") == 1.0
    assert value(samples, "vpop_events_open", kind="under") == 0.0


def test_counters_and_poll_summary(client: FlaskClient, rows: dict[str, int]) -> None:
    samples = scrape(client)
    assert value(samples, "vpop_orders_total", status="DONE_SUCCESS") == 2.0
    assert value(samples, "vpop_orders_total", status="DONE_FAILED") == 1.0
    assert value(samples, "vpop_orders_total", status="RECEIVED") == 1.0
    assert value(samples, "vpop_runs_total", kind="selection", status="SUCCESS") == 2.0
    assert value(samples, "vpop_runs_total", kind="reconcile", status="FAILED") == 1.0
    assert value(samples, "vpop_poll_failures_total", job="counters") == 1.0
    assert value(samples, "vpop_poll_failures_total", job="probes") == 0.0
    assert value(samples, "vpop_poll_seconds_count", job="counters") == 3.0
    assert value(samples, "vpop_poll_seconds_sum", job="counters") == 1.0
    assert value(samples, "vpop_poll_seconds_count", job="probes") == 1.0
    assert value(samples, "vpop_poll_seconds_sum", job="probes") == 2.0


def test_a_scrape_reads_the_database_now(
    client: FlaskClient, database_url: str, rows: dict[str, int], now: datetime
) -> None:
    before = scrape(client)
    assert value(before, "vpop_events_open", kind="under") == 0.0
    with session_scope(database_url) as session:
        session.add(
            UtilisationEvent(
                lease_id=rows["idle"], isp_id="isp-b", kind="under", opened_at=now, extreme_pct=1
            )
        )
    assert value(scrape(client), "vpop_events_open", kind="under") == 1.0


def test_an_empty_database_still_scrapes(client: FlaskClient) -> None:
    samples = scrape(client)
    assert value(samples, "vpop_events_open", kind="over") == 0.0
    assert not any(name.startswith("vpop_isp_") for name in names(samples))


@pytest.mark.parametrize(
    ("role", "status"),
    [(None, 401), ("portal", 403), ("isp-a", 403), ("isp-b", 403), ("noc", 200), ("admin", 200)],
    ids=["none", "portal", "isp-a", "isp-b", "noc", "admin"],
)
def test_metrics_are_for_operators_only(
    app: Flask, tokens: dict[str, str], rows: dict[str, int], role: str | None, status: int
) -> None:
    headers = bearer(tokens[role]) if role else {}
    response = app.test_client().get("/metrics", headers=headers)
    if status == 200:
        assert response.status_code == 200
        assert "vpop_lease_committed_mbps" in response.get_data(as_text=True)
    else:
        body = assert_problem(response, status)
        assert "lease" not in response.get_data(as_text=True).replace(body["detail"], "")


def test_metrics_speak_openmetrics(client: FlaskClient, rows: dict[str, int]) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.mimetype == "application/openmetrics-text"
    text = response.get_data(as_text=True)
    assert text.rstrip().endswith("# EOF")
    assert 'vpop_orders_total{status="DONE_SUCCESS"} 2.0' in text


def test_each_app_has_its_own_registry(
    client: FlaskClient, rows: dict[str, int], tmp_path: Path
) -> None:
    other_url = f"sqlite:///{tmp_path}/other.sqlite"
    upgrade(other_url)
    with session_scope(other_url) as session:
        session.add(Isp(id="isp-x", name="Other"))
        token = create_token(session, "admin", name="other admin")
    try:
        other = create_app({"TESTING": True, "DATABASE_URL": other_url}).test_client()
        other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        mine, theirs = scrape(client), scrape(other)
        assert value(mine, "vpop_orders_total", status="DONE_SUCCESS") == 2.0
        assert not any(name.startswith("vpop_orders") for name in names(theirs))
        # nothing lands in prometheus_client's global registry
        assert b"vpop_" not in generate_latest(REGISTRY)
    finally:
        dispose_engines()
