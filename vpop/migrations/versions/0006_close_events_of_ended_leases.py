"""close the utilisation events that ended leases left open

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 16:00:00

Ending a lease now closes its open events at the lease's end. Leases that ended (or began
ending) before that left theirs open for ever, so reports counted more "seconds under" than
the lease existed and metrics counted them as open. They are closed here at the lease's end
(at the event's opening when the lease has no end or ended before the event opened).
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE utilisation_events
        SET closed_at = (
            SELECT CASE
                WHEN leases.ends_at IS NULL OR leases.ends_at < utilisation_events.opened_at
                THEN utilisation_events.opened_at
                ELSE leases.ends_at
            END
            FROM leases WHERE leases.id = utilisation_events.lease_id
        )
        WHERE closed_at IS NULL
          AND lease_id IN (SELECT id FROM leases WHERE status IN ('ending', 'ended'))
        """
    )


def downgrade() -> None:
    """Nothing to undo: which events were closed here is not recorded, and a closed event
    of an ended lease is what the code writes now."""
