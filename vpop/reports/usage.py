"""The usage report: traffic per subscriber, per ISP or per lease over any window, with the
time in service and how much of it polls measured (coverage), totals and a time series.

A window is read from whole UTC days (``day`` rollups), the whole hours around them (``hour``
rollups) and raw counter samples for the partial hours at its edges
(:mod:`vpop.reports.windows`), so a month's report reads a few rows per subject and stays
the same after raw samples are pruned. Rows add up: a subscriber row is one (subscriber, ISP)
pair, an ISP row is the sum of its subscriber rows (same buckets, same edges) and the totals
are the sum of the rows. The database does the adding (one result row per report row, one
per series bucket): an ISP row's traffic and the series come from the ISP rollups, which
the writer adds the same integers to as its subscribers' rollups.

Coverage: ``service_seconds`` is the time in service inside the window (the sessions'
overlap with it; for a lease, its terms' validity within its life), ``covered_seconds`` the
seconds regular polls measured, and ``coverage_pct`` the share of the first the second
covers (None without service). Missing polls, counter resets and pruned edges show as
coverage under 100 %.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from vpop.accounting.service import bucket_of
from vpop.catalogue.service import Isp
from vpop.core.db import session_scope
from vpop.core.errors import BadInput
from vpop.core.time import as_utc, check_period, iso, utcnow
from vpop.leasing.service import Lease, LeaseVersion
from vpop.reports.usage_read import (
    NO_SUMS,
    Sums,
    Usage,
    plus,
    raw_lines,
    raw_uplink,
    rollup_buckets,
    rollup_pairs,
    rollup_series,
    rollup_usage,
    service_by_pair,
)
from vpop.reports.usage_render import render_usage
from vpop.reports.windows import overlap, plan_window, series_buckets

USAGE_BY = ("subscriber", "isp", "lease")

_TRAFFIC = ("bytes_in", "bytes_out", "packets_in", "packets_out")
_SERVICE = ("service_seconds", "covered_seconds", "coverage_pct")

USAGE_COLUMNS: dict[str, tuple[str, ...]] = {
    "subscriber": ("subscriber", "isp", "isp_name", "sessions", *_TRAFFIC, *_SERVICE),
    "isp": ("isp", "isp_name", "subscribers", "sessions", *_TRAFFIC, *_SERVICE),
    "lease": (
        "lease",
        "version",
        "isp",
        "router",
        "uplink",
        "committed_mbps",
        "price_minor",
        "currency",
        "valid_from",
        "valid_to",
        *_TRAFFIC,
        *_SERVICE,
    ),
}

#: The columns ``totals`` adds up, per ``by`` (plus ``coverage_pct`` of the sums).
TOTAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "subscriber": ("sessions", *_TRAFFIC, "service_seconds", "covered_seconds"),
    "isp": ("subscribers", "sessions", *_TRAFFIC, "service_seconds", "covered_seconds"),
    "lease": (*_TRAFFIC, "service_seconds", "covered_seconds"),
}

#: A window longer than this has one series point per day, else one per hour.
SERIES_HOURLY_UP_TO = timedelta(days=7)

BY_CODE = "VPOP-400-REPORT-BY"

__all__ = ["TOTAL_COLUMNS", "USAGE_BY", "USAGE_COLUMNS", "render_usage", "usage_report"]


def usage_report(
    url: str | None,
    start: datetime,
    end: datetime,
    *,
    by: str,
    isp: str | None = None,
    subscriber: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Usage over ``[start, end)`` by subscriber, ISP or lease.

    Args:
        url: The database URL (default: ``VPOP_DATABASE_URL``).
        start: The window's start (inclusive).
        end: The window's end (exclusive).
        by: ``subscriber``, ``isp`` or ``lease``.
        isp: Only this ISP's subscribers, sessions and leases (an ISP token's view).
        subscriber: Only this subscriber (``by`` subscriber or isp).
        now: The current time, where open sessions and leases stop (default: now).

    Returns:
        ``by``, ``from``, ``to``, ``isp``, ``subscriber``, ``columns``, ``rows`` (keys
        :data:`USAGE_COLUMNS`), ``totals`` (:data:`TOTAL_COLUMNS` and ``coverage_pct``) and
        ``series`` (``bucket``, ``bytes_in``, ``bytes_out`` per hour, or per day for a
        window longer than 7 days).

    Raises:
        BadInput: ``VPOP-400-REPORT-BY`` for an unknown ``by`` or a subscriber filter on a
            lease report; ``VPOP-400-TIME`` for an empty or inverted window.
    """
    if by not in USAGE_BY:
        raise BadInput(f"by: {by!r} is not one of: {', '.join(USAGE_BY)}", code=BY_CODE)
    if by == "lease" and subscriber is not None:
        raise BadInput(
            "subscriber: a lease report has no subscribers; use by=subscriber", code=BY_CODE
        )
    start, end = check_period(start, end)
    now = as_utc(now) if now is not None else utcnow()
    grain = "day" if end - start > SERIES_HOURLY_UP_TO else "hour"
    columns = USAGE_COLUMNS[by]
    with session_scope(url) as session:
        names: dict[str, str] = {i: n for i, n in session.execute(select(Isp.id, Isp.name))}
        window = _Window(session, start, end, now, grain, isp, subscriber)
        if by == "lease":
            rows, series = _by_lease(session, start, end, now, isp=isp, grain=grain)
            rows = [{name: row.get(name) for name in columns} for row in rows]
        elif by == "isp" and subscriber is None:
            rows, series = _by_isp(window, names)
        else:
            rows, series = _by_subscriber(window, names)
            if by == "isp":
                rows = _isp_rows(rows)
    return {
        "by": by,
        "from": iso(start),
        "to": iso(end),
        "isp": isp,
        "subscriber": subscriber,
        "columns": list(columns),
        "rows": rows,
        "totals": _totals(rows, TOTAL_COLUMNS[by]),
        "series": [
            {"bucket": iso(at), "bytes_in": point[0], "bytes_out": point[1]}
            for at, point in sorted(series.items())
        ],
    }


