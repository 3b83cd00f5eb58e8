"""Usage reports and service sessions over the JSON API.

``GET /api/v1/reports/usage`` is ``vpop report usage`` over HTTP: the same report
(:func:`vpop.reports.service.usage_report`) as JSON, CSV or a self-contained HTML page
(:func:`vpop.reports.service.render_usage`). ``GET /api/v1/sessions`` lists service sessions
(:func:`vpop.accounting.service.list_sessions`).

Who reads what (docs/tenancy.md): operators (``admin``, ``noc``) read every ISP's usage and
sessions and may narrow them to one ISP with ``isp``; an ``isp`` token reads only its own
ISP's: its report is scoped to its ISP (its own customers' traffic through it, its leases),
and naming another ISP is 403, as for ``/api/v1/radius/sessions``. Portal tokens are refused.

Query strings are strict (:func:`~webhooks.api.common.query_args`): known keys, each once.
Windows are half-open, ``from <= t < to``, ISO 8601 with a UTC offset or a date alone
(midnight UTC), at most :data:`USAGE_MAX_WINDOW`. Errors leave as
``application/problem+json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask import Response, current_app, jsonify

from vpop.accounting import service as accounting
from vpop.core import validate
from vpop.core.errors import BadInput
from vpop.core.schemas import short
from vpop.core.time import TIME_CODE, as_utc, parse_time
from vpop.reports import service as reports
from vpop.selection.service import Caller, Forbidden
from webhooks.api.common import OPERATORS, boolean_arg, bp, limit_arg, query_args
from webhooks.auth import authenticate

#: What a usage report is grouped by (the reports domain's list).
USAGE_BY: tuple[str, ...] = tuple(reports.USAGE_BY)

#: The code of an unknown ``by`` (the one :func:`vpop.reports.service.usage_report` uses).
BY_CODE = "VPOP-400-REPORT-BY"

#: How a usage report is sent.
USAGE_FORMATS = ("json", "csv", "html")

#: The media type of each format.
MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}

#: The policy of a rendered HTML report: its own inline styles and SVG, nothing loaded.
HTML_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"

#: The longest window one report covers (the rollups are kept 400 days by default).
USAGE_MAX_WINDOW = timedelta(days=400)

SESSIONS_DEFAULT_LIMIT = 100

SESSIONS_MAX_LIMIT = accounting.LIST_MAX  # the service refuses more


@bp.get("/reports/usage")
def get_usage_report() -> Response:
    """Usage by subscriber, ISP or lease over a window, as JSON, CSV or HTML."""
    own = _reader(authenticate(allow_webhook=False).caller)
    args = query_args(("by", "from", "to", "format", "isp", "subscriber"))
    _require(args, ("by", "from", "to"))
    by = usage_by(args["by"])
    fmt = validate.one_of(args.get("format", "json"), "format", USAGE_FORMATS)
    start, end = usage_window(parse_time(args["from"], "from"), parse_time(args["to"], "to"))
    isp = _own_isp(args, own)
    subscriber = validate.name(args["subscriber"], "subscriber") if "subscriber" in args else None
    report = reports.usage_report(
        current_app.config["DATABASE_URL"], start, end, by=by, isp=isp, subscriber=subscriber
    )
    if fmt == "json":
        return jsonify(report)
    return usage_response(report, fmt, start, end)


@bp.get("/sessions")
def list_service_sessions() -> dict[str, Any]:
    """Service sessions overlapping a window, the latest started first: every ISP's for
    operators, its own ISP's for an ISP token; filter by subscriber, ISP, line and open."""
    own = _reader(authenticate(allow_webhook=False).caller)
    args = query_args(("subscriber", "isp", "line", "from", "to", "open", "limit"))
    isp = _own_isp(args, own)
    start = parse_time(args["from"], "from") if "from" in args else None
    end = parse_time(args["to"], "to") if "to" in args else None
    if start is not None and end is not None and end <= start:
        raise BadInput("from must be before to", code=TIME_CODE)
    subscriber = validate.name(args["subscriber"], "subscriber") if "subscriber" in args else None
    sessions = accounting.list_sessions(
        current_app.config["DATABASE_URL"],
        subscriber=subscriber,
        isp=isp,
        line=_id_arg(args["line"], "line") if "line" in args else None,
        start=start,
        end=end,
        open_only=boolean_arg(args["open"], "open") if "open" in args else None,
        limit=limit_arg(args.get("limit"), SESSIONS_DEFAULT_LIMIT, SESSIONS_MAX_LIMIT),
    )
    return {"sessions": sessions}


