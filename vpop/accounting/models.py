"""The accounting tables: service sessions and usage rollups.

A **service session** is one (subscriber, line, ISP) period of routing service, whatever
started it: ``source`` is ``selection`` (a selection confirmed on a managed router; metered by
the per-line counters the monitoring poller reads) or ``radius`` (a NAS's Accounting Start;
metered by its Interim-Updates). At most one ``selection`` session is open per line (the
database holds that with a partial unique index). Sessions are accounting records: closed,
never deleted.

A **usage rollup** is the traffic of one subject through one ISP in one hour or one UTC day:
``level`` ``subscriber`` (subject: the subscriber id), ``isp`` (subject: the ISP id) or
``lease`` (subject: the lease id, as text; traffic on the leased uplink). Written in the
same transaction as the poll (or the accounting request) that measured it, kept
``VPOP_RETENTION_ROLLUP_DAYS`` (400 by default) while raw samples go after days.

Directions are the subscriber's, as RADIUS counts them: ``in`` is traffic from the
subscriber into the routing centre (upload; Acct-Input-Octets; the line counter's ``rx``),
``out`` is traffic to the subscriber (download). For a lease, ``in`` is what the uplink
received from the ISP and ``out`` what it sent to the ISP (the interface's rx and tx).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from vpop.core.db import Base, UTCDateTime

#: What opened a session.
SOURCES = ("selection", "radius")
#: Why a session ended.
END_REASONS = ("moved", "line-removed", "radius-stop", "nas-off", "stale")
#: Rollup grains and levels.
PERIODS = ("hour", "day")
LEVELS = ("subscriber", "isp", "lease")


class ServiceSession(Base):
    """One period of routing service of a line through one ISP, with its traffic."""

    __tablename__ = "service_sessions"
    __table_args__ = (
        Index("ix_service_line_started", "line_id", "started_at"),
        Index("ix_service_subscriber_started", "subscriber_id", "started_at"),
        Index("ix_service_isp_started", "isp_id", "started_at"),
        # the NOC's list of every ISP's sessions, latest started first: a page walks the index
        Index("ix_service_started", "started_at"),
        # one open router-metered session per line, whatever the code does
        Index(
            "uq_service_open_selection",
            "line_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL AND source = 'selection'"),
            postgresql_where=text("ended_at IS NULL AND source = 'selection'"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # selection | radius
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    subscriber_id: Mapped[str] = mapped_column(String(32))
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    router: Mapped[str | None] = mapped_column(String(64), default=None)
    interface: Mapped[str | None] = mapped_column(String(64), default=None)
    # references by id, without foreign keys: the accounting tables must load (and flush) in
    # a process that never imported the selection or aaa models (e.g. `vpop select`)
    order_id: Mapped[int | None] = mapped_column(Integer, default=None)
    radius_session_id: Mapped[int | None] = mapped_column(Integer, unique=True, default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    end_reason: Mapped[str | None] = mapped_column(String(16), default=None)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    packets_in: Mapped[int] = mapped_column(BigInteger, default=0)
    packets_out: Mapped[int] = mapped_column(BigInteger, default=0)
    # seconds of this session measured by regular polls (not gaps, resets or first polls)
    covered_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    last_counted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # the line's raw counters read right after the push that opened this session (a cut):
    # a poll interval holding the move is split there, not in proportion to time
    baseline_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    baseline_bytes_in: Mapped[int | None] = mapped_column(BigInteger, default=None)
    baseline_bytes_out: Mapped[int | None] = mapped_column(BigInteger, default=None)
    baseline_packets_in: Mapped[int | None] = mapped_column(BigInteger, default=None)
    baseline_packets_out: Mapped[int | None] = mapped_column(BigInteger, default=None)


class UsageRollup(Base):
    """The traffic of one subject through one ISP in one hour or one UTC day."""

    __tablename__ = "usage_rollups"
    __table_args__ = (
        PrimaryKeyConstraint("period", "level", "isp_id", "subject", "bucket"),
        Index("ix_usage_period_level_bucket", "period", "level", "bucket"),
    )
    period: Mapped[str] = mapped_column(String(4))  # hour | day
    level: Mapped[str] = mapped_column(String(16))  # subscriber | isp | lease
    isp_id: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(32))
    bucket: Mapped[datetime] = mapped_column(UTCDateTime())  # start of the hour / UTC day
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    packets_in: Mapped[int] = mapped_column(BigInteger, default=0)
    packets_out: Mapped[int] = mapped_column(BigInteger, default=0)
    # measured seconds: summed over the subject's lines (subscriber, isp) or of the uplink
    covered_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    samples: Mapped[int] = mapped_column(Integer, default=0)
