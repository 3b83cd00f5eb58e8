"""The QoS report (per ISP and router) and the utilisation report (per lease), over any window.

Both read whole 5-minute buckets from the rollups the pollers write in the same transaction
as their samples (``qos:<isp>:<router>:<figure>``; ``util:lease:<id>`` in percent and
``util_mbps:lease:<id>`` in Mbit/s) and raw samples only for the partial buckets at the
window's edges, so sample counts, averages, minima and maxima are the same whether raw
samples were kept or pruned (:mod:`vpop.reports.rollup_read`). The 95th percentile comes from
raw samples while they cover the whole window, else from the 5-minute averages (the usual
burstable-billing method); ``p95_from`` says which.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from vpop.catalogue.service import Isp
from vpop.core.db import session_scope
from vpop.core.time import as_utc, check_period
from vpop.core.time import utcnow as _utcnow
from vpop.leasing.service import (
    Lease,
    LeaseVersion,
    UtilisationEvent,
    UtilisationSample,
    percentile_95,
)
from vpop.monitoring.service import QOS_FIGURES, QosSample, Rollup
from vpop.reports.rollup_read import (
    Stat,
    bucket_averages,
    bucket_rows,
    plan,
    raw_complete_since,
    series_stats,
)
from vpop.reports.windows import Plan, in_spans

QOS_COLUMNS = (
    "isp",
    "isp_name",
    "router",
    "samples",
    "latency_avg_ms",
    "latency_min_ms",
    "latency_max_ms",
    "latency_p95_ms",
    "p95_from",
    "jitter_avg_ms",
    "loss_avg_pct",
    "throughput_avg_mbps",
)


UTILISATION_COLUMNS = (
    "lease",
    "isp",
    "isp_name",
    "router",
    "uplink",
    "committed_mbps",
    "samples",
    "rate_avg_mbps",
    "rate_max_mbps",
    "p95_mbps",
    "p95_pct",
    "p95_from",
    "events_under",
    "events_over",
    "seconds_under",
    "seconds_over",
)


def qos_report(url: str | None, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """QoS per ISP and router over a period: sample count, averages, extremes, p95 latency.

    ``samples`` is the number of probes (the largest count among the figures: a probe lacking
    a figure is left out of that figure only). ``latency_p95_ms`` picks the 95th percentile
    the way :func:`vpop.leasing.service.percentile_95` does for rates (LibreNMS), of the raw
    latencies when raw samples cover the whole period, else of the 5-minute averages
    (``p95_from``: ``samples`` or ``5min``).

    Args:
        url: The database URL (default: ``VPOP_DATABASE_URL``).
        start: The period's start (inclusive).
        end: The period's end (exclusive).

    Returns:
        One row per ISP and router with samples, keys :data:`QOS_COLUMNS`, sorted.

    Raises:
        BadInput: the period is empty.
    """
    start, end = check_period(start, end)
    window = plan(start, end)
    qos = Rollup.series.like("qos:%")
    stats: dict[tuple[str, str], dict[str, Stat]] = defaultdict(lambda: defaultdict(Stat))
    with session_scope(url) as session:
        names = {key: name for key, name in session.execute(select(Isp.id, Isp.name))}
        for series, stat in series_stats(session, qos, window).items():
            parts = series.split(":")
            if len(parts) == 4 and parts[3] in QOS_FIGURES:
                stats[(parts[1], parts[2])][parts[3]].add(
                    stat.count, stat.total, stat.minimum or 0.0, stat.maximum or 0.0
                )
        edges = list(session.scalars(select(QosSample).where(in_spans(window.raw, QosSample.at))))
        for sample in edges:
            for figure in QOS_FIGURES:
                value = getattr(sample, figure)
                if value is not None:
                    stats[(sample.isp_id, sample.router)][figure].value(float(value))
        raw = start >= raw_complete_since(session, QosSample.at, qos)
        latencies = _qos_latencies(session, start, end, window, raw, edges)
    rows = []
    for key in sorted(stats):
        figures = stats[key]
        count = max(stat.count for stat in figures.values())
        if not count:
            continue
        latency = figures["latency_ms"]
        measured = latencies.get(key)
        rows.append(
            {
                "isp": key[0],
                "isp_name": names.get(key[0], ""),
                "router": key[1],
                "samples": count,
                "latency_avg_ms": _round(latency.average),
                "latency_min_ms": _round(latency.minimum),
                "latency_max_ms": _round(latency.maximum),
                "latency_p95_ms": _round(percentile_95(measured) if measured else None),
                "p95_from": "samples" if raw else "5min",
                "jitter_avg_ms": _round(figures["jitter_ms"].average),
                "loss_avg_pct": _round(figures["loss_pct"].average),
                "throughput_avg_mbps": _round(figures["throughput_mbps"].average),
            }
        )
    return rows


def _qos_latencies(
    session: Session,
    start: datetime,
    end: datetime,
    window: Plan,
    raw: bool,
    edges: list[QosSample],
) -> dict[tuple[str, str], list[float]]:
    """The values the p95 latency picks from: raw latencies, or 5-minute averages."""
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    if raw:
        latency = QosSample.latency_ms
        for isp_id, router, value in session.execute(
            select(QosSample.isp_id, QosSample.router, latency).where(
                QosSample.at >= start, QosSample.at < end, latency.is_not(None)
            )
        ):
            if value is not None:
                out[(isp_id, router)].append(float(value))
        return out
    buckets = []
    for series, at, stat in bucket_rows(session, Rollup.series.like("qos:%:latency_ms"), window):
        parts = series.split(":")
        if len(parts) == 4:
            buckets.append(((parts[1], parts[2]), at, stat))
    values = [
        ((s.isp_id, s.router), as_utc(s.at), float(s.latency_ms))
        for s in edges
        if s.latency_ms is not None
    ]
    return bucket_averages(buckets, values)


def utilisation_report(url: str | None, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Utilisation per lease over a period: rates, 95th percentile, under/over events.

    Every lease whose life (``starts_at`` to ``ended_at``/``ends_at``) overlaps the period is
    listed, with or without samples. Rates come from the ``util_mbps`` rollups, or where a
    bucket has none (written before they existed) from the ``util`` percentage times the
    committed rate in force then. ``p95_mbps`` is :func:`vpop.leasing.service.percentile_95`
    (LibreNMS's method) of the raw rates when raw samples cover the whole period, else of the
    5-minute averages (``p95_from``), and ``p95_pct`` that rate over the committed rate.
    Events are those open at any time in the period; ``seconds_under``/``seconds_over`` add
    up their time inside the period (an event still open counts until now, and never past
    its lease's end: an ended lease's events stop when it ended).

    Args:
        url: The database URL (default: ``VPOP_DATABASE_URL``).
        start: The period's start (inclusive).
        end: The period's end (exclusive).

    Returns:
        One row per lease, keys :data:`UTILISATION_COLUMNS`, by lease id.

    Raises:
        BadInput: the period is empty.
    """
    start, end = check_period(start, end)
    now = _utcnow()
    window = plan(start, end)
    life_end = func.coalesce(Lease.ended_at, Lease.ends_at)
    with session_scope(url) as session:
        names = {key: name for key, name in session.execute(select(Isp.id, Isp.name))}
        leases = list(
            session.scalars(
                select(Lease)
                .where(Lease.starts_at < end, or_(life_end.is_(None), life_end >= start))
                .order_by(Lease.id)
            )
        )
        ids = [lease.id for lease in leases]
        committed = _committed_rates(session, leases)
        series = [f"{kind}:lease:{i}" for i in ids for kind in ("util", "util_mbps")]
        rates, buckets = _rate_buckets(session, window, series, committed)
        edges = [
            (lease_id, as_utc(at), float(mbps))
            for lease_id, at, mbps in session.execute(
                select(
                    UtilisationSample.lease_id, UtilisationSample.at, UtilisationSample.rate_mbps
                ).where(
                    UtilisationSample.lease_id.in_(ids), in_spans(window.raw, UtilisationSample.at)
                )
            )
        ]
        for lease_id, _, value in edges:
            rates[lease_id].value(value)
        raw = start >= raw_complete_since(
            session, UtilisationSample.at, Rollup.series.like("util:lease:%")
        )
        picked: dict[Any, list[float]] = defaultdict(list)
        if raw:
            for lease_id, value in session.execute(
                select(UtilisationSample.lease_id, UtilisationSample.rate_mbps).where(
                    UtilisationSample.lease_id.in_(ids),
                    UtilisationSample.at >= start,
                    UtilisationSample.at < end,
                )
            ):
                picked[lease_id].append(float(value))
        else:
            picked.update(bucket_averages(buckets, edges))
        events = list(
            session.scalars(
                select(UtilisationEvent).where(
                    UtilisationEvent.lease_id.in_(ids),
                    UtilisationEvent.opened_at < end,
                    or_(UtilisationEvent.closed_at.is_(None), UtilisationEvent.closed_at > start),
                )
            )
        )
    counts, seconds = _event_time(leases, events, start, end, now)
    rows = []
    for lease in leases:
        rate = rates.get(lease.id, Stat())
        measured = picked.get(lease.id)
        p95 = percentile_95(measured) if measured else None
        rows.append(
            {
                "lease": lease.id,
                "isp": lease.isp_id,
                "isp_name": names.get(lease.isp_id, ""),
                "router": lease.router,
                "uplink": lease.uplink,
                "committed_mbps": lease.committed_mbps,
                "samples": rate.count,
                "rate_avg_mbps": _round(rate.average),
                "rate_max_mbps": _round(rate.maximum),
                "p95_mbps": _round(p95),
                "p95_pct": _round(None if p95 is None else p95 / lease.committed_mbps * 100),
                "p95_from": "samples" if raw else "5min",
                "events_under": counts[(lease.id, "under")],
                "events_over": counts[(lease.id, "over")],
                "seconds_under": round(seconds[(lease.id, "under")], 1),
                "seconds_over": round(seconds[(lease.id, "over")], 1),
            }
        )
    return rows


