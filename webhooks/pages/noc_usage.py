"""The NOC's usage pages: usage by subscriber, ISP or lease over a period, a subscriber's
service sessions, and a lease with the history of its terms (versions).

Periods are picked as whole UTC days, ``from`` and ``to`` both included (``to`` defaults to
today, ``from`` to the first of this month), with quick presets; the report behind the page
is the API's (:func:`vpop.reports.service.usage_report`, ``[from 00:00, to + 1 day 00:00)``),
so the page, its exports (``/noc/usage.csv``, ``.json``, ``.html``: the same period and
filters) and ``GET /api/v1/reports/usage`` give the same figures. A row whose coverage is
below 100 % is flagged: some of its time was not measured by a regular poll.

Every signed-in NOC user (``noc`` or ``admin``) reads every ISP's usage; the pages change
nothing, so they have no forms but GET filters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from flask import Response, make_response, render_template, url_for

from vpop.accounting import service as accounting
from vpop.catalogue.service import Subscriber
from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.time import TIME_CODE, as_utc, utcnow
from vpop.leasing import service as leasing
from vpop.leasing.service import Lease
from vpop.reports import service as reports
from webhooks.api.common import MAX_ID
from webhooks.api.reports import MEDIA_TYPES, USAGE_BY, usage_by, usage_response, usage_window
from webhooks.pages import svg
from webhooks.pages.noc_common import bp, database_url
from webhooks.pages.query import date_arg, day_start, isp_names, query_arg

#: The most sessions one page lists.
SESSIONS_PAGE_SIZE = 200

#: The columns of a subscriber's sessions export: the API's view plus the coverage.
SESSION_COLUMNS = (*accounting.VIEW_KEYS, "coverage_pct")

#: The quick periods of the picker, in order.
PRESETS = ("today", "last 7 days", "this month", "last month")

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


@bp.app_template_filter("bytes")
def bytes_filter(value: int | None) -> str:
    """``1.5 MB`` from a byte count (decimal units, as interface rates are quoted)."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in _UNITS:
        if abs(amount) < 1000 or unit == _UNITS[-1]:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


@bp.get("/usage")
def usage() -> Response:
    """Usage by subscriber, ISP or lease over a period, with charts, totals and exports."""
    query = _usage_query()
    report = _usage_report(query)
    with session_scope(database_url()) as db:
        names = isp_names(db)
    page = render_template(
        "noc/usage.html",
        report=report,
        query=query,
        by_choices=USAGE_BY,
        names=names,
        presets=_presets(query),
        exports={fmt: url_for("noc.usage_export", fmt=fmt, **_args(query)) for fmt in MEDIA_TYPES},
        charts=_charts(report),
    )
    return make_response(page)


@bp.get("/usage.<any(csv, json, html):fmt>")
def usage_export(fmt: str) -> Response:
    """The usage page's report as a CSV, JSON or HTML file (same period and filters)."""
    query = _usage_query()
    return usage_response(_usage_report(query), fmt, query["start"], query["end"], download=True)


@bp.get("/subscribers/<subscriber_id>/sessions")
def subscriber_sessions(subscriber_id: str) -> Response:
    """A subscriber's service sessions, the latest started first; optionally in a period."""
    subscriber, name, start, end, first, last = _sessions_query(subscriber_id)
    now = utcnow()
    rows = _session_rows(subscriber, start, end, now)
    with session_scope(database_url()) as db:
        names = isp_names(db)
    args: dict[str, Any] = {"from": first, "to": last} if first else {}
    page = render_template(
        "noc/subscriber_sessions.html",
        subscriber=subscriber,
        name=name,
        sessions=rows,
        names=names,
        first=first or "",
        last=last or "",
        full=len(rows) == SESSIONS_PAGE_SIZE,
        export=url_for("noc.subscriber_sessions_export", subscriber_id=subscriber, **args),
        usage=url_for("noc.usage", by="subscriber", subscriber=subscriber, **args),
    )
    return make_response(page)


