"""Settlement: what each payee is paid (or owes) for one period and currency, run by run.

``run_settlement`` reads the unsettled ``captured`` and ``refunded`` payment events, the
ISPs' lease charges (:mod:`vpop.billing.lease_charges`) and any balance carried from the
previous settlement, and writes one :class:`Settlement` per payee and currency with one
:class:`SettlementLine` per item, its canonical JSON statement and SHA-256, and its ledger
entries (fees and lease charges to ``revenue``, the payout from ``bank``). docs/settlements.md
gives the rules; in short:

- a run after the period's end is ``final`` (cutoff: the period's end; at most one per payee,
  currency and period; a second final run returns the stored ones); a run inside the period
  is ``interim`` (cutoff: now) and settles what no earlier run settled;
- an event settles once (unique ``settlement_lines.event_id``); an event dated before the
  period's start, or a refund of a payment whose capture an earlier period settled, is an
  ``adjustment`` line: a closed statement is never edited;
- fee per captured event: ``(amount * fee_bp + 5000) // 10000 + fee_fixed_minor`` (half up);
  refunds do not give fees back;
- net = the sum of the lines; payout = max(net, 0); a negative net is carried into the next
  settlement of the payee and currency.

Sized for a million events: the events are read once as rows (no ORM object per event),
kept in integer arrays, the statement is written in the same pass, and the lines are inserted
with Core ``executemany`` in chunks after the settlement row (rows are immutable: every total
and the statement are computed before the insert).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, select, text
from sqlalchemy.orm import Session

from vpop.billing import ledger
from vpop.billing.errors import UnknownPayee, UnknownSettlement
from vpop.billing.lease_charges import LeaseCharge, lease_charges
from vpop.billing.payees import ensure_isp_payee
from vpop.billing.payment_models import Payee, PaymentEvent, Settlement, SettlementLine
from vpop.billing.payments import STAFF_ROLES
from vpop.billing.periods import check_period, period_bounds
from vpop.billing.settlement_lines import (
    ADJUSTED,
    CAPTURE,
    CHUNK,
    REFUND,
    Events,
    Plan,
    fee_of,
    insert_lines,
    micros,
    statement_of,
)
from vpop.core.time import as_utc, utcnow
from vpop.selection.service import Caller

_ADVISORY_KEY = 0x7670_6F70_5345  # "vpopSE": one settlement run at a time on PostgreSQL


def _unsettled(cutoff: datetime, payee: str | None = None) -> Any:
    """The conditions of an event a run with ``cutoff`` settles (of ``payee``, or any)."""
    event = PaymentEvent.__table__.c
    line = SettlementLine.__table__.alias("settled")
    conditions = [
        event.kind.in_(("captured", "refunded")),
        event.at < cutoff,
        ~exists(select(1).select_from(line).where(line.c.event_id == event.id)),
    ]
    if payee is not None:
        conditions.append(event.payee_id == payee)
    return and_(*conditions)


def _read_events(
    session: Session, payee: Payee, currency: str, period: str, cutoff: datetime
) -> Events:
    """Stream the payee's unsettled events in (at, id) order into arrays, with their fees."""
    event = PaymentEvent.__table__.c
    capture = PaymentEvent.__table__.alias("capture")
    settled = SettlementLine.__table__.alias("capture_settled")
    earlier = Settlement.__table__.alias("earlier")
    refunds_settled_capture = exists(
        select(1)
        .select_from(
            capture.join(settled, settled.c.event_id == capture.c.id).join(
                earlier, earlier.c.id == settled.c.settlement_id
            )
        )
        .where(
            capture.c.payment_id == event.payment_id,
            capture.c.kind == "captured",
            earlier.c.period < period,
        )
    )
    late_refund = case((and_(event.kind == "refunded", refunds_settled_capture), 1), else_=0)
    query = (
        select(event.id, event.payment_id, event.kind, event.at, event.amount_minor, late_refund)
        .where(_unsettled(cutoff, payee.id), event.currency == currency)
        .order_by(event.at, event.id)
        .execution_options(yield_per=CHUNK)
    )
    found = Events()
    start_us = micros(period_bounds(period)[0])
    for event_id, payment_id, kind, at, amount, late in session.execute(query):
        at_us = micros(at)
        flag = CAPTURE if kind == "captured" else REFUND
        if at_us < start_us or late:
            flag |= ADJUSTED
        found.ids.append(event_id)
        found.payments.append(payment_id)
        found.ats.append(at_us)
        found.amounts.append(amount)
        found.fees.append(
            fee_of(amount, payee.fee_bp, payee.fee_fixed_minor) if flag & CAPTURE else 0
        )
        found.flags.append(flag)
    return found


