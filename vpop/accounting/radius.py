"""RADIUS accounting sessions mirrored as service sessions (``source = "radius"``).

``vpop.aaa`` applies each Accounting-Request to its ``radius_sessions`` row (idempotently:
cumulative counters keep the largest value seen, times only move forward) and then calls
:func:`mirror_radius` in the same transaction. The mirror reads that row (as a table, not
through ``vpop.aaa``, which depends on this package's callers) and:

- links a service session to a RADIUS session with a known line and ISP, started at the
  RADIUS session's start, unless a ``selection`` session of the same line and ISP was open
  during the RADIUS session: then the router's counters meter that line and nothing is
  linked or counted (counting both would count the traffic twice);
- adds ``max(0, cumulative - already counted)`` of each counter to the service session and
  to the subscriber and ISP rollups at the buckets of the update's time, so a retransmitted
  or out-of-order record adds nothing;
- counts the time since the previous counted update as covered when it is at most three
  interim intervals (``VPOP_RADIUS_INTERIM_SECONDS``);
- closes the service session when the RADIUS session is closed: ``radius-stop`` (a Stop),
  ``nas-off`` (Accounting-On/Off), ``stale``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, String, column, select, table
from sqlalchemy.orm import Session

from vpop.accounting.models import ServiceSession
from vpop.accounting.usage import Tally, subscriber_keys
from vpop.catalogue.service import Line
from vpop.core.db import UTCDateTime
from vpop.core.settings import load_settings
from vpop.core.time import as_utc

# the columns read of vpop.aaa's table (declared here: accounting does not import vpop.aaa)
_radius = table(
    "radius_sessions",
    column("id", Integer),
    column("line_id", Integer),
    column("isp_id", String),
    column("subscriber_id", String),
    column("started_at", UTCDateTime()),
    column("updated_at", UTCDateTime()),
    column("stopped_at", UTCDateTime()),
    column("closed_by", String),
    column("input_octets", BigInteger),
    column("output_octets", BigInteger),
    column("input_packets", BigInteger),
    column("output_packets", BigInteger),
)
_END = {"stop": "radius-stop", "nas-off": "nas-off", "stale": "stale"}
#: An interim later than this many intervals after the previous one leaves a gap.
GAP_INTERIMS = 3


def mirror_radius(session: Session, radius_session_id: int) -> None:
    """Bring a RADIUS session's service session up to date with its row.

    Args:
        session: The accounting request's session (not committed here).
        radius_session_id: The ``radius_sessions`` row just written.
    """
    radius = (
        session.execute(select(_radius).where(_radius.c.id == radius_session_id)).mappings().first()
    )
    if radius is None or radius["line_id"] is None or radius["isp_id"] is None:
        return
    row = session.scalars(
        select(ServiceSession).where(ServiceSession.radius_session_id == radius_session_id)
    ).first()
    if row is None:
        if _metered_by_router(session, radius):
            return
        row = _open(session, radius)
        if row is None:
            return
    _count(session, row, radius)
    reason = _END.get(radius["closed_by"] or "")
    if radius["stopped_at"] is not None and row.ended_at is None and reason is not None:
        row.ended_at = max(as_utc(radius["stopped_at"]), as_utc(row.started_at))
        row.end_reason = reason
        session.flush()


def _metered_by_router(session: Session, radius: Any) -> bool:
    """Whether a selection session of the same line and ISP overlapped the RADIUS session."""
    until = radius["stopped_at"] or radius["updated_at"]
    found = session.scalars(
        select(ServiceSession.id).where(
            ServiceSession.line_id == radius["line_id"],
            ServiceSession.isp_id == radius["isp_id"],
            ServiceSession.source == "selection",
            ServiceSession.started_at <= as_utc(until),
            (ServiceSession.ended_at.is_(None))
            | (ServiceSession.ended_at > as_utc(radius["started_at"])),
        )
    ).first()
    return found is not None


def _open(session: Session, radius: Any) -> ServiceSession | None:
    line = session.get(Line, radius["line_id"])
    if line is None:
        return None
    started = as_utc(radius["started_at"])
    row = ServiceSession(
        source="radius",
        line_id=line.id,
        subscriber_id=radius["subscriber_id"] or line.subscriber_id,
        isp_id=radius["isp_id"],
        router=line.router,
        interface=line.interface,
        radius_session_id=radius["id"],
        started_at=started,
        bytes_in=0,
        bytes_out=0,
        packets_in=0,
        packets_out=0,
        covered_seconds=0.0,
        last_counted_at=started,
    )
    session.add(row)
    session.flush()
    return row


def _count(session: Session, row: ServiceSession, radius: Any) -> None:
    """Add what the RADIUS row counts beyond what the service session already has."""
    cumulative = (
        int(radius["input_octets"] or 0),
        int(radius["output_octets"] or 0),
        int(radius["input_packets"] or 0),
        int(radius["output_packets"] or 0),
    )
    counted = (row.bytes_in, row.bytes_out, row.packets_in, row.packets_out)
    adds = tuple(max(0, new - int(old or 0)) for new, old in zip(cumulative, counted, strict=True))
    at = as_utc(radius["updated_at"])
    previous = as_utc(row.last_counted_at) if row.last_counted_at is not None else None
    moved_on = previous is None or at > previous
    if not moved_on and not any(adds):
        return  # a retransmission or an older record: already counted
    covered = 0.0
    if previous is not None and at > previous:
        elapsed = (at - previous).total_seconds()
        if elapsed <= GAP_INTERIMS * load_settings().radius_interim_seconds:
            covered = elapsed
    counts = (adds[0], adds[1], adds[2], adds[3])
    tally = Tally()
    tally.add_session(row.id, counts, covered)
    for key in subscriber_keys(row.subscriber_id, row.isp_id):
        tally.add_rollup(key, counts, covered)
    stamp = max(at, previous) if previous is not None else at
    session.flush()
    tally.write(session, at, counted_at=stamp)
    session.expire(row)
