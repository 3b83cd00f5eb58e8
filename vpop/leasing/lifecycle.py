"""A lease's life after it is written: started when its time comes, ended when its planned end
passes, renewed or changed in between.

:func:`enforce_schedule` is what the scheduler runs every ``VPOP_LEASE_CHECK_SECONDS`` (the
queue's ``leases`` monitoring job): a ``scheduled`` lease whose start has come becomes
``provisioning`` and is queued (through :data:`~vpop.leasing.signals.lease_changed`) to be
shaped; a lease past its ``ends_at`` is ended as :func:`~vpop.leasing.leases.end_lease` ends
it. :func:`change_lease` renews a lease (a new planned end) or changes its terms, writing the
next :class:`~vpop.leasing.models.LeaseVersion`; a new rate or peak reshapes the uplink.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from vpop.core.audit import audit
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.signals import emit
from vpop.core.time import as_utc, utcnow
from vpop.leasing.leases import close_open_events
from vpop.leasing.models import Lease
from vpop.leasing.schemas import LEASE_RANGES
from vpop.leasing.signals import lease_changed
from vpop.leasing.versions import current_version, latest_number, version_of

#: The actor the audit log names for what the schedule does.
SCHEDULE_ACTOR = "schedule"

#: The terms a change may set (the planned end aside).
CHANGEABLE = ("committed_mbps", "peak_pct", "price_minor")


def _move(session: Session, lease_id: int, old: str, **values: Any) -> bool:
    """Set the lease's columns only if it still has status ``old`` (a concurrent end or
    start wins, and this run then leaves that lease alone)."""
    result = session.execute(
        update(Lease)
        .where(Lease.id == lease_id, Lease.status == old)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def enforce_schedule(url: str | None = None, now: datetime | None = None) -> dict[str, list[int]]:
    """Start the scheduled leases whose time has come and end those past their planned end.

    * ``scheduled``, start passed: ``provisioning``, then queued to be shaped.
    * ``scheduled``, end passed too (it was never started in time): ``ended`` at once,
      nothing to unshape.
    * ``provisioning`` or ``active``, end passed: ``ending`` (the queue removes the shaping,
      then marks it ``ended``), its open utilisation events closed at its end.

    Every step is audited (actor ``schedule``). Running it again changes nothing more.

    Args:
        url: The database URL (default: ``VPOP_DATABASE_URL``).
        now: The time to enforce at (default: now).

    Returns:
        ``{"started": [lease ids], "ended": [lease ids]}``, each by id.
    """
    now = utcnow() if now is None else as_utc(now)
    started: list[int] = []
    ended: list[int] = []
    queued: list[int] = []
    with session_scope(url) as session:
        due = session.execute(
            select(Lease.id, Lease.status, Lease.starts_at, Lease.ends_at)
            .where(
                or_(
                    and_(Lease.status == "scheduled", Lease.starts_at <= now),
                    and_(
                        Lease.status.in_(("scheduled", "provisioning", "active")),
                        Lease.ends_at.is_not(None),
                        Lease.ends_at <= now,
                    ),
                )
            )
            .order_by(Lease.id)
        ).all()
        for lease_id, status, starts_at, ends_at in due:
            end = None if ends_at is None else as_utc(ends_at)
            if end is not None and end <= now:
                shaped = status != "scheduled"
                values: dict[str, Any] = {"status": "ending" if shaped else "ended"}
                if not shaped:
                    values["ended_at"] = now
                if not _move(session, lease_id, status, **values):
                    continue
                closed = close_open_events(session, lease_id, end)
                audit(
                    session,
                    SCHEDULE_ACTOR,
                    "lease.end",
                    f"lease:{lease_id}",
                    ends_at=end.isoformat(),
                    events_closed=closed,
                    started=shaped,
                )
                ended.append(lease_id)
                if shaped:
                    queued.append(lease_id)
            elif _move(session, lease_id, status, status="provisioning"):
                audit(
                    session,
                    SCHEDULE_ACTOR,
                    "lease.start",
                    f"lease:{lease_id}",
                    starts_at=as_utc(starts_at).isoformat(),
                )
                started.append(lease_id)
                queued.append(lease_id)
    for lease_id in queued:
        emit(lease_changed, lease_id)
    return {"started": started, "ended": ended}


def change_lease(
    lease_id: int,
    *,
    actor: str,
    committed_mbps: int | None = None,
    peak_pct: int | None = None,
    price_minor: int | None = None,
    ends_at: datetime | None = None,
    url: str | None = None,
) -> Lease:
    """Renew a lease (a new planned end) or change its terms, effective now.

    In one transaction: the version in force is closed now and the next is written from now
    (for a lease that has not started yet, both at its start, so the first terms were never
    in force), and the lease row takes the new terms. Only a new ``ends_at`` is a renewal
    (audited ``lease.renew``, version reason ``renew``); anything else is ``lease.change``
    (reason ``change``). A new committed rate or peak on a ``provisioning`` or ``active``
    lease makes it ``provisioning`` and queues its reshaping. Leaving a value out keeps it.

    Args:
        lease_id: The lease.
        actor: Who changes it, for the audit log and the version.
        committed_mbps: The new committed rate (Mbit/s).
        peak_pct: The new shaped peak, percent of the committed rate.
        price_minor: The new price in minor units.
        ends_at: The new planned end; after now and after the lease's start.
        url: The database URL (default: ``VPOP_DATABASE_URL``).

    Returns:
        The lease with its new terms.

    Raises:
        NotFound: ``VPOP-404-LEASE``, no such lease.
        BadInput: a value out of range (``LEASE_RANGES``) or an ``ends_at`` not after now
        and the start; ``VPOP-400-NO-CHANGE``, nothing given or the lease already has these
        terms; ``VPOP-400-LEASE-ENDED``, the lease is ending or ended.
    """
    given = {
        name: value
        for name, value in (
            ("committed_mbps", committed_mbps),
            ("peak_pct", peak_pct),
            ("price_minor", price_minor),
        )
        if value is not None
    }
    if not given and ends_at is None:
        raise BadInput(
            "nothing to change: give committed_mbps, peak_pct, price_minor or ends_at",
            code="VPOP-400-NO-CHANGE",
        )
    for name, value in given.items():
        LEASE_RANGES[name].check(value, name)
    now = utcnow()
    end = None if ends_at is None else as_utc(ends_at)
    if end is not None and end <= now:
        raise BadInput("ends_at must be in the future")
    reshape = False
    with session_scope(url) as session:
        lease = session.get(Lease, lease_id)
        if lease is None:
            raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
        if lease.status in ("ending", "ended"):
            raise BadInput(
                f"lease {lease_id} is {lease.status}; create a new lease instead",
                code="VPOP-400-LEASE-ENDED",
            )
        start = as_utc(lease.starts_at)
        if end is not None and end <= start:
            raise BadInput("ends_at must be after starts_at")
        terms = {name: getattr(lease, name) for name in CHANGEABLE}
        changed = {name: value for name, value in given.items() if terms[name] != value}
        old_end = None if lease.ends_at is None else as_utc(lease.ends_at)
        renewed = end is not None and end != old_end
        if not changed and not renewed:
            raise BadInput(f"lease {lease_id} already has these terms", code="VPOP-400-NO-CHANGE")
        reason = "change" if changed else "renew"
        effective = max(now, start)
        current = current_version(session, lease_id)
        if current is None and latest_number(session, lease_id) == 0:
            # a lease written before versions existed and missed by the migration
            session.add(
                version_of(lease, number=1, valid_from=start, reason="create", actor="migration")
            )
            session.flush()
            current = current_version(session, lease_id)
        if current is not None:
            current.valid_to = max(effective, as_utc(current.valid_from))
        number = latest_number(session, lease_id) + 1
        for name, value in changed.items():
            setattr(lease, name, value)
        if renewed:
            lease.ends_at = end
        session.add(
            version_of(lease, number=number, valid_from=effective, reason=reason, actor=actor)
        )
        if {"committed_mbps", "peak_pct"} & changed.keys() and lease.status in (
            "provisioning",
            "active",
        ):
            lease.status = "provisioning"
            reshape = True
        details: dict[str, Any] = {
            name: {"from": terms[name], "to": value} for name, value in changed.items()
        }
        if renewed:
            details["ends_at"] = {
                "from": None if old_end is None else old_end.isoformat(),
                "to": None if end is None else end.isoformat(),
            }
        audit(session, actor, f"lease.{reason}", f"lease:{lease_id}", version=number, **details)
    if reshape:
        emit(lease_changed, lease_id)
    return lease
