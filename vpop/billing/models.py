"""The ledger tables: accounts, immutable entries and their postings (double entry).

An **account** (``ledger_accounts``) is named by its ``code``: ``{kind}:{owner}:{CUR}`` for a
subscriber's or a payee's account (``subscriber:sub1:EUR``, ``payee:isp-b:EUR``) and
``{kind}:{CUR}`` for the routing centre's own (``holds:EUR``, ``revenue:EUR``,
``clearing:EUR``, ``bank:EUR``). One currency per account. Its ``floor`` is TigerBeetle's
account flag: ``debits_must_not_exceed_credits`` (the balance may not go above zero: a credit
balance such as a spending limit or the money held), ``credits_must_not_exceed_debits`` (the
balance may not go below zero) or ``none``.

An **entry** (``ledger_entries``) is one business action, named by its idempotency ``key``
(``capture:42``); its **postings** (``ledger_postings``) move ``amount`` minor units on one
account each: **a debit is positive, a credit negative**, and the postings of an entry sum to
zero. An account's balance is the sum of its postings (debits minus credits). The accounts
also keep ``debits`` and ``credits``, the sums of their positive and (negated) negative
postings, updated in the entry's transaction under the account's row lock: the floor is a
CHECK on them, so the database refuses an overdraft whatever the code does, and
:func:`vpop.billing.ledger.check_balances` proves the cache equals the postings.

A **hold** is an entry of kind ``hold`` with a ``status``: ``pending`` until one entry of kind
``post``, ``void`` or ``expire`` resolves it (``linked_to`` names the hold; a partial unique
index lets only one such entry name a hold). Entries and postings are never updated or deleted
(the database refuses it with triggers), except a hold's status leaving ``pending``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DDL,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from vpop.core.db import Base, UTCDateTime
from vpop.core.time import utcnow

#: Kinds of account; the first two have an owner (a subscriber or a payee id).
ACCOUNT_KINDS = ("subscriber", "payee", "holds", "revenue", "clearing", "bank")
OWNED_KINDS = ("subscriber", "payee")
#: Floors (TigerBeetle's account flags).
DEBITS_WITHIN_CREDITS = "debits_must_not_exceed_credits"
CREDITS_WITHIN_DEBITS = "credits_must_not_exceed_debits"
FLOORS = (DEBITS_WITHIN_CREDITS, CREDITS_WITHIN_DEBITS, "none")
#: The largest amount a posting, an entry or an account's sums may hold (64-bit columns).
MAX_AMOUNT = 2**63 - 1
#: The floor an account gets when ``vpop.billing.ledger.open_account`` is not told one.
DEFAULT_FLOORS = {
    "subscriber": DEBITS_WITHIN_CREDITS,  # a spending limit: debits up to what was granted
    "holds": DEBITS_WITHIN_CREDITS,  # never release more than is held
    "payee": "none",  # netted against what the payee owes: may change sign
    "revenue": "none",
    "clearing": "none",
    "bank": "none",
}
#: Entries that resolve a pending hold (at most one per hold).
RESOLVING_KINDS = ("post", "void", "expire")
#: Kinds of entry.
ENTRY_KINDS = (
    "transfer",
    "hold",
    *RESOLVING_KINDS,
    "capture",
    "refund",
    "fee",
    "settlement",
    "adjustment",
    "limit",
)
#: A hold's status; other entries have none.
HOLD_STATUSES = ("pending", "posted", "voided", "expired")

CURRENCY_CHECK = "length(currency) = 3 AND upper(currency) = currency"
RESOLVES_WHERE = "linked_to IS NOT NULL AND kind IN ('post', 'void', 'expire')"


class LedgerAccount(Base):
    """One account of one currency; its balance is the sum of its postings."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("id", "currency", name="uq_ledger_accounts_id_currency"),
        CheckConstraint(CURRENCY_CHECK, name="ck_ledger_accounts_currency"),
        CheckConstraint(
            "kind IN ('subscriber', 'payee', 'holds', 'revenue', 'clearing', 'bank')",
            name="ck_ledger_accounts_kind",
        ),
        CheckConstraint("debits >= 0 AND credits >= 0", name="ck_ledger_accounts_sums"),
        CheckConstraint(
            f"floor <> '{DEBITS_WITHIN_CREDITS}' OR debits <= credits",
            name="ck_ledger_accounts_debit_floor",
        ),
        CheckConstraint(
            f"floor <> '{CREDITS_WITHIN_DEBITS}' OR credits <= debits",
            name="ck_ledger_accounts_credit_floor",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(64), default=None)
    currency: Mapped[str] = mapped_column(String(3))
    floor: Mapped[str] = mapped_column(String(32), default="none")
    # cached sums of the postings (positive debits, negated credits), kept under the row lock
    debits: Mapped[int] = mapped_column(BigInteger, default=0)
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LedgerEntry(Base):
    """One immutable business action (a transfer, a hold or its resolution)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("id", "currency", name="uq_ledger_entries_id_currency"),
        CheckConstraint(CURRENCY_CHECK, name="ck_ledger_entries_currency"),
        CheckConstraint("amount > 0", name="ck_ledger_entries_amount"),
        CheckConstraint(
            "(kind = 'hold' AND status IN ('pending', 'posted', 'voided', 'expired'))"
            " OR (kind <> 'hold' AND status IS NULL)",
            name="ck_ledger_entries_status",
        ),
        CheckConstraint(
            "kind NOT IN ('post', 'void', 'expire') OR linked_to IS NOT NULL",
            name="ck_ledger_entries_resolves",
        ),
        Index("ix_ledger_entries_status_expires", "status", "expires_at"),
        Index(
            "uq_ledger_entries_resolves",
            "linked_to",
            unique=True,
            sqlite_where=text(RESOLVES_WHERE),
            postgresql_where=text(RESOLVES_WHERE),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    # what the entry moves: a transfer's debits, the amount held, posted, or released
    amount: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    reference: Mapped[str] = mapped_column(String(200), default="")
    linked_to: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"), default=None)
    status: Mapped[str | None] = mapped_column(String(8), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_by: Mapped[str] = mapped_column(String(100))


class LedgerPosting(Base):
    """One leg of an entry: ``amount`` on one account, debit positive, credit negative."""

    __tablename__ = "ledger_postings"
    __table_args__ = (
        # the posting's currency is its entry's and its account's: one currency per entry
        ForeignKeyConstraint(
            ["entry_id", "currency"],
            ["ledger_entries.id", "ledger_entries.currency"],
            name="fk_ledger_postings_entry",
        ),
        ForeignKeyConstraint(
            ["account_id", "currency"],
            ["ledger_accounts.id", "ledger_accounts.currency"],
            name="fk_ledger_postings_account",
        ),
        UniqueConstraint("entry_id", "account_id", name="uq_ledger_postings_entry_account"),
        CheckConstraint("amount <> 0", name="ck_ledger_postings_amount"),
        Index("ix_ledger_postings_account", "account_id", "entry_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)


# Immutability and balance, in the database. The migration (0009) runs the same statements.
SQLITE_TRIGGERS = (
    "CREATE TRIGGER ledger_postings_immutable BEFORE UPDATE ON ledger_postings"
    " BEGIN SELECT RAISE(ABORT, 'ledger postings are immutable'); END",
    "CREATE TRIGGER ledger_postings_kept BEFORE DELETE ON ledger_postings"
    " BEGIN SELECT RAISE(ABORT, 'ledger postings are never deleted'); END",
    "CREATE TRIGGER ledger_entries_kept BEFORE DELETE ON ledger_entries"
    " BEGIN SELECT RAISE(ABORT, 'ledger entries are never deleted'); END",
    "CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE ON ledger_entries"
    " WHEN OLD.status IS NOT 'pending' OR NEW.status = 'pending'"
    " OR NEW.key IS NOT OLD.key OR NEW.kind IS NOT OLD.kind"
    " OR NEW.currency IS NOT OLD.currency OR NEW.amount IS NOT OLD.amount"
    " OR NEW.linked_to IS NOT OLD.linked_to OR NEW.reference IS NOT OLD.reference"
    " BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END",
)
POSTGRESQL_TRIGGERS = (
    """CREATE FUNCTION ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' rows are immutable'; END $$""",
    "CREATE TRIGGER ledger_postings_immutable BEFORE UPDATE OR DELETE ON ledger_postings"
    " FOR EACH ROW EXECUTE FUNCTION ledger_refuse()",
    "CREATE TRIGGER ledger_entries_kept BEFORE DELETE ON ledger_entries"
    " FOR EACH ROW EXECUTE FUNCTION ledger_refuse()",
    "CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE ON ledger_entries FOR EACH ROW"
    " WHEN (OLD.status IS DISTINCT FROM 'pending' OR NEW.status = 'pending'"
    " OR (NEW.key, NEW.kind, NEW.currency, NEW.amount, NEW.reference)"
    " IS DISTINCT FROM (OLD.key, OLD.kind, OLD.currency, OLD.amount, OLD.reference)"
    " OR NEW.linked_to IS DISTINCT FROM OLD.linked_to)"
    " EXECUTE FUNCTION ledger_refuse()",
    # an entry's postings sum to zero when its transaction commits
    """CREATE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE total numeric; legs integer;
BEGIN
  SELECT coalesce(sum(amount), 0), count(*) INTO total, legs
    FROM ledger_postings WHERE entry_id = NEW.entry_id;
  IF total <> 0 OR legs < 2 THEN
    RAISE EXCEPTION USING MESSAGE = 'ledger entry ' || NEW.entry_id || ' is unbalanced';
  END IF;
  RETURN NULL;
END $$""",
    "CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced()",
)

for _statement in SQLITE_TRIGGERS:
    event.listen(
        LedgerPosting.__table__,
        "after_create",
        DDL(_statement).execute_if(dialect="sqlite"),  # type: ignore[no-untyped-call]
    )
for _statement in POSTGRESQL_TRIGGERS:
    event.listen(
        LedgerPosting.__table__,
        "after_create",
        DDL(_statement).execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
    )
