"""The leasing tables: leases of an uplink to an ISP (committed rate, peak, price in minor units,
thresholds and status), the utilisation samples measured against them, and the under- and
over-utilisation events those samples open and close.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import (
    Mapped,
    mapped_column,
)

from vpop.core.db import Base, UTCDateTime
from vpop.core.time import utcnow


class Lease(Base):
    """Infrastructure leased to an ISP: an uplink port on a router at a committed rate.

    The uplink is shaped to ``committed_mbps * peak_pct / 100`` (a burstable lease), so use
    above the committed rate is possible, measurable and reported as over-utilisation.
    """

    __tablename__ = "leases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"), index=True)
    router: Mapped[str] = mapped_column(String(64))
    uplink: Mapped[str] = mapped_column(String(64))
    committed_mbps: Mapped[int] = mapped_column(Integer)
    peak_pct: Mapped[int] = mapped_column(Integer, default=125)
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # event rules: below under_pct (or above over_pct) for event_seconds opens an event;
    # it closes after event_seconds back inside the band by hysteresis_pct
    under_pct: Mapped[int] = mapped_column(Integer, default=10)
    over_pct: Mapped[int] = mapped_column(Integer, default=100)
    hysteresis_pct: Mapped[int] = mapped_column(Integer, default=5)
    event_seconds: Mapped[int] = mapped_column(Integer, default=60)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class UtilisationSample(Base):
    """A lease's rate over its committed rate at one poll."""

    __tablename__ = "utilisation_samples"
    __table_args__ = (Index("ix_util_lease_at", "lease_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    lease_id: Mapped[int] = mapped_column(ForeignKey("leases.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    rate_mbps: Mapped[float] = mapped_column(Float)
    utilisation_pct: Mapped[float] = mapped_column(Float)


class UtilisationEvent(Base):
    """An under- or over-utilisation episode of a lease."""

    __tablename__ = "utilisation_events"
    # the list, newest opened first: a page walks the index
    __table_args__ = (Index("ix_utilisation_events_opened", "opened_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lease_id: Mapped[int] = mapped_column(ForeignKey("leases.id"), index=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # under | over
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    extreme_pct: Mapped[float] = mapped_column(Float)  # peak (over) or lowest (under)
    callback_status: Mapped[str | None] = mapped_column(String(100), default=None)


class LeaseVersion(Base):
    """The terms of a lease in force from ``valid_from`` until ``valid_to`` (None: still).

    Version 1 is written with the lease; a renewal (a new planned end) or a change of the
    committed rate, peak or price writes the next version and closes the previous one at the
    same instant, so a past period's report or bill reads the terms in force then.
    """

    __tablename__ = "lease_versions"
    __table_args__ = (UniqueConstraint("lease_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lease_id: Mapped[int] = mapped_column(ForeignKey("leases.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    committed_mbps: Mapped[int] = mapped_column(Integer)
    peak_pct: Mapped[int] = mapped_column(Integer)
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    reason: Mapped[str] = mapped_column(String(16))  # create | renew | change
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
