"""money and counters as 64-bit integers

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 06:40:00

Prices in minor units and counts were 32-bit columns: a lease priced above 2^31-1 minor
units passed validation and PostgreSQL refused it with a 500. Every money and counter column
is now 64-bit (SQLite's INTEGER already was; the batch rebuild keeps its data).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    ("plans", "monthly_price_minor"),
    ("leases", "price_minor"),
    ("qos_samples", "sent"),
    ("qos_samples", "received"),
    ("rollups", "count"),
)


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column, existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
            )


def downgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column, existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
            )
