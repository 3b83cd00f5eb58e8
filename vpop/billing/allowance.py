"""Spending limits: each subscriber's allowance per month, as a ledger account.

The allowance of subscriber S for period P in currency CUR is the account
``subscriber:S.P:CUR`` (floor ``debits_must_not_exceed_credits``: the database refuses an
overdraft). Its limit is granted on first use in the period (a ``spending_periods`` row and a
``limit`` entry keyed ``limit:S:CUR:P:n``: clearing +L, allowance -L), so a new month starts
with a fresh allowance. Holds are taken from it, a partial capture or a void gives the rest
back, refunds credit it again. The limit is the subscriber's
``profile["spending_limit_minor"]`` when set, else the ``spending_limit_minor`` setting;
changing it (:func:`set_spending_limit`) regrants the current period: a rise grants the
difference, a cut takes back at most what is still available, and what it could not take
back (money held then, released later) is taken back by the next authorisation before its
hold.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vpop.billing.ledger import account_code, balance, open_account, transfer
from vpop.billing.models import LedgerAccount
from vpop.billing.payment_models import Payment, SpendingPeriod
from vpop.billing.periods import period_of
from vpop.billing.schemas import LIMIT
from vpop.catalogue.service import Subscriber
from vpop.core.audit import audit
from vpop.core.errors import NotFound
from vpop.core.settings import load_settings
from vpop.core.time import as_utc, utcnow

#: The subscriber profile key that overrides the ``spending_limit_minor`` setting.
PROFILE_KEY = "spending_limit_minor"


def allowance_code(subscriber_id: str, period: str, currency: str) -> str:
    """The code of a subscriber's allowance account for one period: ``subscriber:S.P:CUR``."""
    return account_code("subscriber", f"{subscriber_id}.{period}", currency)


def subscriber_of(session: Session, subscriber_id: str) -> Subscriber:
    """The subscriber ``subscriber_id``.

    Raises:
        NotFound: ``VPOP-404-SUBSCRIBER``.
    """
    subscriber = session.get(Subscriber, subscriber_id) if isinstance(subscriber_id, str) else None
    if subscriber is None:
        raise NotFound(
            f"unknown subscriber {str(subscriber_id)[:40]!r}", code="VPOP-404-SUBSCRIBER"
        )
    return subscriber


def limit_of(subscriber: Subscriber) -> int:
    """The subscriber's limit per period: the profile's, else the setting's."""
    value = (subscriber.profile or {}).get(PROFILE_KEY)
    if isinstance(value, int) and not isinstance(value, bool) and LIMIT.low <= value <= LIMIT.high:
        return value
    return load_settings().spending_limit_minor


