"""The payment tables: payees, payments and their history, idempotency, allowances,
settlements with their lines, subscriber bills and direct-debit mandates.

Money is an integer of minor units beside its ISO 4217 currency, 64-bit. What the database
can hold it holds: amounts within their bounds (``0 <= refunded <= captured <= amount``), an
event settled at most once (unique ``settlement_lines.event_id``), a lease charge at most once
per version and period (unique ``charge_key``), one final settlement per payee, currency and
period (partial unique index), one bill per subscriber, period and currency, one stored answer
per idempotency key and caller. Payment events, settlements, their lines and bills are never
updated or deleted (triggers, created by migration 0010 and by :data:`IMMUTABLE_TABLES` for
``create_all``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from vpop.core.db import Base, UTCDateTime
from vpop.core.time import utcnow

PAYEE_KINDS = ("isp", "merchant")
#: A payment's status. DECLINED is final and holds nothing; AUTHORISED holds the amount;
#: CAPTURED (possibly partly refunded) and REFUNDED (wholly) after a capture; VOIDED and
#: EXPIRED released the hold.
PAYMENT_STATUSES = ("AUTHORISED", "DECLINED", "CAPTURED", "VOIDED", "EXPIRED", "REFUNDED")
DECLINE_REASONS = ("unknown_line", "limit", "suspended", "currency")
#: Kinds of payment event (the payment's history; settlements read captured and refunded).
EVENT_KINDS = (
    "authorised", "declined", "captured", "released", "voided", "expired", "refunded",
    "disputed",
)  # fmt: skip
SETTLEMENT_KINDS = ("interim", "final")
LINE_KINDS = ("capture", "refund", "fee", "lease", "carried")

_STATUSES_SQL = ", ".join(f"'{s}'" for s in PAYMENT_STATUSES)
_REASONS_SQL = ", ".join(f"'{r}'" for r in DECLINE_REASONS)
_EVENTS_SQL = ", ".join(f"'{k}'" for k in EVENT_KINDS)
_LINES_SQL = ", ".join(f"'{k}'" for k in LINE_KINDS)
CURRENCY_CHECK = "length(currency) = 3 AND upper(currency) = currency"
PERIOD_CHECK = "length(period) = 7"


class Payee(Base):
    """Who is paid: an ISP (its payee id is the ISP's id) or a merchant registered under one.

    The routing centre keeps ``fee_bp`` basis points (1/100 of a percent, rounded half up per
    captured payment) plus ``fee_fixed_minor`` per captured payment. ``iban``/``bic`` are
    where the payout goes (checked with schwifty); ``callback_url`` receives the signed
    payment callbacks.
    """

    __tablename__ = "payees"
    __table_args__ = (
        CheckConstraint("kind IN ('isp', 'merchant')", name="ck_payees_kind"),
        CheckConstraint("kind = 'merchant' OR id = isp_id", name="ck_payees_isp_is_itself"),
        CheckConstraint("fee_bp >= 0 AND fee_bp <= 10000", name="ck_payees_fee_bp"),
        CheckConstraint("fee_fixed_minor >= 0", name="ck_payees_fee_fixed"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    iban: Mapped[str | None] = mapped_column(String(34), default=None)
    bic: Mapped[str | None] = mapped_column(String(11), default=None)
    fee_bp: Mapped[int] = mapped_column(Integer, default=0)
    fee_fixed_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    callback_url: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Payment(Base):
    """One requested payment: who pays (a subscriber, found by the line), whom, how much."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_payments_amount"),
        CheckConstraint(
            "captured_minor >= 0 AND captured_minor <= amount_minor", name="ck_payments_captured"
        ),
        CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= captured_minor",
            name="ck_payments_refunded",
        ),
        CheckConstraint(f"status IN ({_STATUSES_SQL})", name="ck_payments_status"),
        CheckConstraint(
            f"(status = 'DECLINED' AND decline_reason IN ({_REASONS_SQL}))"
            " OR (status <> 'DECLINED' AND decline_reason IS NULL)",
            name="ck_payments_decline_reason",
        ),
        CheckConstraint(
            "status = 'DECLINED' OR subscriber_id IS NOT NULL", name="ck_payments_subscriber"
        ),
        CheckConstraint(CURRENCY_CHECK, name="ck_payments_currency"),
        Index("ix_payments_isp_created", "isp_id", "created_at"),
        # the expiry check (every minute) reads only the authorised payments due
        Index("ix_payments_status_expires", "status", "expires_at"),
        # the NOC's list, newest first: a page walks the index, not a sort of the table
        Index("ix_payments_created", "created_at"),
        Index("ix_payments_subscriber_created", "subscriber_id", "created_at"),
        Index("ix_payments_payee_status", "payee_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payee_id: Mapped[str] = mapped_column(ForeignKey("payees.id"))
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    subscriber_id: Mapped[str | None] = mapped_column(String(32), default=None)
    line_id: Mapped[int | None] = mapped_column(Integer, default=None)
    identified_by: Mapped[str | None] = mapped_column(String(20), default=None)
    source_address: Mapped[str | None] = mapped_column(String(64), default=None)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    captured_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16))
    decline_reason: Mapped[str | None] = mapped_column(String(16), default=None)
    item: Mapped[str] = mapped_column(String(200))
    merchant_reference: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM of the allowance it counts on
    hold_key: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_by: Mapped[str] = mapped_column(String(100))
    disputed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    dispute_reason: Mapped[str | None] = mapped_column(String(500), default=None)