def _post(session: Session, settlement: Settlement, *, actor: str, now: datetime) -> None:
    """The settlement's ledger entries: fees and lease to revenue, the payout from the bank."""
    cur = settlement.currency
    payee_code = ledger.open_account(session, "payee", settlement.payee_id, cur).code
    revenue = ledger.open_account(session, "revenue", None, cur).code
    bank = ledger.open_account(session, "bank", None, cur).code
    entries = (
        ("fee", "fee", revenue, settlement.fees_minor),
        ("lease", "settlement", revenue, settlement.lease_minor),
        ("payout", "settlement", bank, settlement.payout_minor),
    )
    for name, kind, other, amount in entries:
        if amount > 0:
            ledger.transfer(
                session, key=f"settlement:{settlement.id}:{name}", kind=kind, currency=cur,
                postings=[(payee_code, amount), (other, -amount)],
                reference=f"settlement {settlement.id}", actor=actor, at=now,
            )  # fmt: skip


def _write(session: Session, plan: Plan, *, actor: str, now: datetime) -> Settlement:
    """Compute the statement, insert the settlement, then its lines and ledger entries."""
    statement = statement_of(plan)
    t = plan.totals
    settlement = Settlement(
        payee_id=plan.payee.id, currency=plan.currency, period=plan.period, seq=plan.seq,
        kind=plan.kind, cutoff=plan.cutoff, created_at=now, created_by=actor,
        captured_minor=t.captured, refunded_minor=t.refunded, fees_minor=t.fees,
        lease_minor=t.lease, adjustments_minor=t.adjustments, carried_in_minor=t.carried_in,
        net_minor=t.net, payout_minor=max(t.net, 0), lines_count=t.lines,
        statement_json=statement,
        statement_sha256=hashlib.sha256(statement.encode("utf-8")).hexdigest(),
    )  # fmt: skip
    session.add(settlement)
    session.flush()
    insert_lines(session, plan, settlement.id)
    written = session.scalar(
        select(func.count()).where(SettlementLine.settlement_id == settlement.id)
    )
    if written != t.lines:  # the statement and the lines come from one read: never differ
        raise AssertionError(f"settlement {settlement.id}: {written} lines, {t.lines} stated")
    _post(session, settlement, actor=actor, now=now)
    return settlement


def _serialise(session: Session) -> None:
    """One settlement run at a time: PostgreSQL advisory lock, SQLite's write lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})
    else:
        session.execute(text("UPDATE settlements SET seq = seq WHERE id = -1"))


def _carried(session: Session, payee_id: str, currency: str) -> dict[str, Any] | None:
    """The previous settlement's negative net, as a carried line; None when nothing is owed."""
    previous = session.scalars(
        select(Settlement)
        .where(Settlement.payee_id == payee_id, Settlement.currency == currency)
        .order_by(Settlement.id.desc())
        .limit(1)
    ).first()
    if previous is None or previous.net_minor >= 0:
        return None
    return {
        "at": as_utc(previous.cutoff),
        "amount": previous.net_minor,
        "description": f"carried from settlement {previous.id} ({previous.period}"
        f" #{previous.seq}, {previous.kind})",
    }


def _candidates(
    session: Session, period: str, cutoff: datetime, final: bool, payee: str | None
) -> tuple[set[tuple[str, str]], list[LeaseCharge]]:
    """The (payee, currency) pairs with unsettled events, lease charges or a carried debt."""
    event = PaymentEvent.__table__.c
    query = select(event.payee_id, event.currency).where(_unsettled(cutoff, payee))
    pairs = {(row[0], row[1]) for row in session.execute(query.distinct())}
    charges: list[LeaseCharge] = []
    if final:
        payee_row = None if payee is None else session.get(Payee, payee)
        if payee_row is None or payee_row.kind == "isp":
            charges = lease_charges(session, period, isp=payee)
        for charge in charges:
            ensure_isp_payee(session, charge.isp_id)
            pairs.add((charge.isp_id, charge.currency))
        latest = (
            select(func.max(Settlement.id))
            .group_by(Settlement.payee_id, Settlement.currency)
            .scalar_subquery()
        )
        owing = select(Settlement.payee_id, Settlement.currency).where(
            Settlement.id.in_(latest), Settlement.net_minor < 0
        )
        if payee is not None:
            owing = owing.where(Settlement.payee_id == payee)
        pairs |= {(row[0], row[1]) for row in session.execute(owing)}
    return pairs, charges


