"""orders: an index on (router, status) for the worker's claims

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 12:00:00

The worker's claim of a router's waiting orders (and ``has_waiting``) filter on router and
status, oldest first. With only ``ix_orders_router`` SQLite walked every order the router ever
had, finished ones included, before the first waiting one: a claim got slower with each
order (issue 13: an ingress run of 6,600 dry runs slowed its own later phases by a quarter).
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_router_status", ["router", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_router_status")