def coverage_pct(covered: float, service: float) -> float | None:
    """``round(100 * min(covered, service) / service, 1)``; None without service."""
    if service <= 0:
        return None
    return round(100 * min(covered, service) / service, 1)


def _service_row(sums: Sums, service: float) -> dict[str, Any]:
    service = round(service, 1)
    covered = round(sums[4], 1)
    return {
        "bytes_in": sums[0],
        "bytes_out": sums[1],
        "packets_in": sums[2],
        "packets_out": sums[3],
        "service_seconds": service,
        "covered_seconds": covered,
        "coverage_pct": coverage_pct(covered, service),
    }


#: A series: ``[bytes_in, bytes_out]`` per bucket start.
Series = dict[datetime, list[int]]


def _series(start: datetime, end: datetime, grain: str) -> Series:
    return {at: [0, 0] for at in series_buckets(start, end, grain)}


class _Window:
    """One subscriber or ISP report's window and scope, and what both read of it."""

    def __init__(
        self,
        session: Session,
        start: datetime,
        end: datetime,
        now: datetime,
        grain: str,
        isp: str | None,
        subscriber: str | None,
    ) -> None:
        self.session, self.start, self.end, self.now = session, start, end, now
        self.grain, self.isp, self.subscriber = grain, isp, subscriber
        self.plan = plan_window(start, end)
        self.subjects = None if subscriber is None else [subscriber]

    def edges(self) -> list[tuple[str, str, datetime, Usage]]:
        """The raw samples of the window's partial hours, per (ISP, subscriber) part."""
        return raw_lines(self.session, self.plan.raw, isp=self.isp, subscriber=self.subscriber)

    def series(self, edges: list[tuple[str, str, datetime, Usage]]) -> Series:
        """The series of the traffic in scope, summed per bucket by the database: from the
        ISP rollups (the same integers as their subscribers') unless one subscriber is
        asked for, plus the edges."""
        series = _series(self.start, self.end, self.grain)
        fine = plan_window(self.start, self.end, days=self.grain == "day")
        level = "isp" if self.subscriber is None else "subscriber"
        for bucket, b_in, b_out in rollup_series(
            self.session, level, fine, isp=self.isp, subjects=self.subjects
        ):
            point = series[bucket_of(bucket, self.grain)]
            point[0] += b_in
            point[1] += b_out
        for _, _, at, part in edges:
            point = series[bucket_of(at, self.grain)]
            point[0] += part.bytes_in
            point[1] += part.bytes_out
        return series

    def service(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], float]]:
        """Sessions and seconds in service per (ISP, subscriber) pair."""
        return service_by_pair(
            self.session,
            self.start,
            self.end,
            min(self.end, self.now),
            isp=self.isp,
            subscriber=self.subscriber,
        )


