"""The NOC's payment pages: payments with filters and a CSV export, a payment's history with
its subscriber's spending limit (and a form to change it), settlements with their lines and
statement downloads, and the report of payments by payee and period.

The pages read through :mod:`vpop.billing.service` and show the API's views
(:func:`payment_view`, :func:`settlement_view`), so they name things as the API does; a
statement downloaded here is the API's (the same bytes, the same ``X-Content-SHA256``).
Every signed-in NOC user (``noc`` or ``admin``) sees every payee; the one form, the spending
limit, is a POST with the CSRF token, recorded in the audit log under ``user:<name>``.

Importing this module registers its routes on the NOC blueprint.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from flask import Response, flash, make_response, redirect, render_template, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from vpop.billing import service as billing
from vpop.billing.service import PAYMENT_STATUSES, Payee, SettlementLine
from vpop.core import validate
from vpop.core.db import session_scope
from vpop.core.errors import BadInput
from vpop.core.time import TIME_CODE, utcnow
from vpop.reports.service import render
from webhooks.api.common import MAX_ID
from webhooks.pages import csrf
from webhooks.pages.helpers import check_form_fields, money_filter, single_form_value
from webhooks.pages.noc_common import bp, current_actor, current_caller, database_url
from webhooks.pages.query import date_arg, day_start, isp_names, query_arg

#: The most payments one page lists (newest first); the export takes more.
PAYMENTS_PAGE_SIZE = 200

#: The most payments one CSV export holds.
PAYMENTS_EXPORT_SIZE = 1000

#: The most lines a settlement's page shows; its statement downloads hold them all.
LINES_SHOWN = 500

#: The statement formats a settlement offers, and their media types.
STATEMENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}

#: The columns of the payments export: the API's view without its history.
PAYMENT_COLUMNS = (
    "id",
    "status",
    "decline_reason",
    "payee",
    "isp",
    "subscriber",
    "identified_by",
    "amount_minor",
    "captured_minor",
    "refunded_minor",
    "currency",
    "item",
    "merchant_reference",
    "created_at",
    "expires_at",
    "disputed_at",
    "dispute_reason",
)

LIMIT_FIELDS = ("csrf_token", "limit_minor")

CSV_TYPE = "text/csv; charset=utf-8"


# --- payments -------------------------------------------------------------------------------


@bp.get("/payments")
def payments() -> Response:
    """Payments, newest first, filtered by payee, ISP, subscriber, status and days."""
    query = _payments_query()
    rows = _payment_rows(query, PAYMENTS_PAGE_SIZE)
    with session_scope(database_url()) as db:
        names = isp_names(db)
        payees = _payee_names(db)
    page = render_template(
        "noc/payments.html",
        payments=rows,
        query=query,
        statuses=PAYMENT_STATUSES,
        names=names,
        payees=payees,
        full=len(rows) == PAYMENTS_PAGE_SIZE,
        export=url_for("noc.payments_export", **_payment_args(query)),
    )
    return make_response(page)


@bp.get("/payments.csv")
def payments_export() -> Response:
    """The payments page's list as CSV (formula-safe; same filters; amounts in minor units)."""
    query = _payments_query()
    rows = _payment_rows(query, PAYMENTS_EXPORT_SIZE)
    body = render(rows, "csv", columns=PAYMENT_COLUMNS)
    return _download(body, CSV_TYPE, "payments.csv")


@bp.get("/payments/<int:payment_id>")
def payment_detail(payment_id: int) -> Response:
    """One payment with its whole history, and its subscriber's spending limit."""
    with session_scope(database_url()) as db:
        payment = _payment(db, payment_id)
        view = billing.payment_view(payment, billing.events_of(db, payment.id))
        subscriber = payment.subscriber_id
        spending = billing.spending(db, subscriber) if subscriber else None
        names = isp_names(db)
        payees = _payee_names(db)
    page = render_template(
        "noc/payment.html",
        payment=view,
        spending=spending,
        names=names,
        payees=payees,
    )
    return make_response(page)


@bp.post("/payments/<int:payment_id>/spending-limit")
def payment_spending_limit(payment_id: int) -> BaseResponse:
    """Set the spending limit of the payment's subscriber (this period and later ones)."""
    csrf.protect()
    check_form_fields(LIMIT_FIELDS)
    raw = (single_form_value("limit_minor") or "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise BadInput(
            "limit_minor: give the limit as a whole number of minor units (5000 is 50.00 EUR)",
            code="VPOP-400-TYPE",
        )
    body = billing.LimitBody.parse({"limit_minor": int(raw)})
    with session_scope(database_url()) as db:
        payment = _payment(db, payment_id)
        subscriber = payment.subscriber_id
        if subscriber is None:
            raise BadInput(
                f"payment {payment_id} names no subscriber (its line was unknown)",
                code="VPOP-400-MISSING",
            )
        after = billing.set_spending_limit(db, subscriber, body.limit_minor, actor=current_actor())
    limit = money_filter(after["limit_minor"], after["currency"])
    flash(f"The spending limit of {subscriber} is now {limit} a month.")
    return redirect(url_for("noc.payment_detail", payment_id=payment_id), code=303)


def _payment(db: Session, payment_id: int) -> Any:
    """The payment, as the signed-in NOC user may see it (any)."""
    if payment_id > MAX_ID:
        raise billing.UnknownPayment(f"unknown payment {payment_id}")
    return billing.payment_for(db, current_caller(), payment_id)


