"""Payments by payee and period: what each payee was asked for, got and gave back.

One row per payee and currency over a half-open window ``[since, until)`` (a period is a
calendar month, :mod:`vpop.billing.periods`), read from the payments and their events:

* ``payments``: payments created in the window, ``declined`` of them declined;
* ``authorised_minor``, ``captured_minor``, ``refunded_minor``: the amounts of the
  ``authorised``, ``captured`` and ``refunded`` events in the window (an event counts in the
  window it happened in, whenever its payment was created);
* ``fees_minor``: the routing centre's fee on those captures: for a capture already settled,
  the fee its settlement charged; for one not settled yet, the fee the payee's current terms
  give (``(amount * fee_bp + 5000) // 10000 + fee_fixed_minor``, the settlement's rule), so
  the figure may still change until the capture is settled; ``settled_captures`` says how
  many of ``captures`` are settled;
* ``net_minor``: ``captured - refunded - fees`` (lease charges are not payments: they are on
  the settlements).

Everything is summed in the database per payee, currency and amount (no object per payment),
so a month of a million payments is a handful of grouped queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from vpop.billing.payment_models import Payee, Payment, PaymentEvent, SettlementLine
from vpop.billing.periods import check_period, period_bounds
from vpop.billing.settlement_lines import fee_of
from vpop.core.time import as_utc, iso, utcnow
from vpop.reports.service import render

#: The columns of a row, in order (the CSV export's header).
PAYMENTS_REPORT_COLUMNS = (
    "payee",
    "payee_name",
    "payee_kind",
    "isp",
    "currency",
    "payments",
    "declined",
    "authorised_minor",
    "captured_minor",
    "refunded_minor",
    "fees_minor",
    "net_minor",
    "captures",
    "settled_captures",
)

#: The columns summed on the totals line (per currency).
_SUMMED = PAYMENTS_REPORT_COLUMNS[5:]

_EVENT_KINDS = ("authorised", "captured", "refunded")


def payments_report(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    isp: str | None = None,
    payee: str | None = None,
) -> list[dict[str, Any]]:
    """Payments by payee and currency over ``[since, until)`` (module docstring).

    Args:
        session: An open session (only read).
        since: The window's first instant (naive means UTC).
        until: The first instant after it.
        isp: Only this ISP's payees (the ISP itself and its merchants).
        payee: Only this payee.

    Returns:
        One dict per payee and currency with anything in the window (the keys of
        :data:`PAYMENTS_REPORT_COLUMNS`), ordered by payee then currency.
    """
    start, end = as_utc(since), as_utc(until)
    payees = select(Payee.id)
    if isp is not None:
        payees = payees.where(Payee.isp_id == isp)
    if payee is not None:
        payees = payees.where(Payee.id == payee)
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(_SUMMED, 0))

    created = session.execute(
        select(
            Payment.payee_id,
            Payment.currency,
            func.count(),
            func.count().filter(Payment.status == "DECLINED"),
        )
        .where(Payment.created_at >= start, Payment.created_at < end)
        .where(Payment.payee_id.in_(payees.scalar_subquery()))
        .group_by(Payment.payee_id, Payment.currency)
    )
    for payee_id, currency, count, declined in created:
        row = rows[(payee_id, currency)]
        row["payments"], row["declined"] = int(count), int(declined)

    in_window = and_(
        PaymentEvent.at >= start,
        PaymentEvent.at < end,
        PaymentEvent.payee_id.in_(payees.scalar_subquery()),
    )
    moved = session.execute(
        select(
            PaymentEvent.payee_id,
            PaymentEvent.currency,
            PaymentEvent.kind,
            func.count(),
            func.coalesce(func.sum(PaymentEvent.amount_minor), 0),
        )
        .where(in_window, PaymentEvent.kind.in_(_EVENT_KINDS))
        .group_by(PaymentEvent.payee_id, PaymentEvent.currency, PaymentEvent.kind)
    )
    for payee_id, currency, kind, count, total in moved:
        row = rows[(payee_id, currency)]
        row[f"{kind}_minor"] = int(total)
        if kind == "captured":
            row["captures"] = int(count)

    _add_fees(session, rows, in_window)

    found = sorted(rows)
    terms = {
        p.id: p
        for p in session.scalars(select(Payee).where(Payee.id.in_({key[0] for key in found})))
    }
    report = []
    for payee_id, currency in found:
        row = rows[(payee_id, currency)]
        row["net_minor"] = row["captured_minor"] - row["refunded_minor"] - row["fees_minor"]
        who = terms.get(payee_id)
        report.append(
            {
                "payee": payee_id,
                "payee_name": who.name if who else payee_id,
                "payee_kind": who.kind if who else None,
                "isp": who.isp_id if who else None,
                "currency": currency,
                **{name: row[name] for name in _SUMMED},
            }
        )
    return report


def _add_fees(
    session: Session, rows: dict[tuple[str, str], dict[str, int]], in_window: Any
) -> None:
    """Add each row's fees and settled captures: settled ones as charged, others as due."""
    captured = and_(in_window, PaymentEvent.kind == "captured")
    settled = exists().where(SettlementLine.event_id == PaymentEvent.id)
    # not settled yet: the payee's current terms, once per distinct amount
    due = session.execute(
        select(
            PaymentEvent.payee_id,
            PaymentEvent.currency,
            PaymentEvent.amount_minor,
            func.count(),
            Payee.fee_bp,
            Payee.fee_fixed_minor,
        )
        .join(Payee, Payee.id == PaymentEvent.payee_id)
        .where(captured, ~settled)
        .group_by(
            PaymentEvent.payee_id,
            PaymentEvent.currency,
            PaymentEvent.amount_minor,
            Payee.fee_bp,
            Payee.fee_fixed_minor,
        )
    )
    for payee_id, currency, amount, count, fee_bp, fee_fixed in due:
        fee = fee_of(int(amount), int(fee_bp), int(fee_fixed))
        rows[(payee_id, currency)]["fees_minor"] += int(count) * fee
    # settled: a statement puts each capture's fee line right after it (settlement_lines)
    capture_line = aliased(SettlementLine)
    fee_line = aliased(SettlementLine)
    charged = session.execute(
        select(
            PaymentEvent.payee_id,
            PaymentEvent.currency,
            func.count(),
            func.coalesce(func.sum(fee_line.amount_minor), 0),
        )
        .join(capture_line, capture_line.event_id == PaymentEvent.id)
        .outerjoin(
            fee_line,
            and_(
                fee_line.settlement_id == capture_line.settlement_id,
                fee_line.line_no == capture_line.line_no + 1,
                fee_line.kind == "fee",
            ),
        )
        .where(captured)
        .group_by(PaymentEvent.payee_id, PaymentEvent.currency)
    )
    for payee_id, currency, count, fees in charged:
        row = rows[(payee_id, currency)]
        row["settled_captures"] += int(count)
        row["fees_minor"] -= int(fees)  # a fee line is signed: negative, owed by the payee


