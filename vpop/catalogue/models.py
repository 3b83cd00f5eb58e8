"""The catalogue's tables: ISPs and their plans, subscribers and their lines, and the ISP each
line uses now (``Selection``, written only when a router confirmed the change).

A line is the unit the routers know: an interface and a prefix on one router, found by its
calling number (E.164), circuit id or access id as well as by its subscriber.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import (
    Mapped,
    mapped_column,
    relationship,
)

from vpop.core.db import Base, UTCDateTime
from vpop.core.time import utcnow


class Isp(Base):
    """A provider reachable through the routing centre."""

    __tablename__ = "isps"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    callback_url: Mapped[str | None] = mapped_column(String(500), default=None)
    # destinations this ISP does not carry (its outbound filter list), canonical prefixes
    outbound_deny: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    plans: Mapped[list[Plan]] = relationship(back_populates="isp", order_by="Plan.id")


class Plan(Base):
    """An ISP's offer: speed and monthly price (integer minor units)."""

    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    name: Mapped[str] = mapped_column(String(100))
    speed_mbps: Mapped[int] = mapped_column(Integer)
    monthly_price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    isp: Mapped[Isp] = relationship(back_populates="plans")


class Subscriber(Base):
    """A person or site; reaches the routing centre through one or more lines."""

    __tablename__ = "subscribers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # RADIUS: a suspended subscriber is rejected; an optional PAP password, stored hashed
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    lines: Mapped[list[Line]] = relationship(back_populates="subscriber", order_by="Line.id")


class Line(Base):
    """Where a subscriber attaches: router + interface + the subscriber's prefix."""

    __tablename__ = "lines"
    __table_args__ = (
        UniqueConstraint("router", "interface"),
        # RADIUS finds a line by its NAS port (and NAS) on every request that names one
        Index("ix_lines_nas_port", "nas_port_id", "nas"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # a selection, the portal and accounting find a subscriber's lines by it
    subscriber_id: Mapped[str] = mapped_column(ForeignKey("subscribers.id"), index=True)
    router: Mapped[str] = mapped_column(String(64))
    interface: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(64))
    # router's address on the line, interface form (198.51.100.1/30); None when unnumbered
    gateway: Mapped[str | None] = mapped_column(String(64), default=None)
    calling_number: Mapped[str | None] = mapped_column(String(20), unique=True, default=None)
    circuit_id: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    access_id: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    # RADIUS identifiers beside calling number and circuit id: DHCP option-82 remote id,
    # the PPP/802.1X user name with its realm (user@realm), the NAS port; an inactive line
    # is rejected; ``nas`` binds the line to one RADIUS client (None: any)
    remote_id: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    user_name: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    nas_port_id: Mapped[str | None] = mapped_column(String(100), default=None)
    nas: Mapped[str | None] = mapped_column(String(32), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    subscriber: Mapped[Subscriber] = relationship(back_populates="lines")
    selection: Mapped[Selection | None] = relationship(back_populates="line")


class Selection(Base):
    """The ISP a line currently uses, as confirmed on the router."""

    __tablename__ = "selections"
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), primary_key=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    line: Mapped[Line] = relationship(back_populates="selection")
