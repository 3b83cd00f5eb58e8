"""ledger: accounts, immutable entries and their postings (double entry)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 19:00:00

The billing ledger (docs/ledger.md): accounts with a floor and cached sums the database
checks, entries named by a unique idempotency key (a hold resolves once: a partial unique
index), postings whose currency is their entry's and their account's (composite foreign
keys). Triggers refuse updates and deletes of entries and postings (a hold's status may only
leave ``pending``); on PostgreSQL a deferred constraint trigger refuses an unbalanced entry at
commit.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
CURRENCY = "length(currency) = 3 AND upper(currency) = currency"
RESOLVES = "linked_to IS NOT NULL AND kind IN ('post', 'void', 'expire')"
DEBITS_WITHIN_CREDITS = "debits_must_not_exceed_credits"
CREDITS_WITHIN_DEBITS = "credits_must_not_exceed_debits"

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


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("floor", sa.String(length=32), nullable=False),
        sa.Column("debits", sa.BigInteger(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.CheckConstraint(CURRENCY, name="ck_ledger_accounts_currency"),
        sa.CheckConstraint(
            "kind IN ('subscriber', 'payee', 'holds', 'revenue', 'clearing', 'bank')",
            name="ck_ledger_accounts_kind",
        ),
        sa.CheckConstraint("debits >= 0 AND credits >= 0", name="ck_ledger_accounts_sums"),
        sa.CheckConstraint(
            f"floor <> '{DEBITS_WITHIN_CREDITS}' OR debits <= credits",
            name="ck_ledger_accounts_debit_floor",
        ),
        sa.CheckConstraint(
            f"floor <> '{CREDITS_WITHIN_DEBITS}' OR credits <= debits",
            name="ck_ledger_accounts_credit_floor",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
        sa.UniqueConstraint("id", "currency", name="uq_ledger_accounts_id_currency"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("linked_to", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=True),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.CheckConstraint(CURRENCY, name="ck_ledger_entries_currency"),
        sa.CheckConstraint("amount > 0", name="ck_ledger_entries_amount"),
        sa.CheckConstraint(
            "(kind = 'hold' AND status IN ('pending', 'posted', 'voided', 'expired'))"
            " OR (kind <> 'hold' AND status IS NULL)",
            name="ck_ledger_entries_status",
        ),
        sa.CheckConstraint(
            "kind NOT IN ('post', 'void', 'expire') OR linked_to IS NOT NULL",
            name="ck_ledger_entries_resolves",
        ),
        sa.ForeignKeyConstraint(["linked_to"], ["ledger_entries.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sa.UniqueConstraint("id", "currency", name="uq_ledger_entries_id_currency"),
    )
    op.create_index("ix_ledger_entries_status_expires", "ledger_entries", ["status", "expires_at"])
    op.create_index(
        "uq_ledger_entries_resolves",
        "ledger_entries",
        ["linked_to"],
        unique=True,
        sqlite_where=sa.text(RESOLVES),
        postgresql_where=sa.text(RESOLVES),
    )
    op.create_table(
        "ledger_postings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount <> 0", name="ck_ledger_postings_amount"),
        sa.ForeignKeyConstraint(
            ["entry_id", "currency"],
            ["ledger_entries.id", "ledger_entries.currency"],
            name="fk_ledger_postings_entry",
        ),
        sa.ForeignKeyConstraint(
            ["account_id", "currency"],
            ["ledger_accounts.id", "ledger_accounts.currency"],
            name="fk_ledger_postings_account",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_id", "account_id", name="uq_ledger_postings_entry_account"),
    )
    op.create_index("ix_ledger_postings_account", "ledger_postings", ["account_id", "entry_id"])
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}.get(
        dialect, ()
    ):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_postings_balanced ON ledger_postings")
    op.drop_index("ix_ledger_postings_account", table_name="ledger_postings")
    op.drop_table("ledger_postings")
    op.drop_index("uq_ledger_entries_resolves", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_status_expires", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("ledger_accounts")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_entry_balanced()")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse()")
