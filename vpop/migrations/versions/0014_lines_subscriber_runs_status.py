"""lines by subscriber and runs by status: indexes for reads that walked whole tables

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 12:10:00

``POST /api/v1/selections`` naming a subscriber (and the portal, and accounting) looked a
subscriber's lines up with no index: SQLite read every line. The sweep's look for runs left
RUNNING, every few seconds, read every run ever made (one per dry run, one per coalesced
batch of changes). Found by ``EXPLAIN QUERY PLAN`` over every statement of warm selections,
a counters poll, a probe and a sweep (issue 13).
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lines_subscriber_id"), ["subscriber_id"], unique=False)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_status_started", ["status", "started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_status_started")
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lines_subscriber_id"))
