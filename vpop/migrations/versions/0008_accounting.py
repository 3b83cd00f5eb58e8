"""accounting: service sessions, usage rollups, lease versions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 17:50:00

Service sessions (one per subscriber, line and ISP period, from a confirmed selection or a
RADIUS Start) and hourly/daily usage rollups per subscriber, ISP and lease; a line's raw
counter sample names the session it was counted to; lease versions record the terms in force
over time (version 1 is written here for every existing lease, from its creation).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
OPEN_SELECTION = "ended_at IS NULL AND source = 'selection'"


def upgrade() -> None:
    op.create_table(
        "service_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.String(length=32), nullable=False),
        sa.Column("isp_id", sa.String(length=32), nullable=False),
        sa.Column("router", sa.String(length=64), nullable=True),
        sa.Column("interface", sa.String(length=64), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("radius_session_id", sa.Integer(), nullable=True),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("ended_at", TIME, nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("packets_in", sa.BigInteger(), nullable=False),
        sa.Column("packets_out", sa.BigInteger(), nullable=False),
        sa.Column("covered_seconds", sa.Float(), nullable=False),
        sa.Column("last_counted_at", TIME, nullable=True),
        sa.Column("baseline_at", TIME, nullable=True),
        sa.Column("baseline_bytes_in", sa.BigInteger(), nullable=True),
        sa.Column("baseline_bytes_out", sa.BigInteger(), nullable=True),
        sa.Column("baseline_packets_in", sa.BigInteger(), nullable=True),
        sa.Column("baseline_packets_out", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"]),
        sa.ForeignKeyConstraint(["isp_id"], ["isps.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("radius_session_id"),
    )
    op.create_index("ix_service_line_started", "service_sessions", ["line_id", "started_at"])
    op.create_index(
        "ix_service_subscriber_started", "service_sessions", ["subscriber_id", "started_at"]
    )
    op.create_index("ix_service_isp_started", "service_sessions", ["isp_id", "started_at"])
    op.create_index(
        "uq_service_open_selection",
        "service_sessions",
        ["line_id"],
        unique=True,
        sqlite_where=sa.text(OPEN_SELECTION),
        postgresql_where=sa.text(OPEN_SELECTION),
    )
    op.create_table(
        "usage_rollups",
        sa.Column("period", sa.String(length=4), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("isp_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("bucket", TIME, nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("packets_in", sa.BigInteger(), nullable=False),
        sa.Column("packets_out", sa.BigInteger(), nullable=False),
        sa.Column("covered_seconds", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("period", "level", "isp_id", "subject", "bucket"),
    )
    op.create_index("ix_usage_period_level_bucket", "usage_rollups", ["period", "level", "bucket"])
    with op.batch_alter_table("counter_samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "lease_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lease_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", TIME, nullable=False),
        sa.Column("valid_to", TIME, nullable=True),
        sa.Column("committed_mbps", sa.Integer(), nullable=False),
        sa.Column("peak_pct", sa.Integer(), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("ends_at", TIME, nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["lease_id"], ["leases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lease_id", "version"),
    )
    op.create_index("ix_lease_versions_lease_id", "lease_versions", ["lease_id"])
    # every existing lease gets its first version: the terms it has, from its start
    op.execute(
        "INSERT INTO lease_versions (lease_id, version, valid_from, valid_to, committed_mbps,"
        " peak_pct, price_minor, currency, ends_at, reason, actor, created_at)"
        " SELECT id, 1, starts_at, NULL, committed_mbps, peak_pct, price_minor, currency,"
        " ends_at, 'create', 'migration', created_at FROM leases"
    )


def downgrade() -> None:
    op.drop_index("ix_lease_versions_lease_id", table_name="lease_versions")
    op.drop_table("lease_versions")
    with op.batch_alter_table("counter_samples", schema=None) as batch_op:
        batch_op.drop_column("session_id")
    op.drop_index("ix_usage_period_level_bucket", table_name="usage_rollups")
    op.drop_table("usage_rollups")
    op.drop_index("uq_service_open_selection", table_name="service_sessions")
    op.drop_index("ix_service_isp_started", table_name="service_sessions")
    op.drop_index("ix_service_subscriber_started", table_name="service_sessions")
    op.drop_index("ix_service_line_started", table_name="service_sessions")
    op.drop_table("service_sessions")
