"""leased locks with fencing tokens; orders remember the losing ISP and consent

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 15:10:00

Router and monitoring locks move from the queue's storage (where a killed process left them
held for ever) into the database as leases that end; a pending order waits for the
subscriber's consent until ``consent_expires_at``, and the ISP that loses the line is told
when the switch is done.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "locks",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("losing_isp_id", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("consent_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("consented_by", sa.String(length=100), nullable=True))
        batch_op.create_foreign_key(
            "fk_orders_losing_isp_id_isps", "isps", ["losing_isp_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_constraint("fk_orders_losing_isp_id_isps", type_="foreignkey")
        batch_op.drop_column("consented_by")
        batch_op.drop_column("consent_expires_at")
        batch_op.drop_column("losing_isp_id")
    op.drop_table("locks")
