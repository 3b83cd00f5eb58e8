"""Service sessions: opened when a selection is confirmed, closed when the line moves or goes.

A ``selection`` session is opened by :func:`switch_line`, which the selection engine calls
inside the transaction that records a selection confirmed on the router: the session starts
exactly when the router starts routing the line through the ISP, and the line's previous
session (another ISP) ends at that moment (``moved``). :func:`end_line` closes what a removed
line had open. Sessions are accounting records: closed, never deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.accounting.models import END_REASONS, ServiceSession
from vpop.catalogue.service import Line
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.time import as_utc, iso

#: The most sessions one listing returns.
LIST_MAX = 1000

VIEW_KEYS = (
    "id",
    "source",
    "line",
    "subscriber",
    "isp",
    "router",
    "interface",
    "order",
    "radius_session",
    "started_at",
    "ended_at",
    "end_reason",
    "bytes_in",
    "bytes_out",
    "packets_in",
    "packets_out",
    "covered_seconds",
)


def session_view(row: ServiceSession) -> dict[str, Any]:
    """A service session as the API, CLI and pages show it (times as ISO 8601, UTC)."""
    return {
        "id": row.id,
        "source": row.source,
        "line": row.line_id,
        "subscriber": row.subscriber_id,
        "isp": row.isp_id,
        "router": row.router,
        "interface": row.interface,
        "order": row.order_id,
        "radius_session": row.radius_session_id,
        "started_at": iso(row.started_at),
        "ended_at": iso(row.ended_at),
        "end_reason": row.end_reason,
        "bytes_in": int(row.bytes_in or 0),
        "bytes_out": int(row.bytes_out or 0),
        "packets_in": int(row.packets_in or 0),
        "packets_out": int(row.packets_out or 0),
        "covered_seconds": float(row.covered_seconds or 0.0),
    }


def list_sessions(
    url: str | None = None,
    *,
    subscriber: str | None = None,
    isp: str | None = None,
    line: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    open_only: bool | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Service sessions overlapping ``[start, end)``, newest start first.

    A session overlaps the window when it started before ``end`` and had not ended by
    ``start`` (an open session reaches to now). Filters left None select everything.

    Args:
        url: The database URL (the configured one when None).
        subscriber: Only this subscriber's sessions.
        isp: Only sessions through this ISP.
        line: Only this line's sessions.
        start: The window's start (timezone-aware), or unbounded.
        end: The window's end (exclusive), or unbounded.
        open_only: True: only open sessions; False: only closed ones; None: both.
        limit: At most this many (1 to 1000).

    Returns:
        :func:`session_view` of each session.

    Raises:
        BadInput: ``VPOP-400-RANGE`` for a limit outside 1-1000; ``VPOP-400-TIME`` for a
            window that does not end after it starts.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_MAX:
        raise BadInput(f"limit: expected 1-{LIST_MAX}", code="VPOP-400-RANGE")
    if start is not None and end is not None and as_utc(end) <= as_utc(start):
        raise BadInput(
            f"the period must end after it starts ({iso(start)} .. {iso(end)})",
            code="VPOP-400-TIME",
        )
    query = select(ServiceSession)
    if subscriber is not None:
        query = query.where(ServiceSession.subscriber_id == subscriber)
    if isp is not None:
        query = query.where(ServiceSession.isp_id == isp)
    if line is not None:
        query = query.where(ServiceSession.line_id == line)
    if end is not None:
        query = query.where(ServiceSession.started_at < as_utc(end))
    if start is not None:
        query = query.where(
            (ServiceSession.ended_at.is_(None)) | (ServiceSession.ended_at > as_utc(start))
        )
    if open_only is True:
        query = query.where(ServiceSession.ended_at.is_(None))
    elif open_only is False:
        query = query.where(ServiceSession.ended_at.is_not(None))
    query = query.order_by(ServiceSession.started_at.desc(), ServiceSession.id.desc())
    with session_scope(url) as session:
        return [session_view(row) for row in session.scalars(query.limit(limit))]


def open_selection_session(session: Session, line_id: int) -> ServiceSession | None:
    """The line's open router-metered (``selection``) session, if any."""
    return session.scalars(
        select(ServiceSession).where(
            ServiceSession.line_id == line_id,
            ServiceSession.source == "selection",
            ServiceSession.ended_at.is_(None),
        )
    ).first()


def _close(row: ServiceSession, at: datetime, reason: str) -> None:
    if reason not in END_REASONS:
        raise ValueError(f"end reason must be one of {END_REASONS}, not {reason!r}")
    # a session never ends before it started (a clock step, a late caller)
    row.ended_at = max(as_utc(at), as_utc(row.started_at))
    row.end_reason = reason


def switch_line(
    session: Session,
    *,
    line_id: int,
    isp_id: str,
    at: datetime,
    order_id: int | None = None,
    cut: tuple[datetime, tuple[int, int, int, int]] | None = None,
) -> ServiceSession:
    """Record that the router now routes a line through ``isp_id``, from ``at``.

    Called in the transaction that records the confirmed selection. When the line's open
    ``selection`` session is already through ``isp_id`` it is kept (a re-push of the same
    choice is not a new period of service). Otherwise the open one ends at ``at`` (``moved``)
    and a new ``selection`` session starts at ``at`` for the line's subscriber, router and
    interface.

    Args:
        session: The caller's session (not committed here).
        line_id: The line.
        isp_id: The ISP it is now routed through.
        at: When the selection was confirmed (timezone-aware).
        order_id: The order that confirmed it.
        cut: When the line's counters were read right after the push and their raw values
            (bytes in, bytes out, packets in, packets out): the poll interval holding the
            move is split there (``vpop.accounting.usage.split``).

    Returns:
        The line's open ``selection`` session.

    Raises:
        NotFound: ``VPOP-404-LINE`` for an unknown line.
    """
    current = open_selection_session(session, line_id)
    if current is not None and current.isp_id == isp_id:
        return current
    line = session.get(Line, line_id)
    if line is None:
        raise NotFound(f"unknown line {line_id}", code="VPOP-404-LINE")
    at = as_utc(at)
    if current is not None:
        _close(current, at, "moved")
        session.flush()  # the partial unique index admits the new one only after this
    row = ServiceSession(
        source="selection",
        line_id=line_id,
        subscriber_id=line.subscriber_id,
        isp_id=isp_id,
        router=line.router,
        interface=line.interface,
        order_id=order_id,
        started_at=at,
        bytes_in=0,
        bytes_out=0,
        packets_in=0,
        packets_out=0,
        covered_seconds=0.0,
    )
    if cut is not None:
        row.baseline_at = as_utc(cut[0])
        (
            row.baseline_bytes_in,
            row.baseline_bytes_out,
            row.baseline_packets_in,
            row.baseline_packets_out,
        ) = cut[1]
    session.add(row)
    session.flush()
    return row


def end_line(session: Session, *, line_id: int, at: datetime, reason: str = "line-removed") -> int:
    """Close every open session of a line (any source) at ``at``.

    Args:
        session: The caller's session (not committed here).
        line_id: The line.
        at: When its service ended (timezone-aware).
        reason: One of :data:`~vpop.accounting.models.END_REASONS`.

    Returns:
        How many sessions were closed.

    Raises:
        ValueError: ``reason`` is not an end reason.
    """
    rows = list(
        session.scalars(
            select(ServiceSession).where(
                ServiceSession.line_id == line_id, ServiceSession.ended_at.is_(None)
            )
        )
    )
    for row in rows:
        _close(row, at, reason)
    session.flush()
    return len(rows)
