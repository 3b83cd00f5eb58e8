"""The selection tables: orders (a request to move a line to an ISP, with its status through
RECEIVED, RUNNING and a final status), runs (one push to a router with its diff, per-host result
and timings, which may serve several coalesced orders) and idempotency records (a caller's key
and body hash, so a retried request replays the same order).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
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
    relationship,
)

from vpop.catalogue.service import Line
from vpop.core.db import Base, UTCDateTime
from vpop.core.time import utcnow


class OrderStatus(enum.StrEnum):
    """The life of an order (see docs/orders.md; consent: docs/tenancy.md)."""

    # an ISP's request for a line that is not its customer: waits for the subscriber
    PENDING_CONSENT = "PENDING_CONSENT"
    DECLINED = "DECLINED"  # the subscriber said no: final, nothing changed
    EXPIRED = "EXPIRED"  # nobody confirmed in time: final, nothing changed
    RECEIVED = "RECEIVED"
    RUNNING = "RUNNING"
    DONE_SUCCESS = "DONE_SUCCESS"
    DONE_FAILED = "DONE_FAILED"
    UNKNOWN = "UNKNOWN"
    RECONCILED = "RECONCILED"


FINAL_STATUSES = {
    OrderStatus.DONE_SUCCESS,
    OrderStatus.DONE_FAILED,
    OrderStatus.RECONCILED,
    OrderStatus.DECLINED,
    OrderStatus.EXPIRED,
}


class RunStatus(enum.StrEnum):
    """The outcome of one Nornir run against one router."""

    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"


class Run(Base):
    """One Nornir execution against one router."""

    __tablename__ = "runs"
    # the sweep's look for runs left RUNNING (every few seconds) reads only those
    __table_args__ = (Index("ix_runs_status_started", "status", "started_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    router: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # selection | reconcile | dry_run
    trigger: Mapped[str] = mapped_column(String(100))  # what started it: order ids, schedule
    requester: Mapped[str] = mapped_column(String(100))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING.value)
    diff: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # per host
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Order(Base):
    """One request to change a line's selection."""

    __tablename__ = "orders"
    # the worker's claims and has_waiting read a router's orders of one status, oldest
    # first: with the router index alone they walked the router's whole history (every
    # finished order) before the first waiting one, a claim getting slower with every order
    __table_args__ = (Index("ix_orders_router_status", "router", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), index=True)
    isp_id: Mapped[str] = mapped_column(ForeignKey("isps.id"))
    router: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.RECEIVED.value, index=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    requester: Mapped[str] = mapped_column(String(100))
    callback_url: Mapped[str | None] = mapped_column(String(500), default=None)
    callback_status: Mapped[str | None] = mapped_column(String(100), default=None)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), default=None)
    diff: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # switching with consent: the ISP the line used when the order was accepted (told when
    # the switch is done), until when a pending order may be confirmed, and who confirmed it
    losing_isp_id: Mapped[str | None] = mapped_column(ForeignKey("isps.id"), default=None)
    consent_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    consented_by: Mapped[str | None] = mapped_column(String(100), default=None)
    # RADIUS CoA/Disconnect sent for this order's line: ACK, or NAK with its Error-Cause
    coa_result: Mapped[str | None] = mapped_column(String(200), default=None)
    line: Mapped[Line] = relationship()
    run: Mapped[Run | None] = relationship()


class IdempotencyRecord(Base):
    """A request key, scoped to its caller, and the order it created."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    body_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
