"""newest-first lists: an index on the sort column of service sessions, RADIUS sessions,
payments and utilisation events

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 12:30:00

A page of the NOC's unfiltered lists (``GET /api/v1/sessions``, ``/api/v1/radius/sessions``,
``/api/v1/payments``, ``/api/v1/events`` and their pages) sorted the whole table to return
its newest rows; with an index on the sort column it walks that index for one page (the
rowid breaks ties, as the lists' ``id DESC`` does). Filtered lists already had theirs.
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

INDEXES = (
    ("service_sessions", "ix_service_started", "started_at"),
    ("radius_sessions", "ix_radius_sessions_started", "started_at"),
    ("payments", "ix_payments_created", "created_at"),
    ("utilisation_events", "ix_utilisation_events_opened", "opened_at"),
)


def upgrade() -> None:
    for table, name, column in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, [column], unique=False)


def downgrade() -> None:
    for table, name, _column in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
