"""Service sessions: opened when a selection is confirmed, closed when the line moves or goes.

A ``selection`` session is opened by :func:`switch_lines_on`, which the selection engine
runs inside the transaction that records a selection confirmed on the router: the session
starts exactly when the router starts routing the line through the ISP, and the line's
previous session (another ISP) ends at that moment (``moved``). :func:`switch_line` is the
same rule inside an ORM session. :func:`end_line` closes what a removed line had open.
Sessions are accounting records: closed, never deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import Session

from vpop.accounting.models import END_REASONS, ServiceSession
from vpop.accounting.usage import Cut
from vpop.catalogue.service import Line
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.prepared import Prepared, session_cursor
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


def _close(row: ServiceSession, at: datetime, reason: str) -> None:
    if reason not in END_REASONS:
        raise ValueError(f"end reason must be one of {END_REASONS}, not {reason!r}")
    # a session never ends before it started (a clock step, a late caller)
    row.ended_at = max(as_utc(at), as_utc(row.started_at))
    row.end_reason = reason


@dataclass(frozen=True)
class LineSwitch:
    """A line the router now routes through ``isp_id`` (:func:`switch_lines_on`).

    ``cut``: when the line's counters were read right after the push and their raw values:
    the poll interval holding the move is split there (``vpop.accounting.usage.split``).
    """

    line_id: int
    subscriber_id: str
    router: str | None
    interface: str | None
    isp_id: str
    order_id: int | None = None
    cut: Cut | None = None


_SESSION = ServiceSession.__table__.c
_OPEN_SELECTION = Prepared(
    select(ServiceSession.id, ServiceSession.isp_id).where(
        ServiceSession.line_id == bindparam("line"),
        ServiceSession.source == "selection",
        ServiceSession.ended_at.is_(None),
    ),
    {},
)
# the open session ends at the move, never before it started (a clock step, a late caller)
_MOVED = Prepared(
    update(ServiceSession)
    .where(ServiceSession.id == bindparam("sid"), ServiceSession.ended_at.is_(None))
    .values(
        ended_at=case(
            (ServiceSession.started_at > bindparam("at"), ServiceSession.started_at),
            else_=bindparam("at"),
        ),
        end_reason="moved",
    ),
    {"at": _SESSION.started_at.type},
)
_NEW_COLUMNS = (
    "source",
    "line_id",
    "subscriber_id",
    "isp_id",
    "router",
    "interface",
    "order_id",
    "started_at",
    "bytes_in",
    "bytes_out",
    "packets_in",
    "packets_out",
    "covered_seconds",
    "baseline_at",
    "baseline_bytes_in",
    "baseline_bytes_out",
    "baseline_packets_in",
    "baseline_packets_out",
)
_INSERT_SESSION = Prepared.inserting(ServiceSession, _NEW_COLUMNS, returning=ServiceSession.id)


def switch_lines_on(
    cursor: Any, dialect: Dialect, switches: Sequence[LineSwitch], at: datetime
) -> list[int]:
    """Record that the router now routes each line of ``switches`` through its ISP, from ``at``,
    on a driver ``cursor`` inside the caller's write transaction (not committed here).

    When a line's open ``selection`` session is already through that ISP it is kept (a
    re-push of the same choice is not a new period of service). Otherwise the open one ends
    at ``at`` (``moved``) and a new ``selection`` session starts at ``at`` for the line's
    subscriber, router and interface.

    Returns:
        Each line's open ``selection`` session id, in the order of ``switches``.
    """
    at = as_utc(at)
    opened: list[int] = []
    for switch in switches:
        current = _OPEN_SELECTION.run(cursor, dialect, {"line": switch.line_id}).fetchone()
        if current is not None and current[1] == switch.isp_id:
            opened.append(int(current[0]))
            continue
        if current is not None:  # before the new one: one open session per line (the index)
            _MOVED.run(cursor, dialect, {"sid": current[0], "at": at})
        cut_at, counters = switch.cut if switch.cut is not None else (None, (None,) * 4)
        row = {
            "source": "selection",
            "line_id": switch.line_id,
            "subscriber_id": switch.subscriber_id,
            "isp_id": switch.isp_id,
            "router": switch.router,
            "interface": switch.interface,
            "order_id": switch.order_id,
            "started_at": at,
            "bytes_in": 0,
            "bytes_out": 0,
            "packets_in": 0,
            "packets_out": 0,
            "covered_seconds": 0.0,
            "baseline_at": as_utc(cut_at) if cut_at is not None else None,
            "baseline_bytes_in": counters[0],
            "baseline_bytes_out": counters[1],
            "baseline_packets_in": counters[2],
            "baseline_packets_out": counters[3],
        }
        opened.append(int(_INSERT_SESSION.run(cursor, dialect, row).fetchone()[0]))
    return opened


def switch_line(
    session: Session,
    *,
    line_id: int,
    isp_id: str,
    at: datetime,
    order_id: int | None = None,
    cut: Cut | None = None,
) -> ServiceSession:
    """:func:`switch_lines_on` for one line, inside an ORM session's transaction.

    Args:
        session: The caller's session (not committed here).
        line_id: The line.
        isp_id: The ISP it is now routed through.
        at: When the selection was confirmed (timezone-aware).
        order_id: The order that confirmed it.
        cut: When the line's counters were read right after the push, and their raw values.

    Returns:
        The line's open ``selection`` session.

    Raises:
        NotFound: ``VPOP-404-LINE`` for an unknown line.
    """
    line = session.get(Line, line_id)
    if line is None:
        raise NotFound(f"unknown line {line_id}", code="VPOP-404-LINE")
    switch = LineSwitch(
        line_id, line.subscriber_id, line.router, line.interface, isp_id, order_id, cut
    )
    with session_cursor(session, writes=True) as (cursor, dialect):
        (opened,) = switch_lines_on(cursor, dialect, [switch], at)
    for row in list(session.identity_map.values()):  # the line's sessions as loaded are stale
        if isinstance(row, ServiceSession) and row.line_id == line_id:
            session.expire(row)
    found = session.get(ServiceSession, opened)
    assert found is not None
    return found


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
