"""Subscribers' bills: plan charges prorated by service time, purchases, refunds.

A bill covers one subscriber, period and currency. Its lines:

- ``plan``: one per ``selection`` service session overlapping the period (the routing
  centre's record of which ISP served a line, and when). The plan is the subscriber's chosen
  plan of that ISP (profile ``plans[isp_id]``, a plan id) or else the ISP's first plan (by
  id); the charge is the monthly price times the session's whole seconds inside the period
  over the month's seconds, rounded half up:
  ``(price * seconds + month_seconds // 2) // month_seconds``. A subscriber who switched ISP
  mid-month pays each ISP's plan for the time it served.
- ``purchase``: each captured payment event of the subscriber in the period (+amount);
- ``refund``: each refunded payment event in the period (-amount), whatever the purchase's
  period (a refund after a bill was closed shows on the next one).

total = plan + purchases - refunds. The running bill counts up to ``now``; ``close_bills``
stores each ended period's bill once, with its canonical JSON statement and SHA-256, and
books the plan charges to revenue (``bill:{id}:plan``: clearing +plan, revenue -plan).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vpop.accounting.service import ServiceSession
from vpop.billing import ledger
from vpop.billing.errors import PeriodInvalid
from vpop.billing.payment_models import Bill, Payment, PaymentEvent
from vpop.billing.periods import check_period, period_bounds, period_of
from vpop.billing.settlement_lines import canonical_json
from vpop.catalogue.service import Plan, Subscriber
from vpop.core.errors import NotFound
from vpop.core.settings import load_settings
from vpop.core.time import as_utc, iso, utcnow

_SECOND = timedelta(seconds=1)
_KIND_ORDER = {"plan": 0, "purchase": 1, "refund": 2}


def _plan_of(session: Session, profile: dict[str, Any], isp_id: str) -> Plan | None:
    """The subscriber's plan of ``isp_id``: the profile's choice, else the ISP's first plan."""
    chosen = (profile.get("plans") or {}).get(isp_id)
    if isinstance(chosen, int) and not isinstance(chosen, bool):
        plan = session.get(Plan, chosen)
        if plan is not None and plan.isp_id == isp_id:
            return plan
    query = select(Plan).where(Plan.isp_id == isp_id).order_by(Plan.id).limit(1)
    return session.scalars(query).first()


def _line(
    kind: str, at: datetime, amount: int, currency: str, text: str, **ids: Any
) -> dict[str, Any]:
    line = {"kind": kind, "at": iso(at), "amount_minor": amount, "currency": currency,
            "description": text, "isp": None, "plan": None, "session": None, "seconds": None,
            "payee": None, "payment": None, "event": None}  # fmt: skip
    line.update(ids)
    return line


