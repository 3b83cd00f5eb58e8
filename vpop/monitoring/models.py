"""The monitoring tables: raw counter samples per router and interface, QoS samples per ISP and
router, rollups (per series and bucket: count, sum, min, max) kept long after raw samples are
pruned, and the poll log that says when each poll ran and whether it succeeded.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import (
    Mapped,
    mapped_column,
)

from vpop.core.db import Base, UTCDateTime
from vpop.core.time import utcnow


class CounterSample(Base):
    """One poll of one counter series (an interface, or a line's nftables counters): the raw
    counters as read, and the rates since the previous poll (wraps, resets and gaps handled;
    no rates on the first poll or a duplicate)."""

    __tablename__ = "counter_samples"
    # time only: a poll appends ~400 rows of different series, and a (series, time) index
    # turned each into a random B-tree insert (most of a poll's cost); series are read by
    # time window first (recent state, reports, retention)
    __table_args__ = (Index("ix_counter_at", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    router: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # interface | line
    name: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    rx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    tx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    rx_packets: Mapped[int] = mapped_column(BigInteger, default=0)
    tx_packets: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    drops: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    rx_bps: Mapped[float | None] = mapped_column(Float, default=None)
    tx_bps: Mapped[float | None] = mapped_column(Float, default=None)
    rx_pps: Mapped[float | None] = mapped_column(Float, default=None)
    tx_pps: Mapped[float | None] = mapped_column(Float, default=None)
    new_errors: Mapped[int | None] = mapped_column(BigInteger, default=None)
    new_drops: Mapped[int | None] = mapped_column(BigInteger, default=None)
    note: Mapped[str | None] = mapped_column(String(16), default=None)  # wrap|reset|gap|...
    # a line's sample: the service session its traffic was counted to (None: no session)
    session_id: Mapped[int | None] = mapped_column(BigInteger, default=None)


class QosSample(Base):
    """An ISP's measured quality through its routing instance on one router."""

    __tablename__ = "qos_samples"
    __table_args__ = (Index("ix_qos_isp_at", "isp_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    router: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    jitter_ms: Mapped[float | None] = mapped_column(Float, default=None)
    loss_pct: Mapped[float | None] = mapped_column(Float, default=None)
    throughput_mbps: Mapped[float | None] = mapped_column(Float, default=None)
    sent: Mapped[int] = mapped_column(BigInteger, default=0)
    received: Mapped[int] = mapped_column(BigInteger, default=0)


class Rollup(Base):
    """A 5-minute aggregate of a series, kept longer than raw samples."""

    __tablename__ = "rollups"
    __table_args__ = (UniqueConstraint("series", "bucket"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    series: Mapped[str] = mapped_column(String(120))
    bucket: Mapped[datetime] = mapped_column(UTCDateTime())
    count: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[float] = mapped_column(Float)
    minimum: Mapped[float] = mapped_column(Float)
    maximum: Mapped[float] = mapped_column(Float)


class PollLog(Base):
    """One monitoring job's poll of one router: how long, and whether it worked."""

    __tablename__ = "poll_log"
    __table_args__ = (Index("ix_poll_job_at", "job", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job: Mapped[str] = mapped_column(String(32))
    router: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    seconds: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text, default=None)