@bp.get("/subscribers/<subscriber_id>/sessions.csv")
def subscriber_sessions_export(subscriber_id: str) -> Response:
    """A subscriber's sessions as CSV (formula-safe), the columns of the API plus coverage."""
    subscriber, _name, start, end, _first, _last = _sessions_query(subscriber_id)
    rows = _session_rows(subscriber, start, end, utcnow())
    body = reports.render(rows, "csv", columns=SESSION_COLUMNS)
    response = Response(body, content_type=MEDIA_TYPES["csv"])
    response.headers["Content-Disposition"] = f'attachment; filename="sessions-{subscriber}.csv"'
    return response


@bp.get("/leases/<int:lease_id>")
def lease_detail(lease_id: int) -> Response:
    """One lease: its terms now, the history of its versions and its usage this month."""
    if lease_id > MAX_ID:
        raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
    url = database_url()
    with session_scope(url) as db:
        lease = db.get(Lease, lease_id)
        if lease is None:
            raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
        view = leasing.lease_view(lease)
        names = isp_names(db)
    versions = leasing.list_versions(lease_id, url)
    today = utcnow().date()
    first, last = today.replace(day=1), today
    start, end = day_start(first), day_start(last + timedelta(days=1))
    report = reports.usage_report(url, start, end, by="lease", isp=view["isp"])
    rows = [row for row in report["rows"] if row["lease"] == lease_id]
    page = render_template(
        "noc/lease.html",
        lease=view,
        versions=versions,
        usage=rows,
        names=names,
        month=first.strftime("%B %Y"),
        usage_url=url_for("noc.usage", **_args(query_for_lease(view["isp"], first, last))),
        export=url_for("noc.lease_versions_export", lease_id=lease_id),
    )
    return make_response(page)


@bp.get("/leases/<int:lease_id>/versions.csv")
def lease_versions_export(lease_id: int) -> Response:
    """A lease's versions as CSV (formula-safe), oldest first."""
    if lease_id > MAX_ID:
        raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
    versions = leasing.list_versions(lease_id, database_url())
    columns = list(versions[0]) if versions else ["lease", "version"]
    body = reports.render(versions, "csv", columns=columns)
    response = Response(body, content_type=MEDIA_TYPES["csv"])
    response.headers["Content-Disposition"] = (
        f'attachment; filename="lease-{lease_id}-versions.csv"'
    )
    return response


# --- the period picker ----------------------------------------------------------------------


def _usage_query() -> dict[str, Any]:
    """The usage page's arguments: by, the period (days, both included), ISP, subscriber."""
    by = usage_by(query_arg("by") or "subscriber")
    today = utcnow().date()
    first = date_arg("from") or today.replace(day=1)
    last = date_arg("to") or max(today, first)
    if last < first:
        raise BadInput("to must be on or after from", code=TIME_CODE)
    start, end = usage_window(day_start(first), day_start(last + timedelta(days=1)))
    isp = query_arg("isp")
    subscriber = query_arg("subscriber")
    return {
        "by": by,
        "first": first,
        "last": last,
        "start": start,
        "end": end,
        "isp": None if isp is None else validate.name(isp, "isp"),
        "subscriber": None if subscriber is None else validate.name(subscriber, "subscriber"),
    }


def query_for_lease(isp: str, first: date, last: date) -> dict[str, Any]:
    """The usage page's query for one ISP's leases over the days ``first`` to ``last``."""
    return {"by": "lease", "first": first, "last": last, "isp": isp, "subscriber": None}


def _usage_report(query: Mapping[str, Any]) -> dict[str, Any]:
    return reports.usage_report(
        database_url(),
        query["start"],
        query["end"],
        by=query["by"],
        isp=query["isp"],
        subscriber=query["subscriber"],
    )


