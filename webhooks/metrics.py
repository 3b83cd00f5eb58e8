"""``GET /metrics``: Prometheus text, read from the database at scrape time.

A custom collector (:class:`DatabaseCollector`) queries the database on every scrape, so every
process serving the app reports the same figures, whoever wrote the rows. It is registered in
a registry of its own per app, not prometheus_client's global one (which would mix in process
metrics and clash between apps in one process, as in tests).

``/metrics`` is for operators only: it lists every ISP's leases, uplinks and QoS, which no
ISP may read of another. A scrape must send ``Authorization: Bearer <token>`` with a token of
role ``admin`` or ``noc`` (``vpop token create noc --name prometheus``; in Prometheus,
``authorization: {credentials_file: ...}`` in the scrape config). Without a token the answer
is 401, with another role's 403 (problem+json both). See docs/tenancy.md.

Metrics (``isp``, ``lease``, ``router``, ``uplink``, ``kind``, ``status``, ``job`` labels):

* ``vpop_isp_latency_ms``, ``vpop_isp_jitter_ms``, ``vpop_isp_loss_pct``,
  ``vpop_isp_throughput_mbps`` (gauges): the ISP's current QoS as ``GET /api/v1/isps``
  shows it (mean over routers with a sample at most 5 minutes old; absent when none is);
* ``vpop_isp_qos_age_seconds`` (gauge): seconds since the ISP's newest QoS sample on any
  router (alert when it grows: the probes have stopped);
* ``vpop_lease_utilisation_pct``, ``vpop_lease_committed_mbps`` (gauges): leases that have
  not ended; utilisation from the newest sample;
* ``vpop_events_open`` (gauge): open under-/over-utilisation events by kind;
* ``vpop_orders_total``, ``vpop_runs_total``, ``vpop_poll_failures_total`` (counters) and
  ``vpop_poll_seconds`` (summary: ``_count``, ``_sum``): rows in the orders, runs and poll
  log tables. The poll log is pruned after ``VPOP_RETENTION_RAW_DAYS``; Prometheus reads
  the drop as a counter reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, not_, select

from vpop.core.db import session_scope
from vpop.core.time import as_utc, utcnow
from vpop.leasing.service import KINDS, Lease, UtilisationEvent, UtilisationSample
from vpop.monitoring.service import QOS_FIGURES, PollLog, QosSample, current_qos
from vpop.selection.service import Forbidden, Order, Run
from webhooks.api.common import OPERATORS
from webhooks.auth import authenticate

bp = Blueprint("metrics", __name__)
EXTENSION = "vpop_metrics_registry"
LEASE_LABELS = ("lease", "isp", "router", "uplink")
QOS_HELP = {
    "latency_ms": "Round-trip latency through the ISP, ms (mean over routers, fresh samples).",
    "jitter_ms": "Jitter through the ISP, ms (mean over routers, fresh samples).",
    "loss_pct": "Probe loss through the ISP, percent (mean over routers, fresh samples).",
    "throughput_mbps": "Measured throughput through the ISP, Mbit/s (mean over routers).",
}


class DatabaseCollector(Collector):
    """Builds every vpop metric from the database when Prometheus scrapes."""

    def __init__(self, database_url: Callable[[], str]) -> None:
        """Collect from the database that ``database_url()`` names at scrape time."""
        self._database_url = database_url

    def collect(self) -> Iterator[Metric]:
        """Query the database once per metric group and yield the families."""
        now = utcnow()
        with session_scope(self._database_url()) as session:
            qos = current_qos(session, now=now)
            newest_qos = session.execute(
                select(QosSample.isp_id, func.max(QosSample.at)).group_by(QosSample.isp_id)
            ).all()
            newest_pct = (
                select(UtilisationSample.utilisation_pct)
                .where(UtilisationSample.lease_id == Lease.id)
                .order_by(UtilisationSample.at.desc(), UtilisationSample.id.desc())
                .limit(1)
                .correlate(Lease)
                .scalar_subquery()
            )
            leases = session.execute(
                select(
                    Lease.id,
                    Lease.isp_id,
                    Lease.router,
                    Lease.uplink,
                    Lease.committed_mbps,
                    newest_pct,
                )
                .where(Lease.status != "ended")
                .order_by(Lease.id)
            ).all()
            open_events = dict(
                session.execute(
                    select(UtilisationEvent.kind, func.count())
                    .where(UtilisationEvent.closed_at.is_(None))
                    .group_by(UtilisationEvent.kind)
                ).all()
            )
            orders = session.execute(
                select(Order.status, func.count()).group_by(Order.status).order_by(Order.status)
            ).all()
            runs = session.execute(
                select(Run.kind, Run.status, func.count())
                .group_by(Run.kind, Run.status)
                .order_by(Run.kind, Run.status)
            ).all()
            polls = session.execute(
                select(
                    PollLog.job,
                    func.count(),
                    func.coalesce(func.sum(PollLog.seconds), 0.0),
                    func.coalesce(func.sum(case((not_(PollLog.ok), 1), else_=0)), 0),
                )
                .group_by(PollLog.job)
                .order_by(PollLog.job)
            ).all()

        for figure in QOS_FIGURES:
            family = GaugeMetricFamily(f"vpop_isp_{figure}", QOS_HELP[figure], labels=["isp"])
            for isp_id in sorted(qos):
                value = qos[isp_id][figure]
                if value is not None:
                    family.add_metric([isp_id], value)
            yield family
        age = GaugeMetricFamily(
            "vpop_isp_qos_age_seconds",
            "Seconds since the ISP's newest QoS sample on any router.",
            labels=["isp"],
        )
        for isp_id, at in sorted(newest_qos):
            age.add_metric([isp_id], max(0.0, (now - as_utc(at)).total_seconds()))
        yield age

        utilisation = GaugeMetricFamily(
            "vpop_lease_utilisation_pct",
            "A lease's newest utilisation: rate over the committed rate, percent.",
            labels=LEASE_LABELS,
        )
        committed = GaugeMetricFamily(
            "vpop_lease_committed_mbps",
            "A lease's committed rate, Mbit/s (leases that have not ended).",
            labels=LEASE_LABELS,
        )
        for lease_id, isp_id, router, uplink, committed_mbps, pct in leases:
            labels = [str(lease_id), isp_id, router, uplink]
            committed.add_metric(labels, committed_mbps)
            if pct is not None:
                utilisation.add_metric(labels, pct)
        yield utilisation
        yield committed

        events = GaugeMetricFamily(
            "vpop_events_open",
            "Open under- and over-utilisation events.",
            labels=["kind"],
        )
        for kind in KINDS:
            events.add_metric([kind], open_events.get(kind, 0))
        yield events

        order_counter = CounterMetricFamily(
            "vpop_orders", "Orders recorded, by current status.", labels=["status"]
        )
        for status, count in orders:
            order_counter.add_metric([status], count)
        yield order_counter
        run_counter = CounterMetricFamily(
            "vpop_runs", "Nornir runs recorded, by kind and status.", labels=["kind", "status"]
        )
        for run_kind, status, count in runs:
            run_counter.add_metric([run_kind, status], count)
        yield run_counter
        failures = CounterMetricFamily(
            "vpop_poll_failures",
            "Failed monitoring polls in the poll log, by job.",
            labels=["job"],
        )
        seconds = SummaryMetricFamily(
            "vpop_poll_seconds",
            "Time spent polling routers, by job (poll log).",
            labels=["job"],
        )
        for job, count, total, failed in polls:
            failures.add_metric([job], int(failed))
            seconds.add_metric([job], count_value=int(count), sum_value=float(total))
        yield failures
        yield seconds


@bp.record_once
def _register(state: BlueprintSetupState) -> None:
    """Give the app its own registry holding the database collector."""
    config = state.app.config
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(lambda: str(config["DATABASE_URL"])))
    state.app.extensions[EXTENSION] = registry


@bp.get("/metrics")
def metrics() -> Response:
    """Every vpop metric, in the format the scraper asks for (Prometheus text by default);
    operators' tokens only (roles admin, noc)."""
    if authenticate(allow_webhook=False).caller.role not in OPERATORS:
        raise Forbidden("/metrics is read by NOC staff and admins (token roles noc, admin)")
    registry: CollectorRegistry = current_app.extensions[EXTENSION]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), mimetype=None, content_type=content_type)