def _plan_lines(
    session: Session, subscriber_id: str, profile: dict[str, Any], start: datetime,
    end: datetime, upto: datetime,
) -> list[dict[str, Any]]:  # fmt: skip
    month_seconds = int((end - start) // _SECOND)
    rows = session.scalars(
        select(ServiceSession)
        .where(
            ServiceSession.source == "selection",
            ServiceSession.subscriber_id == subscriber_id,
            ServiceSession.started_at < upto,
            or_(ServiceSession.ended_at.is_(None), ServiceSession.ended_at > start),
        )
        .order_by(ServiceSession.started_at, ServiceSession.id)
    )
    lines = []
    for row in rows:
        begin = max(as_utc(row.started_at), start)
        finish = min(upto if row.ended_at is None else as_utc(row.ended_at), upto)
        seconds = int((finish - begin) // _SECOND)
        plan = _plan_of(session, profile, row.isp_id)
        if seconds <= 0 or plan is None:
            continue
        amount = (plan.monthly_price_minor * seconds + month_seconds // 2) // month_seconds
        text = f"{plan.name} ({row.isp_id}): {seconds} of {month_seconds} s"
        lines.append(_line("plan", begin, amount, plan.currency, text, isp=row.isp_id,
                           plan=plan.id, session=row.id, seconds=seconds))  # fmt: skip
    return lines


def _payment_lines(
    session: Session, subscriber_id: str, start: datetime, upto: datetime
) -> list[dict[str, Any]]:
    rows = session.execute(
        select(PaymentEvent, Payment.item)
        .join(Payment, Payment.id == PaymentEvent.payment_id)
        .where(
            Payment.subscriber_id == subscriber_id,
            PaymentEvent.kind.in_(("captured", "refunded")),
            PaymentEvent.at >= start,
            PaymentEvent.at < upto,
        )
        .order_by(PaymentEvent.at, PaymentEvent.id)
    )
    lines = []
    for event, item in rows:
        kind = "purchase" if event.kind == "captured" else "refund"
        amount = event.amount_minor if kind == "purchase" else -event.amount_minor
        lines.append(_line(kind, event.at, amount, event.currency, item, payee=event.payee_id,
                           payment=event.payment_id, event=event.id))  # fmt: skip
    return lines


def _bills(
    session: Session, subscriber_id: str, period: str, upto: datetime
) -> dict[str, dict[str, Any]]:
    """The subscriber's bill per currency for ``period`` counted up to ``upto``."""
    start, end = period_bounds(period)
    upto = min(as_utc(upto), end)
    subscriber = session.get(Subscriber, subscriber_id)
    profile = dict(subscriber.profile or {}) if subscriber is not None else {}
    lines = _plan_lines(session, subscriber_id, profile, start, end, upto)
    lines += _payment_lines(session, subscriber_id, start, upto)
    lines.sort(key=lambda x: (x["at"], _KIND_ORDER[x["kind"]], x["session"] or 0, x["event"] or 0))
    bills: dict[str, dict[str, Any]] = {}
    for line in lines:
        currency = line["currency"]
        bill = bills.setdefault(currency, _empty(subscriber_id, period, currency, upto, end))
        bill["lines"].append(line)
        key = {"plan": "plan_minor", "purchase": "purchases_minor", "refund": "refunds_minor"}
        bill[key[line["kind"]]] += abs(line["amount_minor"])
        bill["total_minor"] += line["amount_minor"]
    return bills


def _empty(
    subscriber: str, period: str, currency: str, upto: datetime, end: datetime
) -> dict[str, Any]:
    return {"subscriber": subscriber, "period": period, "currency": currency,
            "until": iso(upto), "final": upto >= end, "lines": [], "plan_minor": 0,
            "purchases_minor": 0, "refunds_minor": 0, "total_minor": 0}  # fmt: skip


def running_bill(
    session: Session,
    subscriber_id: str,
    *,
    period: str | None = None,
    now: datetime | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    """The subscriber's bill for ``period`` (default: this month) counted up to ``now``.

    Returns:
        ``subscriber, period, currency, until, final, lines, plan_minor, purchases_minor,
        refunds_minor, total_minor``; ``currency`` defaults to the billing currency.

    Raises:
        NotFound: ``VPOP-404-SUBSCRIBER``.
        PeriodInvalid: malformed, or not started yet.
    """
    moment = as_utc(now) if now is not None else utcnow()
    period = check_period(period if period is not None else period_of(moment), moment)
    if session.get(Subscriber, subscriber_id) is None:
        raise NotFound(f"unknown subscriber {subscriber_id!r}", code="VPOP-404-SUBSCRIBER")
    currency = currency or load_settings().billing_currency
    _, end = period_bounds(period)
    found = _bills(session, subscriber_id, period, moment)
    return found.get(currency) or _empty(subscriber_id, period, currency, min(moment, end), end)


def _billed_subscribers(session: Session, period: str) -> list[str]:
    start, end = period_bounds(period)
    served = select(ServiceSession.subscriber_id).where(
        ServiceSession.source == "selection",
        ServiceSession.started_at < end,
        or_(ServiceSession.ended_at.is_(None), ServiceSession.ended_at > start),
    )
    paid = (
        select(Payment.subscriber_id)
        .join(PaymentEvent, PaymentEvent.payment_id == Payment.id)
        .where(
            PaymentEvent.kind.in_(("captured", "refunded")),
            PaymentEvent.at >= start,
            PaymentEvent.at < end,
        )
    )
    found = set(session.scalars(served.distinct())) | set(session.scalars(paid.distinct()))
    return sorted(sub for sub in found if sub is not None)


def close_bills(
    session: Session, period: str, *, now: datetime | None = None, actor: str
) -> list[Bill]:
    """Store the bill of every subscriber with anything in ``period``, once per currency.

    Idempotent: a bill already closed is returned as stored (byte-identical statement).

    Raises:
        PeriodInvalid: malformed, or the period has not ended by ``now``.
    """
    moment = as_utc(now) if now is not None else utcnow()
    _, end = period_bounds(period)
    if moment < end:
        raise PeriodInvalid(f"period {period} has not ended: its bills close from {iso(end)}")
    stored = {(b.subscriber_id, b.currency): b for b in session.scalars(
        select(Bill).where(Bill.period == period))}  # fmt: skip
    for subscriber_id in _billed_subscribers(session, period):
        for currency, bill in _bills(session, subscriber_id, period, end).items():
            if (subscriber_id, currency) not in stored:
                stored[(subscriber_id, currency)] = _store(session, bill, actor, moment)
    return [stored[key] for key in sorted(stored)]


def _store(session: Session, bill: dict[str, Any], actor: str, now: datetime) -> Bill:
    statement = canonical_json(bill)
    row = Bill(
        subscriber_id=bill["subscriber"], period=bill["period"], currency=bill["currency"],
        plan_minor=bill["plan_minor"], purchases_minor=bill["purchases_minor"],
        refunds_minor=bill["refunds_minor"], total_minor=bill["total_minor"],
        statement_json=statement,
        statement_sha256=hashlib.sha256(statement.encode("utf-8")).hexdigest(),
        closed_at=now, created_by=actor,
    )  # fmt: skip
    session.add(row)
    session.flush()
    if row.plan_minor > 0:
        currency = row.currency
        clearing = ledger.open_account(session, "clearing", None, currency).code
        revenue = ledger.open_account(session, "revenue", None, currency).code
        ledger.transfer(
            session, key=f"bill:{row.id}:plan", kind="transfer", currency=currency,
            postings=[(clearing, row.plan_minor), (revenue, -row.plan_minor)],
            reference=f"bill {row.id}", actor=actor, at=now,
        )  # fmt: skip
    return row


def bill_view(bill: Bill) -> dict[str, Any]:
    """The public JSON shape of a closed bill (its lines are in ``statement_json``)."""
    return {
        "id": bill.id,
        "subscriber": bill.subscriber_id,
        "period": bill.period,
        "currency": bill.currency,
        "plan_minor": bill.plan_minor,
        "purchases_minor": bill.purchases_minor,
        "refunds_minor": bill.refunds_minor,
        "total_minor": bill.total_minor,
        "closed_at": iso(bill.closed_at),
        "created_by": bill.created_by,
        "statement_sha256": bill.statement_sha256,
    }
