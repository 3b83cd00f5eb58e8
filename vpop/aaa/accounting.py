"""Accounting-Requests become sessions, idempotently (delivery is at least once).

A session is keyed on ``(nas, Acct-Session-Id, decision id from Class)``: a session id alone
repeats across NAS reboots. Its line, subscriber and ISP come from the decision named in
``Class`` (nothing is decided again). Every write is idempotent, as FreeRADIUS's own SQL
schema (``radacct``) does it:

- ``Start`` inserts the session, or (a retransmission, or a Start after an Interim) keeps
  the earliest start;
- ``Interim-Update`` raises the counters (cumulative: the largest value seen is kept, never
  added), or inserts the session with start = event time - Acct-Session-Time when its Start
  was lost; an Interim after the Stop never reopens the session;
- ``Stop`` closes the session (``closed_by = stop``, the Acct-Terminate-Cause) with its final
  counters, or inserts a closed session (start = event time - Acct-Session-Time) when there
  was no Start; a repeated Stop changes nothing;
- ``Accounting-On`` / ``Accounting-Off`` close every open session of the NAS
  (``closed_by = nas-off``): the NAS rebooted, its sessions are gone.

After each write, in the same transaction, the session is mirrored into the accounting
domain's service sessions and usage rollups (``vpop.accounting.service.mirror_radius``).

Octets are ``Gigawords * 2**32 + Octets``. The event time is Event-Timestamp, else now minus
Acct-Delay-Time. Updates are single SQL statements (``CASE`` for the largest value), so two
retransmissions handled at once cannot lose a counter; two concurrent first inserts meet the
unique constraint and the loser retries as an update. :func:`account` returns only after the
commit: the HTTP endpoint answers 204 then, and the NAS retransmits anything not answered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, case, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from vpop.aaa.models import AaaDecision, RadiusSession
from vpop.aaa.replies import decision_id_of
from vpop.aaa.resolver import decode_octets
from vpop.accounting.service import mirror_radius
from vpop.core import validate
from vpop.core.db import UTCDateTime, session_scope
from vpop.core.errors import BadInput
from vpop.core.settings import load_settings
from vpop.core.time import iso, utcnow

log = logging.getLogger(__name__)

START, STOP, INTERIM, ON, OFF = "Start", "Stop", "Interim-Update", "Accounting-On", "Accounting-Off"
_STATUS = {
    "Start": START,
    "1": START,
    "Stop": STOP,
    "2": STOP,
    "Interim-Update": INTERIM,
    "Alive": INTERIM,
    "3": INTERIM,
    "Accounting-On": ON,
    "7": ON,
    "Accounting-Off": OFF,
    "8": OFF,
}
GIGAWORD = 2**32
_COUNTER_MAX = 2**63 - 1
_ATTEMPTS = 3


@dataclass(frozen=True)
class AccountingRecord:
    """One Accounting-Request, parsed and canonical."""

    status: str
    nas: str
    acct_session_id: str
    decision_id: str
    at: datetime
    session_time: int
    input_octets: int
    output_octets: int
    input_packets: int
    output_packets: int
    stop_cause: str | None
    user_name: str | None
    framed_ip: str | None


def _first(attributes: dict[str, list[str]], name: str) -> str | None:
    values = attributes.get(name)
    return values[0] if values else None


def _count(attributes: dict[str, list[str]], name: str) -> int:
    raw = _first(attributes, name)
    if raw is None:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise BadInput(f"{name}: {raw[:30]!r} is not a counter")
    return int(raw)


def _octets(attributes: dict[str, list[str]], direction: str) -> int:
    total = _count(attributes, f"Acct-{direction}-Gigawords") * GIGAWORD + _count(
        attributes, f"Acct-{direction}-Octets"
    )
    return min(total, _COUNTER_MAX)


def event_time(value: str) -> datetime:
    """Event-Timestamp as rlm_rest sends it (``Dec  2 2024 00:40:00 UTC``) or as seconds.

    Raises:
        BadInput: any other form, or a zone other than UTC/GMT (run FreeRADIUS with TZ=UTC).
    """
    if value.isascii() and value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    words = value.split()
    if len(words) == 5 and words[4] in ("UTC", "GMT"):
        try:
            return datetime.strptime(" ".join(words[:4]), "%b %d %Y %H:%M:%S").replace(tzinfo=UTC)
        except ValueError as err:
            raise BadInput(f"Event-Timestamp: {value[:40]!r} is not a date") from err
    raise BadInput(f"Event-Timestamp: {value[:40]!r} is not a UTC date or a number of seconds")


def parse(attributes: dict[str, list[str]], nas: str | None, now: datetime) -> AccountingRecord:
    """An Accounting-Request as a record.

    Args:
        attributes: rlm_rest's request, attribute name -> values.
        nas: the NAS's client name; else NAS-Identifier, else NAS-IP-Address.
        now: the time it arrived (for a request without Event-Timestamp).

    Raises:
        BadInput: no status type or NAS, no session id (Start/Stop/Interim), bad counters.
    """
    status = _STATUS.get(_first(attributes, "Acct-Status-Type") or "", "")
    nas_name = nas or _first(attributes, "NAS-Identifier") or _first(attributes, "NAS-IP-Address")
    nas_name = validate.text(nas_name, "NAS", 32)
    session_id = _first(attributes, "Acct-Session-Id") or ""
    if status in (START, STOP, INTERIM):
        session_id = validate.text(session_id, "Acct-Session-Id", 64)
    stamp = _first(attributes, "Event-Timestamp")
    at = (
        event_time(stamp)
        if stamp is not None
        else now - timedelta(seconds=_count(attributes, "Acct-Delay-Time"))
    )
    decision = ""
    class_ = _first(attributes, "Class")
    if class_ is not None:
        try:
            decision = decision_id_of(decode_octets(class_))
        except BadInput:
            decision = ""
    framed_ip = _first(attributes, "Framed-IP-Address")
    try:
        framed_ip = validate.address(framed_ip, "Framed-IP-Address") if framed_ip else None
    except BadInput:
        framed_ip = None
    cause = _first(attributes, "Acct-Terminate-Cause")
    user = _first(attributes, "User-Name")
    return AccountingRecord(
        status=status,
        nas=nas_name,
        acct_session_id=session_id,
        decision_id=decision,
        at=at,
        session_time=_count(attributes, "Acct-Session-Time"),
        input_octets=_octets(attributes, "Input"),
        output_octets=_octets(attributes, "Output"),
        input_packets=_count(attributes, "Acct-Input-Packets"),
        output_packets=_count(attributes, "Acct-Output-Packets"),
        stop_cause=(" ".join(cause.split())[:32] or None) if cause else None,
        user_name=user[:100] if user and user.isprintable() else None,
        framed_ip=framed_ip,
    )


def _larger(column: Any, value: Any) -> ColumnElement[Any]:
    return case((column < value, value), else_=column)


def _smaller(column: Any, value: Any) -> ColumnElement[Any]:
    return case((column > value, value), else_=column)


def _when(record: AccountingRecord) -> ColumnElement[datetime]:
    return literal(record.at, UTCDateTime())


def _counters(record: AccountingRecord) -> dict[str, Any]:
    return {
        "session_time": _larger(RadiusSession.session_time, record.session_time),
        "input_octets": _larger(RadiusSession.input_octets, record.input_octets),
        "output_octets": _larger(RadiusSession.output_octets, record.output_octets),
        "input_packets": _larger(RadiusSession.input_packets, record.input_packets),
        "output_packets": _larger(RadiusSession.output_packets, record.output_packets),
    }


def _update(session: Session, record: AccountingRecord) -> int:
    """Apply ``record`` to its session if it exists; the number of rows changed (0 or 1)."""
    when = _when(record)
    values: dict[str, Any]
    if record.status == START:
        values = {"started_at": _smaller(RadiusSession.started_at, when)}
    elif record.status == INTERIM:
        values = {
            **_counters(record),
            "updated_at": case(
                (
                    and_(RadiusSession.stopped_at.is_(None), RadiusSession.updated_at < when),
                    when,
                ),
                else_=RadiusSession.updated_at,
            ),
        }
    else:
        stopped = RadiusSession.closed_by == "stop"
        values = {
            **_counters(record),
            "updated_at": _larger(RadiusSession.updated_at, when),
            "stopped_at": case((stopped, RadiusSession.stopped_at), else_=when),
            "stop_cause": case(
                (stopped, RadiusSession.stop_cause), else_=literal(record.stop_cause)
            ),
            "closed_by": "stop",
        }
    statement = (
        update(RadiusSession)
        .where(
            RadiusSession.nas == record.nas,
            RadiusSession.acct_session_id == record.acct_session_id,
            RadiusSession.decision_id == record.decision_id,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def _insert(session: Session, record: AccountingRecord) -> None:
    """The first record of a session (a Start, or an Interim or Stop whose Start was lost)."""
    started = record.at
    if record.status != START:
        started = record.at - timedelta(seconds=record.session_time)
    decision = (
        session.scalars(
            select(AaaDecision).where(AaaDecision.decision_id == record.decision_id)
        ).first()
        if record.decision_id
        else None
    )
    counters = (
        {}
        if record.status == START
        else {
            "session_time": record.session_time,
            "input_octets": record.input_octets,
            "output_octets": record.output_octets,
            "input_packets": record.input_packets,
            "output_packets": record.output_packets,
        }
    )
    stopped = record.status == STOP
    session.add(
        RadiusSession(
            nas=record.nas,
            acct_session_id=record.acct_session_id,
            decision_id=record.decision_id,
            line_id=decision.line_id if decision is not None else None,
            subscriber_id=decision.subscriber_id if decision is not None else None,
            isp_id=decision.isp_id if decision is not None else None,
            user_name=record.user_name,
            framed_ip=record.framed_ip,
            started_at=started,
            updated_at=record.at,
            stopped_at=record.at if stopped else None,
            stop_cause=record.stop_cause if stopped else None,
            closed_by="stop" if stopped else None,
            **counters,
        )
    )
    session.flush()


def _session_id(session: Session, record: AccountingRecord) -> int | None:
    """The id of the session ``record`` belongs to (None before its first record)."""
    return session.scalars(
        select(RadiusSession.id).where(
            RadiusSession.nas == record.nas,
            RadiusSession.acct_session_id == record.acct_session_id,
            RadiusSession.decision_id == record.decision_id,
        )
    ).first()


def _close_nas(session: Session, record: AccountingRecord) -> list[int]:
    """Accounting-On/Off: close the NAS's open sessions; their ids."""
    when = _when(record)
    ids = list(
        session.scalars(
            select(RadiusSession.id).where(
                RadiusSession.nas == record.nas, RadiusSession.stopped_at.is_(None)
            )
        )
    )
    if not ids:
        return ids
    statement = (
        update(RadiusSession)
        .where(RadiusSession.id.in_(ids), RadiusSession.stopped_at.is_(None))
        .values(
            stopped_at=when,
            updated_at=_larger(RadiusSession.updated_at, when),
            stop_cause=record.status,
            closed_by="nas-off",
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(statement)
    return ids


def account(attributes: dict[str, list[str]], *, nas: str | None, url: str | None = None) -> None:
    """Record an Accounting-Request; returns only once it is committed.

    Args:
        attributes: rlm_rest's request, attribute name -> values (Class as ``0x`` hex,
            Event-Timestamp as a date string).
        nas: the NAS's client name (else NAS-Identifier or NAS-IP-Address is used).
        url: the database URL (default: the settings').

    Raises:
        BadInput: a request that cannot be recorded (no NAS, no session id, bad counters).
        sqlalchemy.exc.SQLAlchemyError: the database did not commit it (the NAS retries).
    """
    record = parse(attributes, nas, utcnow())
    if not record.status:
        log.info(
            "accounting from %s: status %r ignored", record.nas, attributes.get("Acct-Status-Type")
        )
        return
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with session_scope(url) as session:
                if record.status in (ON, OFF):
                    closed = _close_nas(session, record)
                    for closed_id in closed:
                        mirror_radius(session, closed_id)
                    log.info(
                        "%s from %s closed %d sessions", record.status, record.nas, len(closed)
                    )
                else:
                    if _update(session, record) == 0:
                        _insert(session, record)
                    written = _session_id(session, record)
                    if written is not None:
                        mirror_radius(session, written)
            return
        except IntegrityError:
            # a concurrent first record of the same session won the insert: update it
            if attempt == _ATTEMPTS:
                raise


#: A session with no accounting record for this many interim intervals has lost its NAS.
STALE_INTERIMS = 3


def close_stale(url: str | None = None, now: datetime | None = None) -> list[int]:
    """Close the RADIUS sessions that never got their Stop (RFC 2866 delivery is best effort).

    A session open with no record for more than :data:`STALE_INTERIMS` interim intervals
    (``VPOP_RADIUS_INTERIM_SECONDS``) is closed at its last record (``closed_by = stale``,
    ``stop_cause`` ``Stale``): service is known until then, not after. It is kept, never
    deleted, and its service session ends ``stale`` at the same time. A later Interim
    raises its counters but does not reopen it; a late Stop records the NAS's own end.

    Args:
        url: The database URL (default: the settings').
        now: The time to judge silence at (default: now).

    Returns:
        The ids of the sessions closed now, in order.
    """
    now = utcnow() if now is None else now
    silence = timedelta(seconds=STALE_INTERIMS * load_settings().radius_interim_seconds)
    closed: list[int] = []
    with session_scope(url) as session:
        candidates = session.scalars(
            select(RadiusSession.id)
            .where(RadiusSession.stopped_at.is_(None), RadiusSession.updated_at < now - silence)
            .order_by(RadiusSession.id)
        ).all()
        for session_id in candidates:
            done = session.execute(
                update(RadiusSession)
                .where(RadiusSession.id == session_id, RadiusSession.stopped_at.is_(None))
                .values(stopped_at=RadiusSession.updated_at, closed_by="stale", stop_cause="Stale")
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], done).rowcount:
                mirror_radius(session, session_id)
                closed.append(session_id)
    if closed:
        log.warning("closed %d stale RADIUS sessions (no record for %s)", len(closed), silence)
    return closed


def session_view(row: RadiusSession) -> dict[str, Any]:
    """A session as JSON (CLI, API, pages)."""
    return {
        "id": row.id,
        "nas": row.nas,
        "acct_session_id": row.acct_session_id,
        "decision_id": row.decision_id,
        "line": row.line_id,
        "subscriber": row.subscriber_id,
        "isp": row.isp_id,
        "user_name": row.user_name,
        "framed_ip": row.framed_ip,
        "started_at": iso(row.started_at),
        "updated_at": iso(row.updated_at),
        "stopped_at": iso(row.stopped_at),
        "stop_cause": row.stop_cause,
        "closed_by": row.closed_by,
        "session_time": row.session_time,
        "input_octets": row.input_octets,
        "output_octets": row.output_octets,
        "input_packets": row.input_packets,
        "output_packets": row.output_packets,
    }