def _payments_query() -> dict[str, Any]:
    """The payments page's filters: payee, isp, subscriber, status, days ``from``-``to``."""
    first, last = date_arg("from"), date_arg("to")
    if first is not None and last is not None and last < first:
        raise BadInput("to must be on or after from", code=TIME_CODE)
    status = query_arg("status")
    return {
        "payee": _name_arg("payee"),
        "isp": _name_arg("isp"),
        "subscriber": _name_arg("subscriber"),
        "status": None if status is None else validate.one_of(status, "status", PAYMENT_STATUSES),
        "first": first,
        "last": last,
    }


def _payment_rows(query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    with session_scope(database_url()) as db:
        found = billing.list_payments(
            db,
            isp=query["isp"],
            payee=query["payee"],
            subscriber=query["subscriber"],
            status=query["status"],
            since=day_start(query["first"]) if query["first"] else None,
            until=day_start(query["last"] + timedelta(days=1)) if query["last"] else None,
            limit=limit,
        )
        return [billing.payment_view(payment) for payment in found]


def _payment_args(query: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {
        name: query[name] for name in ("payee", "isp", "subscriber", "status") if query[name]
    }
    if query["first"]:
        args["from"] = query["first"].isoformat()
    if query["last"]:
        args["to"] = query["last"].isoformat()
    return args


# --- settlements ----------------------------------------------------------------------------


@bp.get("/settlements")
def settlements() -> Response:
    """Settlements, filtered by period and payee, with links to each."""
    period = _period_arg("period")
    payee = _name_arg("payee")
    with session_scope(database_url()) as db:
        rows = [
            billing.settlement_view(s)
            for s in billing.list_settlements(db, period=period, payee=payee)
        ]
        payees = _payee_names(db)
    page = render_template(
        "noc/settlements.html",
        settlements=rows,
        period=period,
        payee=payee,
        payees=payees,
    )
    return make_response(page)


@bp.get("/settlements/<int:settlement_id>")
def settlement_detail(settlement_id: int) -> Response:
    """One settlement: its totals, its lines, and its statement downloads with SHA-256."""
    with session_scope(database_url()) as db:
        settlement = billing.settlement_for(db, current_caller(), settlement_id)
        view = billing.settlement_view(settlement)
        lines = db.scalars(
            select(SettlementLine)
            .where(SettlementLine.settlement_id == settlement.id)
            .order_by(SettlementLine.line_no)
            .limit(LINES_SHOWN)
        ).all()
        downloads = [
            {
                "format": fmt,
                "url": url_for("noc.settlement_statement", settlement_id=settlement.id, fmt=fmt),
                "sha256": billing.statement_sha(settlement, fmt),
            }
            for fmt in STATEMENT_TYPES
        ]
        payees = _payee_names(db)
    page = render_template(
        "noc/settlement.html",
        settlement=view,
        lines=lines,
        shown=LINES_SHOWN,
        downloads=downloads,
        payees=payees,
    )
    return make_response(page)


@bp.get("/settlements/<int:settlement_id>/statement.<any(json, csv, html):fmt>")
def settlement_statement(settlement_id: int, fmt: str) -> Response:
    """A settlement's statement as a download, with its SHA-256 in ``X-Content-SHA256``."""
    with session_scope(database_url()) as db:
        settlement = billing.settlement_for(db, current_caller(), settlement_id)
        body = billing.render_statement(settlement, fmt)
        name = f"settlement-{settlement.payee_id}-{settlement.period}-{settlement.seq}.{fmt}"
    response = _download(body, STATEMENT_TYPES[fmt], name)
    response.headers["X-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    return response


# --- the report -----------------------------------------------------------------------------


@bp.get("/payments/report")
def payments_report() -> Response:
    """Payments by payee over a period (a calendar month), with totals and a CSV export."""
    period, isp, payee = _report_query()
    with session_scope(database_url()) as db:
        report = billing.payments_report_for_period(db, period, isp=isp, payee=payee)
        names = isp_names(db)
    args: dict[str, Any] = {
        k: v for k, v in (("period", period), ("isp", isp), ("payee", payee)) if v
    }
    page = render_template(
        "noc/payments_report.html",
        report=report,
        isp=isp,
        payee=payee,
        names=names,
        periods=_recent_periods(),
        export=url_for("noc.payments_report_export", **args),
    )
    return make_response(page)


@bp.get("/payments/report.csv")
def payments_report_export() -> Response:
    """The report as CSV: one line per payee and currency, then a total line per currency."""
    period, isp, payee = _report_query()
    with session_scope(database_url()) as db:
        report = billing.payments_report_for_period(db, period, isp=isp, payee=payee)
    body = billing.payments_report_csv(report["rows"])
    return _download(body, CSV_TYPE, f"payments-{period}.csv")


def _report_query() -> tuple[str, str | None, str | None]:
    period = _period_arg("period") or billing.period_of(utcnow())
    return period, _name_arg("isp"), _name_arg("payee")


def _recent_periods() -> list[str]:
    """This month and the eleven before it, newest first (the picker's choices)."""
    month = utcnow().replace(day=1)
    found = []
    for _ in range(12):
        found.append(billing.period_of(month))
        month = (month - timedelta(days=1)).replace(day=1)
    return found


# --- shared ---------------------------------------------------------------------------------


def _download(body: str | bytes, content_type: str, filename: str) -> Response:
    response = Response(body, content_type=content_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _payee_names(db: Session) -> dict[str, str]:
    return {p: name for p, name in db.execute(select(Payee.id, Payee.name).order_by(Payee.id))}


def _name_arg(name: str) -> str | None:
    raw = query_arg(name)
    return None if raw is None else validate.name(raw, name)


def _period_arg(name: str) -> str | None:
    """A ``YYYY-MM`` period from the query (checked by the billing domain), or None."""
    raw = query_arg(name)
    if raw is None:
        return None
    billing.period_bounds(raw)
    return raw