def _by_subscriber(window: _Window, names: dict[str, str]) -> tuple[list[dict[str, Any]], Series]:
    """One row per (subscriber, ISP) pair, and the window's series of their traffic."""
    usage = rollup_usage(
        window.session, "subscriber", window.plan, isp=window.isp, subjects=window.subjects
    )
    edges = window.edges()
    for isp_id, subscriber_id, _, part in edges:
        key = (isp_id, subscriber_id)
        usage[key] = plus(usage.get(key, NO_SUMS), part)
    sessions, service = window.service()
    rows = []
    for key in sorted(usage.keys() | sessions.keys(), key=itemgetter(1, 0)):
        isp_id, subscriber_id = key
        b_in, b_out, p_in, p_out, covered = usage.get(key, NO_SUMS)
        seconds = round(service.get(key, 0.0), 1)
        covered = round(covered, 1)
        rows.append(
            {
                "subscriber": subscriber_id,
                "isp": isp_id,
                "isp_name": names.get(isp_id, ""),
                "sessions": sessions.get(key, 0),
                "bytes_in": b_in,
                "bytes_out": b_out,
                "packets_in": p_in,
                "packets_out": p_out,
                "service_seconds": seconds,
                "covered_seconds": covered,
                "coverage_pct": coverage_pct(covered, seconds),
            }
        )
    return rows, window.series(edges)


def _by_isp(window: _Window, names: dict[str, str]) -> tuple[list[dict[str, Any]], Series]:
    """One row per ISP: its traffic from the ISP rollups (the sums of its subscribers',
    written with them), its subscribers, sessions and time in service from the pairs."""
    traffic = {
        isp_id: sums
        for (isp_id, _), sums in rollup_usage(
            window.session, "isp", window.plan, isp=window.isp
        ).items()
    }
    edges = window.edges()
    pairs = rollup_pairs(window.session, window.plan, isp=window.isp)
    for isp_id, subscriber_id, _, part in edges:
        traffic[isp_id] = plus(traffic.get(isp_id, NO_SUMS), part)
        pairs.add((isp_id, subscriber_id))
    sessions, service = window.service()
    members: dict[str, list[int | float]] = {}
    for key in pairs | sessions.keys():
        into = members.setdefault(key[0], [0, 0, 0.0])
        into[0] += 1
        into[1] += sessions.get(key, 0)
        into[2] += round(service.get(key, 0.0), 1)
    rows = []
    for isp_id in sorted(members.keys() | traffic.keys()):
        count, opened, seconds = members.get(isp_id, [0, 0, 0.0])
        rows.append(
            {
                "isp": isp_id,
                "isp_name": names.get(isp_id, ""),
                "subscribers": count,
                "sessions": opened,
                **_service_row(traffic.get(isp_id, NO_SUMS), seconds),
            }
        )
    return rows, window.series(edges)