class PaymentEvent(Base):
    """One change of a payment, never updated or deleted: its history and what settles.

    ``amount_minor`` is what the event moved (authorised, captured, released, refunded);
    ``payee_id`` and ``currency`` repeat the payment's so a settlement reads events alone.
    """

    __tablename__ = "payment_events"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_EVENTS_SQL})", name="ck_payment_events_kind"),
        CheckConstraint("amount_minor >= 0", name="ck_payment_events_amount"),
        Index("ix_payment_events_settle", "payee_id", "currency", "kind", "at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    payee_id: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    ledger_key: Mapped[str | None] = mapped_column(String(200), default=None)
    note: Mapped[str] = mapped_column(String(500), default="")


class BillingRequest(Base):
    """The stored answer to an idempotent call: same caller + key replays it."""

    __tablename__ = "billing_requests"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_billing_requests_scope_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(100))  # the caller, e.g. "token:7"
    key: Mapped[str] = mapped_column(String(200))
    operation: Mapped[str] = mapped_column(String(100))  # "capture:42"
    request_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)  # the JSON body, as sent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SpendingPeriod(Base):
    """A subscriber's allowance for one period: the limit granted to the period's account."""

    __tablename__ = "spending_periods"
    __table_args__ = (
        CheckConstraint("limit_minor >= 0", name="ck_spending_periods_limit"),
        CheckConstraint(PERIOD_CHECK, name="ck_spending_periods_period"),
    )
    subscriber_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    limit_minor: Mapped[int] = mapped_column(BigInteger)
    granted_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    changes: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100), default="system")


