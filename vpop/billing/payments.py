"""Payments: authorise (a hold on the subscriber's allowance), capture, void, refund, expire,
dispute; who may see which payment.

Every function runs in the caller's transaction (the committing helpers are in
:mod:`vpop.billing.payment_actions`) and takes ``now`` (None: the clock) so tests place
events in time. A payment's row is locked before its status is read (``SELECT ... FOR
UPDATE`` on PostgreSQL; on SQLite the caller's transaction starts with the write lock,
:func:`write_lock`), so two captures of one payment cannot both see it AUTHORISED.

Ledger keys: ``payment:ID:hold``, ``payment:ID:capture`` (posted to ``payee:P:CUR``, the rest
released), ``payment:ID:void``, ``expire:payment:ID:hold``, ``payment:ID:refund:N``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from vpop.aaa.service import Identifiers, UnknownLine, resolve
from vpop.billing.allowance import allowance_code, ensure_allowance
from vpop.billing.errors import AmountTooLarge, InsufficientFunds, PaymentState, UnknownPayment
from vpop.billing.ledger import (
    account_code,
    expire_holds,
    hold,
    open_account,
    post_hold,
    transfer,
    void_hold,
)
from vpop.billing.models import LedgerEntry
from vpop.billing.payees import payee_for_caller
from vpop.billing.payment_models import Payment, PaymentEvent
from vpop.billing.periods import period_of
from vpop.billing.schemas import AMOUNT, REASON_MAX, PaymentBody
from vpop.catalogue.service import Line, Subscriber
from vpop.core import validate
from vpop.core.audit import audit
from vpop.core.errors import BadInput
from vpop.core.settings import load_settings
from vpop.core.time import as_utc, utcnow
from vpop.selection.service import Caller

#: Roles that see every payment.
STAFF_ROLES = ("admin", "noc")
LIST_MAX = 1000


def write_lock(session: Session) -> None:
    """On SQLite, take the database's write lock now (a no-op UPDATE), so what the
    transaction reads next is current and its writes cannot fail on a stale snapshot."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("UPDATE payments SET id = id WHERE id = -1"))


def _moment(now: datetime | None) -> datetime:
    return as_utc(now) if now is not None else utcnow()


def lock_payment(session: Session, payment_id: int) -> Payment | None:
    """The payment, read afresh and locked until the transaction ends (None: no such one)."""
    query = (
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).first()


def _event(
    session: Session, payment: Payment, kind: str, amount: int, *, actor: str, at: datetime,
    ledger_key: str | None = None, note: str = "",
) -> PaymentEvent:  # fmt: skip
    event = PaymentEvent(
        payment_id=payment.id, payee_id=payment.payee_id, currency=payment.currency, kind=kind,
        amount_minor=amount, at=at, actor=actor, ledger_key=ledger_key, note=note,
    )  # fmt: skip
    session.add(event)
    session.flush()
    return event


def _line(session: Session, kind: str, value: str) -> Line | None:
    """The active line an identifier names (a subscriber: its first active line), or None."""
    if kind == "subscriber":
        if session.get(Subscriber, value) is None:
            return None
        query = select(Line).where(Line.subscriber_id == value, Line.active.is_(True))
        return session.scalars(query.order_by(Line.id).limit(1)).first()
    try:
        line = resolve(session, Identifiers.of(**{kind: value}))
    except UnknownLine:
        return None
    return line if line.active else None