def _isp_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ISP rows as the sums of their (subscriber, ISP) rows (one subscriber's report)."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pair in pairs:
        grouped[pair["isp"]].append(pair)
    rows = []
    for isp_id in sorted(grouped):
        members = grouped[isp_id]
        row: dict[str, Any] = {
            "isp": isp_id,
            "isp_name": members[0]["isp_name"],
            "subscribers": len(members),
        }
        row.update(_totals(members, ("sessions", *_TRAFFIC, "service_seconds", "covered_seconds")))
        rows.append({name: row.get(name) for name in USAGE_COLUMNS["isp"]})
    return rows


def _totals(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> dict[str, Any]:
    """The sums of ``columns`` over ``rows`` (seconds to 0.1 s) and their coverage."""
    sums: dict[str, Any] = {}
    for name in columns:
        value = sum(map(itemgetter(name), rows))  # never None: counts, traffic and seconds
        sums[name] = round(value, 1) if name.endswith("_seconds") else value
    sums["coverage_pct"] = coverage_pct(sums["covered_seconds"], sums["service_seconds"])
    return sums


def _sums(usage: Usage | None) -> Sums:
    if usage is None:
        return NO_SUMS
    return (usage.bytes_in, usage.bytes_out, usage.packets_in, usage.packets_out, usage.covered)


def _lease_terms(
    session: Session, leases: list[Lease], start: datetime, end: datetime
) -> dict[int, list[LeaseVersion]]:
    """The versions of each lease in force in the window; version 1 from the lease row for
    a lease that has none stored."""
    ids = [lease.id for lease in leases]
    terms: dict[int, list[LeaseVersion]] = defaultdict(list)
    for version in session.scalars(
        select(LeaseVersion)
        .where(
            LeaseVersion.lease_id.in_(ids),
            LeaseVersion.valid_from < end,
            or_(LeaseVersion.valid_to.is_(None), LeaseVersion.valid_to > start),
        )
        .order_by(LeaseVersion.lease_id, LeaseVersion.version)
    ):
        terms[version.lease_id].append(version)
    versioned = set(
        session.scalars(
            select(LeaseVersion.lease_id).where(LeaseVersion.lease_id.in_(ids)).distinct()
        )
    )
    for lease in leases:
        if lease.id not in versioned:
            terms[lease.id].append(
                LeaseVersion(
                    lease_id=lease.id,
                    version=1,
                    valid_from=lease.starts_at,
                    valid_to=None,
                    committed_mbps=lease.committed_mbps,
                    peak_pct=lease.peak_pct,
                    price_minor=lease.price_minor,
                    currency=lease.currency,
                )
            )
    return terms


def _by_lease(
    session: Session,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    isp: str | None,
    grain: str,
) -> tuple[list[dict[str, Any]], Series]:
    """One row per (lease, version) in force in the window; the series of their traffic.

    A rollup bucket counts for the version in force at the bucket's start, a raw sample for
    the one in force at its time (the first version in the window when that is earlier).
    """
    life_end = func.coalesce(Lease.ended_at, Lease.ends_at)
    statement = select(Lease).where(
        Lease.starts_at < end, or_(life_end.is_(None), life_end > start)
    )
    if isp is not None:
        statement = statement.where(Lease.isp_id == isp)
    leases = list(session.scalars(statement.order_by(Lease.id)))
    terms = _lease_terms(session, leases, start, end)
    plan = plan_window(start, end)
    fine = plan_window(start, end, days=grain == "day")
    subjects = [str(lease.id) for lease in leases]
    series = _series(start, end, grain)
    usage: dict[tuple[int, int], Usage] = defaultdict(Usage)

    def version_at(lease_id: int, at: datetime) -> int:
        versions = terms[lease_id]
        starts = [as_utc(version.valid_from) for version in versions]
        return versions[max(0, bisect_right(starts, at) - 1)].version

    by_id = {lease.id: lease for lease in leases}
    for subject, bucket, part in rollup_buckets(session, "lease", plan, subjects=subjects):
        lease_id = int(subject)
        if terms.get(lease_id):
            usage[(lease_id, version_at(lease_id, bucket))].add(part)
    for bucket, b_in, b_out in rollup_series(session, "lease", fine, subjects=subjects):
        point = series[bucket_of(bucket, grain)]
        point[0] += b_in
        point[1] += b_out
    for lease in leases:
        born = as_utc(lease.starts_at)
        died = lease.ended_at or lease.ends_at
        spans = [(max(a, born), b if died is None else min(b, as_utc(died))) for a, b in plan.raw]
        spans = [(a, b) for a, b in spans if a < b]
        for at, part in raw_uplink(session, lease.router, lease.uplink, spans):
            if terms.get(lease.id):
                usage[(lease.id, version_at(lease.id, at))].add(part)
            point = series[bucket_of(at, grain)]
            point[0] += part.bytes_in
            point[1] += part.bytes_out
    rows = []
    for lease_id, versions in sorted(terms.items()):
        lease = by_id[lease_id]
        life_stop = lease.ended_at or lease.ends_at
        for version in versions:
            valid_from = max(as_utc(version.valid_from), as_utc(lease.starts_at))
            stops = [end, now] + [as_utc(t) for t in (version.valid_to, life_stop) if t is not None]
            service = overlap(valid_from, min(stops), start, end)
            rows.append(
                {
                    "lease": lease.id,
                    "version": version.version,
                    "isp": lease.isp_id,
                    "router": lease.router,
                    "uplink": lease.uplink,
                    "committed_mbps": version.committed_mbps,
                    "price_minor": version.price_minor,
                    "currency": version.currency,
                    "valid_from": iso(version.valid_from),
                    "valid_to": iso(version.valid_to),
                    **_service_row(_sums(usage.get((lease_id, version.version))), service),
                }
            )
    return rows, series
