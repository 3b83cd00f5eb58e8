"""the authentication and ISP routing centre: RADIUS clients, rules, decisions, sessions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 16:05:00

Subscribers may be suspended and carry a PAP password hash; lines gain the RADIUS
identifiers (remote id, user@realm, NAS port), an optional binding to one NAS and an active
flag; an order records the CoA result for its line.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suspended_at", TIME, nullable=True))
        batch_op.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remote_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("user_name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("nas_port_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("nas", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.create_unique_constraint("uq_lines_remote_id", ["remote_id"])
        batch_op.create_unique_constraint("uq_lines_user_name", ["user_name"])
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("coa_result", sa.String(length=200), nullable=True))
    op.create_table(
        "radius_clients",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.Column("family", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "aaa_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("match", sa.String(length=100), nullable=False),
        sa.Column("isp_id", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["isp_id"], ["isps.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "aaa_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.String(length=40), nullable=False),
        sa.Column("nas", sa.String(length=32), nullable=True),
        sa.Column("line_id", sa.Integer(), nullable=True),
        sa.Column("subscriber_id", sa.String(length=32), nullable=True),
        sa.Column("isp_id", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("identifiers", sa.JSON(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["isp_id"], ["isps.id"]),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"]),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("decision_id"),
    )
    with op.batch_alter_table("aaa_decisions", schema=None) as batch_op:
        batch_op.create_index("ix_aaa_decisions_at", ["at"], unique=False)
        batch_op.create_index("ix_aaa_decisions_line_id", ["line_id"], unique=False)
        batch_op.create_index("ix_aaa_decisions_subscriber_id", ["subscriber_id"], unique=False)
    op.create_table(
        "radius_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("nas", sa.String(length=32), nullable=False),
        sa.Column("acct_session_id", sa.String(length=64), nullable=False),
        sa.Column("decision_id", sa.String(length=40), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=True),
        sa.Column("subscriber_id", sa.String(length=32), nullable=True),
        sa.Column("isp_id", sa.String(length=32), nullable=True),
        sa.Column("user_name", sa.String(length=100), nullable=True),
        sa.Column("framed_ip", sa.String(length=45), nullable=True),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("stopped_at", TIME, nullable=True),
        sa.Column("stop_cause", sa.String(length=32), nullable=True),
        sa.Column("closed_by", sa.String(length=16), nullable=True),
        sa.Column("session_time", sa.BigInteger(), nullable=False),
        sa.Column("input_octets", sa.BigInteger(), nullable=False),
        sa.Column("output_octets", sa.BigInteger(), nullable=False),
        sa.Column("input_packets", sa.BigInteger(), nullable=False),
        sa.Column("output_packets", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["isp_id"], ["isps.id"]),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("nas", "acct_session_id", "decision_id"),
    )
    with op.batch_alter_table("radius_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_radius_sessions_isp_id", ["isp_id"], unique=False)
        batch_op.create_index("ix_radius_sessions_line_id", ["line_id"], unique=False)
        batch_op.create_index("ix_radius_sessions_subscriber_id", ["subscriber_id"], unique=False)


def downgrade() -> None:
    op.drop_table("radius_sessions")
    op.drop_table("aaa_decisions")
    op.drop_table("aaa_rules")
    op.drop_table("radius_clients")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("coa_result")
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_constraint("uq_lines_user_name", type_="unique")
        batch_op.drop_constraint("uq_lines_remote_id", type_="unique")
        for column in ("active", "nas", "nas_port_id", "user_name", "remote_id"):
            batch_op.drop_column(column)
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("password_hash")
        batch_op.drop_column("suspended_at")