def authorise(
    session: Session, caller: Caller, body: PaymentBody, *, now: datetime | None = None
) -> Payment:
    """Authorise a payment for the payee the caller acts for: a hold, or a decline.

    Declines are stored as DECLINED payments that hold nothing, with the first reason that
    applies: ``unknown_line`` (no active line, or no subscriber, matches), ``suspended``,
    ``currency`` (not the billing currency), ``limit`` (the allowance's floor refused the
    hold). An authorised payment holds its amount on the allowance of this period until
    ``now + hold_days``. Events ``authorised`` (with the amount) or ``declined`` (0, the
    reason as note).

    Raises:
        Forbidden: the caller is not an ISP or merchant token (403).
        UnknownPayee: the merchant is no longer registered.
    """
    moment = _moment(now)
    settings = load_settings()
    payee = payee_for_caller(session, caller)
    kind, value = body.identifier()
    payment = Payment(
        payee_id=payee.id, isp_id=payee.isp_id, currency=body.currency,
        amount_minor=body.amount_minor, captured_minor=0, refunded_minor=0,
        status="AUTHORISED", item=body.item, merchant_reference=body.merchant_reference,
        period=period_of(moment), identified_by=kind, created_at=moment, updated_at=moment,
        created_by=caller.name,
        source_address=value if kind == "source_address" else None,
    )  # fmt: skip
    reason: str | None = None
    line = _line(session, kind, value)
    if line is None:
        reason = "unknown_line"
    else:
        payment.subscriber_id, payment.line_id = line.subscriber_id, line.id
        if line.subscriber.suspended_at is not None:
            reason = "suspended"
        elif body.currency != settings.billing_currency:
            reason = "currency"
    if reason is not None:
        payment.status, payment.decline_reason = "DECLINED", reason
    session.add(payment)
    session.flush()
    if reason is None and line is not None:
        code = ensure_allowance(
            session, line.subscriber, payment.currency, payment.period, actor=caller.name,
            now=moment,
        )  # fmt: skip
        key, expires = f"payment:{payment.id}:hold", moment + timedelta(days=settings.hold_days)
        try:
            hold(
                session, key=key, subscriber_account=code, amount=payment.amount_minor,
                currency=payment.currency, expires_at=expires,
                reference=f"payment:{payment.id}", actor=caller.name, at=moment,
            )  # fmt: skip
        except InsufficientFunds:
            reason = "limit"
        else:
            payment.hold_key, payment.expires_at = key, expires
    if reason is not None:
        payment.status, payment.decline_reason = "DECLINED", reason
        session.flush()
        _event(session, payment, "declined", 0, actor=caller.name, at=moment, note=reason)
    else:
        session.flush()
        _event(
            session, payment, "authorised", payment.amount_minor, actor=caller.name, at=moment,
            ledger_key=payment.hold_key,
        )  # fmt: skip
    return payment


def _payees_own(session: Session, caller: Caller, payment_id: int) -> Payment:
    """The payment, locked, if the caller acts for its payee; else UnknownPayment."""
    payment = lock_payment(session, payment_id) if isinstance(payment_id, int) else None
    mine = payment is not None and (
        (caller.role == "isp" and caller.isp is not None and payment.payee_id == caller.isp)
        or (caller.role == "merchant" and payment.payee_id == caller.merchant)
    )
    if payment is None or not mine:
        raise UnknownPayment(f"no payment {payment_id!r} of yours")
    return payment


def _authorised(payment: Payment, action: str, moment: datetime) -> None:
    if payment.status != "AUTHORISED":
        raise PaymentState(
            f"payment {payment.id} is {payment.status}: only an AUTHORISED payment can be {action}"
        )
    if action == "captured" and payment.expires_at is not None and payment.expires_at <= moment:
        raise PaymentState(
            f"payment {payment.id}'s authorisation expired at {payment.expires_at.isoformat()}"
        )


def capture(
    session: Session,
    caller: Caller,
    payment_id: int,
    amount_minor: int | None = None,
    *,
    now: datetime | None = None,
) -> Payment:
    """Capture all (``amount_minor`` None) or part of an authorised payment for its payee.

    The captured amount goes to the payee's account, the rest of the hold back to the
    allowance. Events ``captured`` and, for a partial capture, ``released``.

    Raises:
        UnknownPayment: no such payment of the caller's payee.
        PaymentState: not AUTHORISED, or its authorisation expired.
        AmountTooLarge: more than authorised.
    """
    moment = _moment(now)
    payment = _payees_own(session, caller, payment_id)
    _authorised(payment, "captured", moment)
    amount = (
        payment.amount_minor if amount_minor is None else AMOUNT.check(amount_minor, "amount_minor")
    )
    if amount > payment.amount_minor:
        raise AmountTooLarge(
            f"payment {payment.id} authorised {payment.amount_minor}: cannot capture {amount}"
        )
    assert payment.hold_key is not None
    payee = open_account(session, "payee", payment.payee_id, payment.currency).code
    key = f"payment:{payment.id}:capture"
    post_hold(
        session, key=key, hold_key=payment.hold_key, payee_account=payee, amount=amount,
        reference=f"payment:{payment.id}", actor=caller.name, now=moment,
    )  # fmt: skip
    payment.status, payment.captured_minor, payment.updated_at = "CAPTURED", amount, moment
    session.flush()
    _event(session, payment, "captured", amount, actor=caller.name, at=moment, ledger_key=key)
    if amount < payment.amount_minor:
        rest = payment.amount_minor - amount
        _event(session, payment, "released", rest, actor=caller.name, at=moment, ledger_key=key)
    return payment