def _committed_rates(
    session: Session, leases: list[Lease]
) -> dict[int, tuple[list[datetime], list[int], int]]:
    """Per lease: its versions' starts and committed rates, and its current rate."""
    terms: dict[int, tuple[list[datetime], list[int], int]] = {
        lease.id: ([], [], lease.committed_mbps) for lease in leases
    }
    for version in session.scalars(
        select(LeaseVersion)
        .where(LeaseVersion.lease_id.in_(list(terms)))
        .order_by(LeaseVersion.lease_id, LeaseVersion.valid_from)
    ):
        starts, rates, _ = terms[version.lease_id]
        starts.append(as_utc(version.valid_from))
        rates.append(version.committed_mbps)
    return terms


def _rate_buckets(
    session: Session,
    window: Plan,
    series: list[str],
    committed: dict[int, tuple[list[datetime], list[int], int]],
) -> tuple[dict[int, Stat], list[tuple[int, datetime, Stat]]]:
    """Rates per lease over the whole buckets (Mbit/s rollups, else percent x committed)."""
    found: dict[tuple[int, datetime], dict[str, Stat]] = defaultdict(dict)
    if series:
        for name, at, row in bucket_rows(session, Rollup.series.in_(series), window):
            kind, _, lease_text = name.split(":")
            found[(int(lease_text), at)][kind] = row
    totals: dict[int, Stat] = defaultdict(Stat)
    buckets = []
    for (lease_id, at), kinds in sorted(found.items()):
        mbps = kinds.get("util_mbps")
        if mbps is None:
            pct = kinds["util"]
            starts, rates, current = committed[lease_id]
            index = bisect_right(starts, at) - 1
            scale = (rates[index] if index >= 0 else current) / 100
            mbps = Stat()
            mbps.add(
                pct.count, pct.total * scale, (pct.minimum or 0) * scale, (pct.maximum or 0) * scale
            )
        totals[lease_id].add(mbps.count, mbps.total, mbps.minimum or 0.0, mbps.maximum or 0.0)
        buckets.append((lease_id, at, mbps))
    return totals, buckets


