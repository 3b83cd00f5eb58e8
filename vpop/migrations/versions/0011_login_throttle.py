"""login throttle: failed NOC sign-ins, shared by every server process

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 09:00:00

One row per failed sign-in (user name as typed, address, time; nothing secret), counted over
the throttle window by every server process and pruned as it leaves the window
(vpop/identity/throttle.py). Replaces the per-process table in memory.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.create_index("ix_login_failures_at", ["at"], unique=False)
        batch_op.create_index(
            "ix_login_failures_key_at", ["username", "address", "at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_login_failures_key_at")
        batch_op.drop_index("ix_login_failures_at")
    op.drop_table("login_failures")