def run_settlement(
    session: Session,
    period: str,
    *,
    payee: str | None = None,
    now: datetime | None = None,
    actor: str,
) -> list[Settlement]:
    """Settle ``period`` for every payee and currency (or one payee) that has anything.

    After the period's end the run is ``final`` (cutoff: the period's end) and returns the
    stored final settlements of pairs already settled; inside the period it is ``interim``
    (cutoff: ``now``) and settles what came since the last run. Runs in the caller's
    transaction; runs are serialised (an advisory lock on PostgreSQL).

    Args:
        session: An open session; the caller commits.
        period: ``YYYY-MM``; it must have started by ``now``.
        payee: Only this payee (an ISP's payee also gets its lease charges).
        now: The run's moment (default: now).
        actor: Who runs it (recorded on the settlements and ledger entries).

    Returns:
        The period's settlements of this run (and the stored finals), by payee and currency.

    Raises:
        PeriodInvalid: malformed, or not started yet.
        UnknownPayee: ``payee`` is not a payee.
    """
    moment = as_utc(now) if now is not None else utcnow()
    check_period(period, moment)
    _, end = period_bounds(period)
    final = moment >= end
    cutoff = end if final else moment
    if payee is not None and session.get(Payee, payee) is None:
        raise UnknownPayee(f"unknown payee {payee!r}")
    _serialise(session)
    pairs, charges = _candidates(session, period, cutoff, final, payee)
    done: dict[tuple[str, str], Settlement] = {}
    if final:
        stored = select(Settlement).where(Settlement.period == period, Settlement.kind == "final")
        if payee is not None:
            stored = stored.where(Settlement.payee_id == payee)
        done = {(row.payee_id, row.currency): row for row in session.scalars(stored)}
    for payee_id, currency in sorted(pairs - set(done)):
        written = _settle_pair(
            session, payee_id, currency, period=period, cutoff=cutoff,
            final=final, charges=charges, actor=actor, now=moment,
        )  # fmt: skip
        if written is not None:
            done[(payee_id, currency)] = written
    return [done[pair] for pair in sorted(done)]


def _settle_pair(
    session: Session, payee_id: str, currency: str, *, period: str,
    cutoff: datetime, final: bool, charges: Sequence[LeaseCharge], actor: str, now: datetime,
) -> Settlement | None:  # fmt: skip
    """Write the settlement of one payee and currency, or nothing when nothing is due."""
    payee = session.get(Payee, payee_id)
    if payee is None:  # an event of a payee that was never registered cannot be paid
        raise UnknownPayee(f"payment events name an unknown payee {payee_id!r}")
    events = _read_events(session, payee, currency, period, cutoff)
    leases = [c for c in charges if c.isp_id == payee_id and c.currency == currency]
    leases = leases if payee.kind == "isp" else []
    carried = _carried(session, payee_id, currency)
    if not events.ids and not leases and not (final and carried is not None):
        return None
    last_seq = session.scalar(
        select(func.max(Settlement.seq)).where(
            Settlement.payee_id == payee_id,
            Settlement.currency == currency,
            Settlement.period == period,
        )
    )
    plan = Plan(
        payee=payee, currency=currency, period=period, seq=(last_seq or 0) + 1,
        kind="final" if final else "interim", cutoff=cutoff, events=events, carried=carried,
        leases=leases,
    )  # fmt: skip
    return _write(session, plan, actor=actor, now=now)


def list_settlements(
    session: Session,
    *,
    period: str | None = None,
    payee: str | None = None,
    isp: str | None = None,
) -> list[Settlement]:
    """Settlements, by period, payee, currency and run; filtered by each argument given.

    ``isp`` keeps the settlements of that ISP's payee and of its merchants.

    Raises:
        PeriodInvalid: ``period`` is not ``YYYY-MM``.
    """
    query = select(Settlement)
    if period is not None:
        period_bounds(period)
        query = query.where(Settlement.period == period)
    if payee is not None:
        query = query.where(Settlement.payee_id == payee)
    if isp is not None:
        query = query.join(Payee, Payee.id == Settlement.payee_id).where(Payee.isp_id == isp)
    order = (Settlement.period, Settlement.payee_id, Settlement.currency, Settlement.seq)
    return list(session.scalars(query.order_by(*order)))


def settlement_for(session: Session, caller: Caller, settlement_id: int) -> Settlement:
    """The settlement, if the caller may read it: NOC and admin every one, an ISP token its
    ISP's payee's and its merchants', a merchant token its own; nobody else (as
    :func:`~vpop.billing.payments.payment_for` for payments).

    Raises:
        UnknownSettlement: no such settlement, or not one the caller may read (the same 404,
            so that ids cannot be probed).
    """
    # an id beyond a database integer names nothing
    found = session.get(Settlement, settlement_id) if settlement_id < 2**63 else None
    if found is None or not _may_read(session, caller, found.payee_id):
        raise UnknownSettlement(f"unknown settlement {settlement_id}")
    return found


def _may_read(session: Session, caller: Caller, payee_id: str) -> bool:
    if caller.role in STAFF_ROLES:
        return True
    if caller.role == "merchant":
        return caller.merchant is not None and payee_id == caller.merchant
    if caller.role != "isp" or caller.isp is None:
        return False
    payee = session.get(Payee, payee_id)
    return payee is not None and payee.isp_id == caller.isp