def _period_row(
    session: Session, subscriber_id: str, currency: str, period: str, limit: int, moment: datetime
) -> SpendingPeriod:
    """The period's row, created with ``limit`` if it is new, locked (one grant at a time)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(SpendingPeriod)
        .values(subscriber_id=subscriber_id, currency=currency, period=period, limit_minor=limit,
                granted_minor=0, changes=0, updated_at=moment, updated_by="system")
        .on_conflict_do_nothing()
    )  # fmt: skip
    query = (
        select(SpendingPeriod)
        .where(
            SpendingPeriod.subscriber_id == subscriber_id,
            SpendingPeriod.currency == currency,
            SpendingPeriod.period == period,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one()


def _regrant(
    session: Session, row: SpendingPeriod, limit: int, actor: str, moment: datetime
) -> None:
    """Bring what was granted to ``limit``: grant the rise, take back (at most what is still
    available) the cut; one ``limit`` entry each."""
    code = allowance_code(row.subscriber_id, row.period, row.currency)
    clearing = open_account(session, "clearing", None, row.currency).code
    change = limit - row.granted_minor
    if change < 0:
        change = -min(-change, max(-balance(session, code), 0))
    if change != 0:
        key = f"limit:{row.subscriber_id}:{row.currency}:{row.period}:{row.changes}"
        transfer(
            session, key=key, kind="limit", currency=row.currency,
            postings=[(clearing, change), (code, -change)],
            reference=f"subscriber:{row.subscriber_id}", actor=actor, at=moment,
        )  # fmt: skip
        row.granted_minor += change
        row.changes += 1
    row.limit_minor = limit
    row.updated_at, row.updated_by = moment, actor


def ensure_allowance(
    session: Session, subscriber: Subscriber, currency: str, period: str, *, actor: str,
    now: datetime | None = None,
) -> str:  # fmt: skip
    """Open the subscriber's allowance for ``period`` (granting the limit on first use).

    Returns:
        The allowance account's code.
    """
    moment = as_utc(now) if now is not None else utcnow()
    open_account(session, "subscriber", f"{subscriber.id}.{period}", currency)
    row = _period_row(session, subscriber.id, currency, period, limit_of(subscriber), moment)
    if row.granted_minor != row.limit_minor:  # first use, or a cut not yet fully taken back
        _regrant(session, row, row.limit_minor, actor, moment)
    return allowance_code(subscriber.id, period, currency)


def set_spending_limit(
    session: Session,
    subscriber_id: str,
    limit_minor: int,
    *,
    actor: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Set the subscriber's limit (profile, audited ``payment.limit``); regrant this period.

    Returns:
        :func:`spending` after the change.

    Raises:
        NotFound: ``VPOP-404-SUBSCRIBER``.
        BadInput: a limit outside 0..2^62.
    """
    moment = as_utc(now) if now is not None else utcnow()
    LIMIT.check(limit_minor, "limit_minor")
    subscriber = subscriber_of(session, subscriber_id)
    previous = limit_of(subscriber)
    subscriber.profile = {**(subscriber.profile or {}), PROFILE_KEY: limit_minor}
    currency, period = load_settings().billing_currency, period_of(moment)
    open_account(session, "subscriber", f"{subscriber.id}.{period}", currency)
    row = _period_row(session, subscriber.id, currency, period, limit_minor, moment)
    _regrant(session, row, limit_minor, actor, moment)
    audit(
        session, actor, "payment.limit", f"subscriber:{subscriber.id}",
        limit_minor=limit_minor, previous=previous, period=period,
    )  # fmt: skip
    session.flush()
    return spending(session, subscriber.id, now=moment)


def spending(
    session: Session, subscriber_id: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """Where the subscriber stands this period, in the billing currency.

    Returns:
        ``period, currency, limit_minor, held_minor`` (authorised, not yet captured),
        ``spent_minor`` (captured minus refunded, of this period's payments) and
        ``available_minor`` (what a new payment may still take).

    Raises:
        NotFound: ``VPOP-404-SUBSCRIBER``.
    """
    moment = as_utc(now) if now is not None else utcnow()
    subscriber = subscriber_of(session, subscriber_id)
    currency, period = load_settings().billing_currency, period_of(moment)
    row = session.get(SpendingPeriod, (subscriber.id, currency, period))
    limit = row.limit_minor if row is not None else limit_of(subscriber)
    mine = (Payment.subscriber_id == subscriber.id, Payment.period == period,
            Payment.currency == currency)  # fmt: skip
    held = session.scalar(
        select(func.coalesce(func.sum(Payment.amount_minor), 0)).where(
            *mine, Payment.status == "AUTHORISED"
        )
    )
    spent = session.scalar(
        select(func.coalesce(func.sum(Payment.captured_minor - Payment.refunded_minor), 0)).where(
            *mine
        )
    )
    code = allowance_code(subscriber.id, period, currency)
    exists = session.scalar(select(LedgerAccount.id).where(LedgerAccount.code == code))
    # a cut takes back only what was available then; the rest is taken back by the next
    # authorisation, so until then the ledger may show more than the limit leaves
    left = max(limit - int(held or 0) - int(spent or 0), 0)
    available = min(max(-balance(session, code), 0), left) if exists is not None else limit
    return {
        "subscriber": subscriber.id,
        "period": period,
        "currency": currency,
        "limit_minor": limit,
        "held_minor": int(held or 0),
        "spent_minor": int(spent or 0),
        "available_minor": available,
    }