def usage_by(raw: str) -> str:
    """What the report is grouped by, or ``VPOP-400-REPORT-BY`` (the reports domain's code)."""
    if raw not in USAGE_BY:
        raise BadInput(f"by: {short(raw)} is not one of: {', '.join(USAGE_BY)}", code=BY_CODE)
    return raw


def usage_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC, if ``end`` is after ``start`` and within the longest window.

    Raises:
        BadInput: ``VPOP-400-TIME`` for an empty or inverted window, ``VPOP-400-RANGE`` for
            one longer than :data:`USAGE_MAX_WINDOW`.
    """
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise BadInput("from must be before to", code=TIME_CODE)
    if end - start > USAGE_MAX_WINDOW:
        raise BadInput(
            f"the window is at most {USAGE_MAX_WINDOW.days} days (the rollups are kept "
            "that long); ask for shorter periods and add them up",
            code="VPOP-400-RANGE",
        )
    return start, end


def usage_response(
    report: Mapping[str, Any], fmt: str, start: datetime, end: datetime, *, download: bool = False
) -> Response:
    """A rendered usage report (``csv``, ``json`` or ``html``) as a response.

    CSV is always an attachment named ``usage-<by>-<from>-<to>.csv``; ``download`` makes the
    other formats attachments too (the NOC pages' export links). HTML carries a policy that
    lets it use only its own inline styles and drawings (:data:`HTML_POLICY`).
    """
    body = reports.render_usage(dict(report), fmt)
    response = Response(body, content_type=MEDIA_TYPES[fmt])
    if fmt == "html":
        response.headers["Content-Security-Policy"] = HTML_POLICY
    if fmt == "csv" or download:
        name = usage_filename(str(report["by"]), start, end, fmt)
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def usage_filename(by: str, start: datetime, end: datetime, fmt: str) -> str:
    """``usage-<by>-<from>-<to>.<fmt>``: a day alone for midnight UTC, else a compact time."""
    return f"usage-{by}-{_stamp(start)}-{_stamp(end)}.{fmt}"


def _stamp(at: datetime) -> str:
    at = as_utc(at)
    if at.hour == at.minute == at.second == at.microsecond == 0:
        return at.strftime("%Y-%m-%d")
    return at.strftime("%Y-%m-%dT%H%M%SZ")


def _require(args: Mapping[str, str], names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in args]
    if missing:
        raise BadInput(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required "
            "(by=subscriber|isp|lease, from and to: ISO 8601 times or dates)",
            code="VPOP-400-MISSING",
        )


def _reader(caller: Caller) -> str | None:
    """Whose usage and sessions the caller reads: None for every ISP's, else one ISP."""
    if caller.role in OPERATORS:
        return None
    if caller.role == "isp" and caller.isp is not None:
        return caller.isp
    raise Forbidden("usage and service sessions are for NOC staff, admins and ISP tokens")


def _own_isp(args: Mapping[str, str], own: str | None) -> str | None:
    """The ISP to scope to: the ``isp`` argument, which an ISP token may set only to its own."""
    isp = validate.name(args["isp"], "isp") if "isp" in args else own
    if own is not None and isp != own:
        raise Forbidden(f"an ISP token reads only its own ISP's usage and sessions, not {isp!r}")
    return isp


def _id_arg(raw: str, name: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise BadInput(f"{name} must be a positive whole number", code="VPOP-400-TYPE")
    return int(raw)