def _event_time(
    leases: list[Lease],
    events: list[UtilisationEvent],
    start: datetime,
    end: datetime,
    now: datetime,
) -> tuple[dict[tuple[int, str], int], dict[tuple[int, str], float]]:
    """Per (lease, kind): events open in the period and their seconds inside it."""
    counts: dict[tuple[int, str], int] = defaultdict(int)
    seconds: dict[tuple[int, str], float] = defaultdict(float)
    # an event never outlives its lease: one left open by an ended lease stops at its end
    lease_end = {lease.id: lease.ended_at or lease.ends_at for lease in leases}
    for event in events:
        stop: datetime | None = event.closed_at
        until = lease_end.get(event.lease_id)
        if until is not None and as_utc(until) <= now:
            stop = as_utc(until) if stop is None else min(as_utc(stop), as_utc(until))
            if stop <= max(as_utc(event.opened_at), as_utc(start)):
                continue
        counts[(event.lease_id, event.kind)] += 1
        seconds[(event.lease_id, event.kind)] += clipped_seconds(
            event.opened_at, stop, start, end, now=now
        )
    return counts, seconds


def clipped_seconds(
    opened: datetime,
    closed: datetime | None,
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
) -> float:
    """Seconds of ``opened .. closed`` (``closed`` None: still open, until now) in a period."""
    stop = as_utc(closed) if closed is not None else as_utc(now or _utcnow())
    span = min(stop, as_utc(end)) - max(as_utc(opened), as_utc(start))
    return max(0.0, span.total_seconds())


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)
