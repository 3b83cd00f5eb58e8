"""The AAA tables: RADIUS clients (NAS), the rules that choose an ISP, every decision taken
(with the id that travels in ``Class``) and the accounting sessions the NAS reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vpop.core.db import Base, UTCDateTime
from vpop.core.time import utcnow


class RadiusClient(Base):
    """A NAS allowed to ask: its address and the attribute family of its replies.

    The shared secret is not stored here: it lives in a file under the state directory
    (mode 0600), because FreeRADIUS needs it in clear text.
    """

    __tablename__ = "radius_clients"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str] = mapped_column(String(45))
    family: Mapped[str] = mapped_column(String(16), default="generic")  # accel-ppp|cisco|...
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AaaRule(Base):
    """An explicit choice of ISP for the lines it matches (the highest priority wins)."""

    __tablename__ = "aaa_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # calling_prefix | realm | profile
    match: Mapped[str] = mapped_column(String(100))  # "+3120555", "isp-c.example", "tier=gold"
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    priority: Mapped[int] = mapped_column(Integer, default=100)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100), default="")


class AaaDecision(Base):
    """One Access-Request answered: who, which line, accept or reject, the ISP and why.

    ``decision_id`` travels in ``Class``, so accounting attributes bytes to the ISP chosen
    here without deciding again.
    """

    __tablename__ = "aaa_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision_id: Mapped[str] = mapped_column(String(40), unique=True)
    nas: Mapped[str | None] = mapped_column(String(32), default=None)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"), default=None, index=True)
    subscriber_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    isp_id: Mapped[str | None] = mapped_column(ForeignKey("isps.id"), default=None)
    outcome: Mapped[str] = mapped_column(String(8))  # accept | reject
    reason: Mapped[str] = mapped_column(String(200))
    identifiers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class RadiusSession(Base):
    """An accounting session as the NAS reports it (Start, Interim-Updates, Stop).

    Keyed on the NAS, its Acct-Session-Id and the decision id from ``Class`` (a session id is
    not unique across NAS reboots). Counters are cumulative: the largest seen is kept, with
    Gigawords folded in.
    """

    __tablename__ = "radius_sessions"
    __table_args__ = (
        UniqueConstraint("nas", "acct_session_id", "decision_id"),
        # the stale sweep reads only the open sessions gone quiet
        Index("ix_radius_sessions_open", "stopped_at", "updated_at"),
        # the NOC's list, latest started first: a page walks the index
        Index("ix_radius_sessions_started", "started_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nas: Mapped[str] = mapped_column(String(32))
    acct_session_id: Mapped[str] = mapped_column(String(64))
    decision_id: Mapped[str] = mapped_column(String(40), default="")
    line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"), default=None, index=True)
    subscriber_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    isp_id: Mapped[str | None] = mapped_column(ForeignKey("isps.id"), default=None, index=True)
    user_name: Mapped[str | None] = mapped_column(String(100), default=None)
    framed_ip: Mapped[str | None] = mapped_column(String(45), default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    stop_cause: Mapped[str | None] = mapped_column(String(32), default=None)
    closed_by: Mapped[str | None] = mapped_column(String(16), default=None)  # stop|nas-off|stale
    session_time: Mapped[int] = mapped_column(BigInteger, default=0)
    input_octets: Mapped[int] = mapped_column(BigInteger, default=0)
    output_octets: Mapped[int] = mapped_column(BigInteger, default=0)
    input_packets: Mapped[int] = mapped_column(BigInteger, default=0)
    output_packets: Mapped[int] = mapped_column(BigInteger, default=0)