def _args(query: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """The query string of the usage page for ``query`` (with ``changes``)."""
    merged = {**query, **changes}
    args: dict[str, Any] = {
        "by": merged["by"],
        "from": merged["first"].isoformat(),
        "to": merged["last"].isoformat(),
    }
    for name in ("isp", "subscriber"):
        if merged.get(name):
            args[name] = merged[name]
    return args


def _presets(query: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The quick periods: label, URL (the other filters kept) and whether it is the current."""
    today = utcnow().date()
    month = today.replace(day=1)
    last_month_end = month - timedelta(days=1)
    periods = {
        "today": (today, today),
        "last 7 days": (today - timedelta(days=6), today),
        "this month": (month, today),
        "last month": (last_month_end.replace(day=1), last_month_end),
    }
    return [
        {
            "label": label,
            "url": url_for("noc.usage", **_args(query, first=first, last=last)),
            "current": (query["first"], query["last"]) == (first, last),
        }
        for label, (first, last) in ((label, periods[label]) for label in PRESETS)
    ]


def _charts(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Two charts of the report's series, traffic in and out: caption and drawing each.

    Each point sits in the middle of its bucket (an hour, or a day for long windows), so
    a day's 24 hours span the day; a bucket without a row breaks the line.
    """
    series = report["series"]
    start = datetime.fromisoformat(report["from"]).timestamp()
    end = datetime.fromisoformat(report["to"]).timestamp()
    times = [datetime.fromisoformat(point["bucket"]).timestamp() for point in series]
    steps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    width = min(steps) if steps else min(end - start, 86400.0)
    grain = "day" if width >= 86400 else "hour"
    lease = report["by"] == "lease"
    charts = []
    for key, what in (
        ("bytes_in", "Received from the ISPs" if lease else "In: from the subscribers (upload)"),
        ("bytes_out", "Sent to the ISPs" if lease else "Out: to the subscribers (download)"),
    ):
        top = max((int(point[key]) for point in series), default=0)
        scale, unit = _scale(top)
        points = [
            (min(max(at + width / 2, start), end), int(point[key]) / scale)
            for at, point in zip(times, series, strict=True)
        ]
        caption = f"{what}, {unit} per {grain}"
        drawing = svg.chart(
            points,
            start=start,
            end=end,
            gap=width * 1.5,
            label=caption,
            unit=f" {unit}",
            start_label=_label(report["from"]),
            end_label=_label(report["to"]),
        )
        charts.append({"caption": caption, "svg": drawing})
    return charts


def _scale(top: int) -> tuple[float, str]:
    """The divisor and unit that keep a chart's largest value below 1000."""
    scale = 1.0
    for unit in _UNITS:
        if top < scale * 1000 or unit == _UNITS[-1]:
            return scale, unit
        scale *= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def _label(iso_time: str) -> str:
    return as_utc(datetime.fromisoformat(iso_time)).strftime("%Y-%m-%d %H:%M")


# --- a subscriber's sessions ----------------------------------------------------------------


def _sessions_query(
    subscriber_id: str,
) -> tuple[str, str, datetime | None, datetime | None, str | None, str | None]:
    """The subscriber (checked), its name, the period (or none) and its days as text."""
    subscriber = validate.name(subscriber_id, "subscriber")
    with session_scope(database_url()) as db:
        row = db.get(Subscriber, subscriber)
        if row is None:
            raise NotFound(f"unknown subscriber {subscriber!r}", code="VPOP-404-SUBSCRIBER")
        name = row.name
    first, last = date_arg("from"), date_arg("to")
    if first is None and last is None:
        return subscriber, name, None, None, None, None
    today = utcnow().date()
    first = first or (last or today).replace(day=1)
    last = last or max(today, first)
    if last < first:
        raise BadInput("to must be on or after from", code=TIME_CODE)
    start, end = day_start(first), day_start(last + timedelta(days=1))
    return subscriber, name, start, end, first.isoformat(), last.isoformat()


def _session_rows(
    subscriber: str, start: datetime | None, end: datetime | None, now: datetime
) -> list[dict[str, Any]]:
    """The sessions' views, each with its coverage (covered over elapsed seconds, percent)."""
    rows = accounting.list_sessions(
        database_url(), subscriber=subscriber, start=start, end=end, limit=SESSIONS_PAGE_SIZE
    )
    for row in rows:
        started = datetime.fromisoformat(row["started_at"])
        stopped = datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else now
        elapsed = (stopped - started).total_seconds()
        row["coverage_pct"] = (
            round(min(100.0, row["covered_seconds"] / elapsed * 100), 1) if elapsed > 0 else None
        )
    return rows