def payments_report_for_period(
    session: Session,
    period: str,
    *,
    isp: str | None = None,
    payee: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report for one period (``YYYY-MM``, UTC) with its bounds and totals.

    Returns:
        ``{"period", "from", "to", "rows", "totals"}``: ``from``/``to`` ISO 8601 (the end
        excluded), ``rows`` as :func:`payments_report`, ``totals`` one dict per currency
        (``currency`` and the summed columns).

    Raises:
        PeriodInvalid: the period is not ``YYYY-MM`` or has not started yet.
    """
    check_period(period, now or utcnow())
    start, end = period_bounds(period)
    rows = payments_report(session, since=start, until=end, isp=isp, payee=payee)
    return {
        "period": period,
        "from": iso(start),
        "to": iso(end),
        "rows": rows,
        "totals": report_totals(rows),
    }


def report_totals(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The summed columns of ``rows``, one dict per currency (amounts never mix currencies)."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_SUMMED, 0))
    for row in rows:
        for name in _SUMMED:
            totals[row["currency"]][name] += int(row[name])
    return [{"currency": currency, **totals[currency]} for currency in sorted(totals)]


def payments_report_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The report's rows as CSV (formula-safe cells; amounts in minor units), then one
    ``total`` line per currency."""
    body = render(rows, "csv", columns=PAYMENTS_REPORT_COLUMNS)
    totals = [
        {"payee": "total", **total}  # the other text columns stay empty
        for total in report_totals(rows)
    ]
    lines = render(totals, "csv", columns=PAYMENTS_REPORT_COLUMNS).splitlines(keepends=True)
    return body + "".join(lines[1:])