def void(
    session: Session, caller: Caller, payment_id: int, *, now: datetime | None = None
) -> Payment:
    """Cancel an authorised payment: the whole hold goes back to the allowance (``voided``).

    Raises:
        UnknownPayment: no such payment of the caller's payee.
        PaymentState: not AUTHORISED.
    """
    moment = _moment(now)
    payment = _payees_own(session, caller, payment_id)
    _authorised(payment, "voided", moment)
    assert payment.hold_key is not None
    key = f"payment:{payment.id}:void"
    void_hold(
        session, key=key, hold_key=payment.hold_key, reference=f"payment:{payment.id}",
        actor=caller.name,
    )  # fmt: skip
    payment.status, payment.updated_at = "VOIDED", moment
    session.flush()
    _event(
        session, payment, "voided", payment.amount_minor, actor=caller.name, at=moment,
        ledger_key=key,
    )  # fmt: skip
    return payment


def refund(
    session: Session,
    caller: Caller,
    payment_id: int,
    amount_minor: int,
    *,
    reason: str = "",
    now: datetime | None = None,
) -> Payment:
    """Refund part of a captured payment (several times; never more than captured in all).

    The payee's account is debited and the allowance of the payment's period credited
    (``payment:ID:refund:N``, N = 1, 2, ...); REFUNDED once all of it is refunded. Event
    ``refunded`` with the reason as note.

    Raises:
        UnknownPayment: no such payment of the caller's payee.
        PaymentState: never captured, or already wholly refunded.
        AmountTooLarge: more than what is left to refund.
        BadInput: a reason that is not one line of printable text.
    """
    moment = _moment(now)
    amount = AMOUNT.check(amount_minor, "amount_minor")
    note = validate.text(reason, "reason", REASON_MAX) if reason else ""
    payment = _payees_own(session, caller, payment_id)
    if payment.status != "CAPTURED":
        raise PaymentState(
            f"payment {payment.id} is {payment.status}: only a CAPTURED payment (not yet"
            " wholly refunded) can be refunded"
        )
    left = payment.captured_minor - payment.refunded_minor
    if amount > left:
        raise AmountTooLarge(
            f"payment {payment.id} has {left} left to refund: cannot refund {amount}"
        )
    assert payment.subscriber_id is not None
    done = session.scalar(
        select(func.count(PaymentEvent.id)).where(
            PaymentEvent.payment_id == payment.id, PaymentEvent.kind == "refunded"
        )
    )
    key = f"payment:{payment.id}:refund:{int(done or 0) + 1}"
    transfer(
        session, key=key, kind="refund", currency=payment.currency,
        postings=[
            (account_code("payee", payment.payee_id, payment.currency), amount),
            (allowance_code(payment.subscriber_id, payment.period, payment.currency), -amount),
        ],
        reference=f"payment:{payment.id}", actor=caller.name, at=moment,
    )  # fmt: skip
    payment.refunded_minor += amount
    if payment.refunded_minor == payment.captured_minor:
        payment.status = "REFUNDED"
    payment.updated_at = moment
    session.flush()
    _event(
        session, payment, "refunded", amount, actor=caller.name, at=moment, ledger_key=key,
        note=note,
    )  # fmt: skip
    return payment


