"""Reports over a period: QoS per ISP and router and lease utilisation (95th percentile, seconds
under and over), built from the database and rendered as CSV (formula-safe cells), JSON or a
self-contained HTML page. Used by ``vpop report`` and the NOC pages.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from vpop.catalogue.service import Isp
from vpop.core.db import session_scope
from vpop.core.errors import BadInput
from vpop.core.time import as_utc, check_period
from vpop.core.time import utcnow as _utcnow
from vpop.leasing.service import Lease, UtilisationEvent, UtilisationSample, percentile_95
from vpop.monitoring.service import QosSample

FORMATS = ("csv", "json", "html")


QOS_COLUMNS = (
    "isp",
    "isp_name",
    "router",
    "samples",
    "latency_avg_ms",
    "latency_min_ms",
    "latency_max_ms",
    "latency_p95_ms",
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
    "events_under",
    "events_over",
    "seconds_under",
    "seconds_over",
)


# a spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def qos_report(url: str | None, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """QoS per ISP and router over a period: sample count, averages, extremes, p95 latency.

    ``latency_p95_ms`` picks the 95th percentile the way :func:`vpop.utilisation.percentile_95`
    does for rates (LibreNMS). Figures a sample lacks are left out of that figure only.

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
    period = (QosSample.at >= start, QosSample.at < end)
    latency = QosSample.latency_ms
    with session_scope(url) as session:
        names = dict(session.execute(select(Isp.id, Isp.name)).all())
        stats = session.execute(
            select(
                QosSample.isp_id,
                QosSample.router,
                func.count(),
                func.avg(latency),
                func.min(latency),
                func.max(latency),
                func.avg(QosSample.jitter_ms),
                func.avg(QosSample.loss_pct),
                func.avg(QosSample.throughput_mbps),
            )
            .where(*period)
            .group_by(QosSample.isp_id, QosSample.router)
            .order_by(QosSample.isp_id, QosSample.router)
        ).all()
        latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
        for isp_id, router, value in session.execute(
            select(QosSample.isp_id, QosSample.router, latency).where(*period, latency.is_not(None))
        ):
            if value is not None:
                latencies[(isp_id, router)].append(float(value))
    rows = []
    for isp_id, router, count, lat_avg, lat_min, lat_max, jit, loss, thr in stats:
        measured = latencies.get((isp_id, router))
        rows.append(
            {
                "isp": isp_id,
                "isp_name": names.get(isp_id, ""),
                "router": router,
                "samples": int(count),
                "latency_avg_ms": _round(lat_avg),
                "latency_min_ms": _round(lat_min),
                "latency_max_ms": _round(lat_max),
                "latency_p95_ms": _round(percentile_95(measured) if measured else None),
                "jitter_avg_ms": _round(jit),
                "loss_avg_pct": _round(loss),
                "throughput_avg_mbps": _round(thr),
            }
        )
    return rows


def utilisation_report(url: str | None, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Utilisation per lease over a period: rates, 95th percentile, under/over events.

    Every lease whose life (``starts_at`` to ``ended_at``/``ends_at``) overlaps the period is
    listed, with or without samples. ``p95_mbps`` is :func:`vpop.utilisation.percentile_95`
    of the period's samples (LibreNMS's method) and ``p95_pct`` that rate over the committed
    rate. Events are those open at any time in the period; ``seconds_under``/``seconds_over``
    add up their time inside the period (an event still open counts until now, and never
    past its lease's end: an ended lease's events stop when it ended).

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
    life_end = func.coalesce(Lease.ended_at, Lease.ends_at)
    with session_scope(url) as session:
        names = dict(session.execute(select(Isp.id, Isp.name)).all())
        leases = list(
            session.scalars(
                select(Lease)
                .where(Lease.starts_at < end, or_(life_end.is_(None), life_end >= start))
                .order_by(Lease.id)
            )
        )
        ids = [lease.id for lease in leases]
        rates: dict[int, list[float]] = defaultdict(list)
        for lease_id, rate in session.execute(
            select(UtilisationSample.lease_id, UtilisationSample.rate_mbps).where(
                UtilisationSample.lease_id.in_(ids),
                UtilisationSample.at >= start,
                UtilisationSample.at < end,
            )
        ):
            rates[lease_id].append(float(rate))
        events = list(
            session.scalars(
                select(UtilisationEvent).where(
                    UtilisationEvent.lease_id.in_(ids),
                    UtilisationEvent.opened_at < end,
                    or_(UtilisationEvent.closed_at.is_(None), UtilisationEvent.closed_at > start),
                )
            )
        )
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
    rows = []
    for lease in leases:
        measured = rates.get(lease.id, [])
        p95 = percentile_95(measured) if measured else None
        rows.append(
            {
                "lease": lease.id,
                "isp": lease.isp_id,
                "isp_name": names.get(lease.isp_id, ""),
                "router": lease.router,
                "uplink": lease.uplink,
                "committed_mbps": lease.committed_mbps,
                "samples": len(measured),
                "rate_avg_mbps": _round(sum(measured) / len(measured) if measured else None),
                "rate_max_mbps": _round(max(measured) if measured else None),
                "p95_mbps": _round(p95),
                "p95_pct": _round(None if p95 is None else p95 / lease.committed_mbps * 100),
                "events_under": counts[(lease.id, "under")],
                "events_over": counts[(lease.id, "over")],
                "seconds_under": round(seconds[(lease.id, "under")], 1),
                "seconds_over": round(seconds[(lease.id, "over")], 1),
            }
        )
    return rows


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


def render(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    title: str = "vpop report",
) -> str:
    """A report as ``csv``, ``json`` or a self-contained ``html`` page.

    Args:
        rows: The report's rows (as :func:`qos_report` or :func:`utilisation_report` give).
        fmt: ``csv``, ``json`` or ``html``.
        columns: The columns, in order (default: the first row's keys); with no rows, the
            CSV header and the HTML table head still show them.
        title: The HTML page's title and heading.

    Returns:
        The text. CSV has a header line; a text cell that a spreadsheet would run as a
        formula gets a leading ``'``. HTML escapes every value and loads nothing external.

    Raises:
        BadInput: unknown format.
    """
    names = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([_csv_cell(row.get(name)) for name in names])
        return buffer.getvalue()
    if fmt == "json":
        picked = [{name: row.get(name) for name in names} for row in rows]
        return json.dumps(picked, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return _html_page(rows, names, title)
    raise BadInput(f"format: {fmt!r} is not one of: {', '.join(FORMATS)}")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _html_page(rows: Sequence[Mapping[str, Any]], names: Sequence[str], title: str) -> str:
    esc = html.escape
    head = "".join(f'<th scope="col">{esc(name)}</th>' for name in names)
    body = []
    for row in rows:
        cells = []
        for name in names:
            value = row.get(name)
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            shown = "" if value is None else str(value)
            cells.append(
                f'<td class="num">{esc(shown)}</td>' if numeric else f"<td>{esc(shown)}</td>"
            )
        body.append(f"<tr>{''.join(cells)}</tr>")
    empty = "" if rows else "<p>No data in this period.</p>\n"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n"
        "<style>\n"
        "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}\n"
        "table{border-collapse:collapse;font-size:.9rem}\n"
        "th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}\n"
        "th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
        "</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{empty}"
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "".join(line + "\n" for line in body)
        + "</tbody>\n</table>\n</body>\n</html>\n"
    )
