"""lines by NAS port, open RADIUS sessions, payments due to expire: indexes for reads that
walked whole tables

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 12:20:00

A RADIUS request naming a NAS-Port-Id read every line; the stale-session sweep read every
RADIUS session ever recorded; the minute's expiry check of authorised payments read every
payment. Found by ``EXPLAIN QUERY PLAN`` over the statements of the AAA, accounting, payment
and API tests (issue 13).
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.create_index("ix_lines_nas_port", ["nas_port_id", "nas"], unique=False)
    with op.batch_alter_table("radius_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_radius_sessions_open", ["stopped_at", "updated_at"], unique=False)
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_status_expires", ["status", "expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_status_expires")
    with op.batch_alter_table("radius_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_radius_sessions_open")
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_index("ix_lines_nas_port")