def expire_payments(session: Session, *, now: datetime | None = None) -> list[int]:
    """Expire every AUTHORISED payment whose hold expired by ``now``: EXPIRED, the hold
    released (``expire:payment:ID:hold``), event ``expired``. Returns their ids, in order."""
    moment = _moment(now)
    write_lock(session)
    query = (
        select(Payment)
        .where(Payment.status == "AUTHORISED", Payment.expires_at <= moment)
        .order_by(Payment.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    due = list(session.scalars(query))
    if not due:
        return []
    expire_holds(session, moment, actor="system")
    keys = [payment.hold_key for payment in due]
    status = dict(
        session.execute(
            select(LedgerEntry.key, LedgerEntry.status).where(LedgerEntry.key.in_(keys))
        ).all()
    )
    expired: list[int] = []
    for payment in due:
        if payment.hold_key is None or status.get(payment.hold_key) != "expired":
            continue
        payment.status, payment.updated_at = "EXPIRED", moment
        session.flush()
        _event(
            session, payment, "expired", payment.amount_minor, actor="system", at=moment,
            ledger_key=f"expire:{payment.hold_key}",
        )  # fmt: skip
        expired.append(payment.id)
    return expired


def dispute(
    session: Session,
    subscriber_id: str,
    payment_id: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> Payment:
    """The subscriber disputes one of their captured purchases (once); audited.

    Sets ``disputed_at`` and ``dispute_reason``; event ``disputed``. NOC staff follow it up
    (the payee refunds, or not); nothing moves in the ledger by itself.

    Raises:
        UnknownPayment: not the subscriber's payment.
        PaymentState: never captured, or already disputed.
        BadInput: a reason that is not 1-500 printable characters.
    """
    moment = _moment(now)
    note = validate.text(reason, "reason", REASON_MAX)
    payment = lock_payment(session, payment_id) if isinstance(payment_id, int) else None
    if payment is None or payment.subscriber_id != subscriber_id:
        raise UnknownPayment(f"no payment {payment_id!r} of yours")
    if payment.captured_minor == 0:
        raise PaymentState(f"payment {payment.id} is {payment.status}: nothing was charged")
    if payment.disputed_at is not None:
        raise PaymentState(f"payment {payment.id} is already disputed")
    actor = f"subscriber:{subscriber_id}"
    payment.disputed_at, payment.dispute_reason, payment.updated_at = moment, note, moment
    session.flush()
    _event(session, payment, "disputed", 0, actor=actor, at=moment, note=note)
    audit(session, actor, "payment.dispute", f"payment:{payment.id}", reason=note)
    return payment


def payment_for(session: Session, caller: Caller, payment_id: int) -> Payment:
    """The payment, if the caller may see it: NOC and admin every one, an ISP token its
    ISP's (its own and its merchants'), a merchant token its own; nobody else.

    Raises:
        UnknownPayment: no such payment, or not one the caller may see (the same 404).
    """
    payment = session.get(Payment, payment_id) if isinstance(payment_id, int) else None
    visible = payment is not None and (
        caller.role in STAFF_ROLES
        or (caller.role == "isp" and caller.isp is not None and payment.isp_id == caller.isp)
        or (caller.role == "merchant" and payment.payee_id == caller.merchant)
    )
    if payment is None or not visible:
        raise UnknownPayment(f"no payment {payment_id!r}")
    return payment


def list_payments(
    session: Session,
    *,
    isp: str | None = None,
    payee: str | None = None,
    subscriber: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[Payment]:
    """Payments, newest first, filtered (``since`` included, ``until`` excluded).

    Raises:
        BadInput: a limit outside 1..1000.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_MAX:
        raise BadInput(f"limit: must be a whole number from 1 to {LIST_MAX}")
    query = select(Payment)
    for column, value in (
        (Payment.isp_id, isp), (Payment.payee_id, payee),
        (Payment.subscriber_id, subscriber), (Payment.status, status),
    ):  # fmt: skip
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(Payment.created_at >= as_utc(since))
    if until is not None:
        query = query.where(Payment.created_at < as_utc(until))
    query = query.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit)
    return list(session.scalars(query))


def events_of(session: Session, payment_id: int) -> list[PaymentEvent]:
    """The payment's history, oldest first."""
    query = select(PaymentEvent).where(PaymentEvent.payment_id == payment_id)
    return list(session.scalars(query.order_by(PaymentEvent.id)))