class Settlement(Base):
    """What one payee is paid (or owes) for one currency and period, run by run.

    A run for a month that has ended is ``final`` (at most one); a run inside the month is
    ``interim`` and settles what happened up to its ``cutoff``. ``net_minor`` may be negative
    (the payee owes more than it earned): nothing is paid and it is carried into the next run.
    """

    __tablename__ = "settlements"
    __table_args__ = (
        UniqueConstraint("payee_id", "currency", "period", "seq", name="uq_settlements_run"),
        CheckConstraint("kind IN ('interim', 'final')", name="ck_settlements_kind"),
        CheckConstraint(CURRENCY_CHECK, name="ck_settlements_currency"),
        CheckConstraint(PERIOD_CHECK, name="ck_settlements_period"),
        CheckConstraint("payout_minor >= 0", name="ck_settlements_payout"),
        Index(
            "uq_settlements_final",
            "payee_id",
            "currency",
            "period",
            unique=True,
            sqlite_where=text("kind = 'final'"),
            postgresql_where=text("kind = 'final'"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payee_id: Mapped[str] = mapped_column(ForeignKey("payees.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    period: Mapped[str] = mapped_column(String(7))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    captured_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    fees_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    adjustments_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    carried_in_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    net_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    payout_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    lines_count: Mapped[int] = mapped_column(Integer, default=0)
    statement_json: Mapped[str] = mapped_column(Text, default="")
    statement_sha256: Mapped[str] = mapped_column(String(64), default="")


class SettlementLine(Base):
    """One line of a settlement's statement; amounts signed: + owed to the payee."""

    __tablename__ = "settlement_lines"
    __table_args__ = (
        UniqueConstraint("settlement_id", "line_no", name="uq_settlement_lines_no"),
        CheckConstraint(f"kind IN ({_LINES_SQL})", name="ck_settlement_lines_kind"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    event_id: Mapped[int | None] = mapped_column(Integer, unique=True, default=None)
    charge_key: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    payment_id: Mapped[int | None] = mapped_column(Integer, default=None)
    lease_id: Mapped[int | None] = mapped_column(Integer, default=None)
    lease_version: Mapped[int | None] = mapped_column(Integer, default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    description: Mapped[str] = mapped_column(String(300), default="")
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    adjustment: Mapped[bool] = mapped_column(Boolean, default=False)


class Bill(Base):
    """A subscriber's closed bill for one period and currency (the running bill is computed)."""

    __tablename__ = "bills"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "period", "currency", name="uq_bills_period"),
        CheckConstraint(CURRENCY_CHECK, name="ck_bills_currency"),
        CheckConstraint(PERIOD_CHECK, name="ck_bills_period"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[str] = mapped_column(String(32), index=True)
    period: Mapped[str] = mapped_column(String(7))
    currency: Mapped[str] = mapped_column(String(3))
    plan_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    purchases_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    statement_json: Mapped[str] = mapped_column(Text, default="")
    statement_sha256: Mapped[str] = mapped_column(String(64), default="")
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))


class Mandate(Base):
    """A subscriber's SEPA direct-debit mandate: their bills are collected by pain.008."""

    __tablename__ = "mandates"
    subscriber_id: Mapped[str] = mapped_column(ForeignKey("subscribers.id"), primary_key=True)
    mandate_id: Mapped[str] = mapped_column(String(35), unique=True)
    name: Mapped[str] = mapped_column(String(70))
    iban: Mapped[str] = mapped_column(String(34))
    bic: Mapped[str | None] = mapped_column(String(11), default=None)
    signed_on: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class PayoutFile(Base):
    """A pain.001 file made for a period: the bank instruction, kept byte for byte.

    Each settlement it pays is named once in ``payout_items`` (unique settlement): a second
    ``payout`` of the same period pays only settlements no earlier file paid.
    """

    __tablename__ = "payout_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    message_id: Mapped[str] = mapped_column(String(35), unique=True)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    xml: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))


class PayoutItem(Base):
    """A settlement paid by a payout file (at most one file per settlement)."""

    __tablename__ = "payout_items"
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"), primary_key=True)
    payout_file_id: Mapped[int] = mapped_column(ForeignKey("payout_files.id"), index=True)


#: Tables whose rows are never updated or deleted once written.
IMMUTABLE_TABLES = ("payment_events", "settlements", "settlement_lines", "bills")


def immutable_sqlite(table: str) -> tuple[str, str]:
    """SQLite triggers refusing updates and deletes of ``table``."""
    return (
        f"CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table}"
        f" BEGIN SELECT RAISE(ABORT, '{table} rows are immutable'); END",
        f"CREATE TRIGGER {table}_kept BEFORE DELETE ON {table}"
        f" BEGIN SELECT RAISE(ABORT, '{table} rows are never deleted'); END",
    )


PG_IMMUTABLE_FUNCTION = (
    "CREATE OR REPLACE FUNCTION vpop_billing_immutable() RETURNS trigger AS $$"
    " BEGIN RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' rows are immutable'; END $$"
    " LANGUAGE plpgsql"
)


def immutable_pg(table: str) -> str:
    """The PostgreSQL trigger refusing updates and deletes of ``table``."""
    return (
        f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION vpop_billing_immutable()"
    )


_TABLES = {
    "payment_events": PaymentEvent,
    "settlements": Settlement,
    "settlement_lines": SettlementLine,
    "bills": Bill,
}
for _name, _model in _TABLES.items():
    for _statement in immutable_sqlite(_name):
        event.listen(
            _model.__table__,
            "after_create",
            DDL(_statement).execute_if(dialect="sqlite"),  # type: ignore[no-untyped-call]
        )
    for _statement in (PG_IMMUTABLE_FUNCTION, immutable_pg(_name)):
        event.listen(
            _model.__table__,
            "after_create",
            DDL(_statement).execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
        )
