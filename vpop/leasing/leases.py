"""Leases: infrastructure (an uplink port) leased to an ISP, provisioned by shaping.

Creating a lease writes it with its first version (:mod:`vpop.leasing.versions`). A lease that
starts now (or started less than :data:`PAST_START_LIMIT` ago) is written ``provisioning`` and
its provisioning is queued, which shapes the ISP's uplink on the router to the lease's peak rate
(``committed_mbps * peak_pct / 100``; tc on frr, a policer on ios/junos) and then marks it
``active``. A lease that starts later (more than :data:`START_LEEWAY` from now) is written
``scheduled``: it holds its uplink against other leases but is not shaped until
:func:`~vpop.leasing.lifecycle.enforce_schedule` starts it. Ending a lease removes the shaping
and marks it ``ended``. Utilisation is measured against the committed rate by the monitoring
jobs (:mod:`vpop.monitoring`), for ``active`` leases only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.catalogue.service import Isp
from vpop.core import validate
from vpop.core.audit import audit
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound, VpopError
from vpop.core.signals import emit
from vpop.core.time import as_utc, utcnow
from vpop.leasing.models import Lease, UtilisationEvent
from vpop.leasing.schemas import LEASE_DEFAULTS, LEASE_RANGES, LEASE_STATUSES
from vpop.leasing.signals import lease_changed
from vpop.leasing.versions import first_version

# the statuses of a lease that still holds its uplink (a scheduled one too: it will need it)
_HOLDING = tuple(status for status in LEASE_STATUSES if status != "ended")

# the statuses in which a lease's uplink is shaped, or being shaped or unshaped
_ON_ROUTER = ("provisioning", "active", "ending")

#: A start later than this from now makes a lease ``scheduled`` (a start "now" sent by a
#: client whose clock runs a little ahead is still now).
START_LEEWAY = timedelta(seconds=1)

#: How far in the past a lease may start (a lease recorded late, the same day); further back
#: would make versions and bills for periods nobody was shaped.
PAST_START_LIMIT = timedelta(days=1)


def check_period(
    starts_at: datetime | None, ends_at: datetime | None, now: datetime
) -> tuple[datetime, datetime | None, bool]:
    """A new lease's start and end, checked: ``(starts_at, ends_at, scheduled)``.

    Args:
        starts_at: The requested start (None: now).
        ends_at: The planned end (None: open-ended).
        now: The time of the request.

    Returns:
        The start and end in UTC, and whether the start is far enough ahead to schedule.

    Raises:
        BadInput: the start is more than :data:`PAST_START_LIMIT` ago, or the end is not
        after now and after the start.
    """
    start = now if starts_at is None else as_utc(starts_at)
    end = None if ends_at is None else as_utc(ends_at)
    if start < now - PAST_START_LIMIT:
        raise BadInput(f"starts_at may be at most {PAST_START_LIMIT.days} day in the past")
    if end is not None and end <= now:
        raise BadInput("ends_at must be in the future")
    if end is not None and end <= start:
        raise BadInput("ends_at must be after starts_at")
    return start, end, start > now + START_LEEWAY


class LeaseConflict(VpopError):
    """The uplink already has an active lease."""

    code = "VPOP-409-LEASE"
    status = 409


def _uplinks(router: str) -> dict[str, dict[str, str]]:
    from vpop.network.service import open_nornir

    with open_nornir() as nr:
        host = nr.inventory.hosts.get(router)
        if host is None:
            raise NotFound(f"unknown router {router!r}", code="VPOP-404-ROUTER")
        uplinks: dict[str, dict[str, str]] = host.get("uplinks", {})
        return uplinks


def create_lease(
    *,
    isp: str,
    router: str,
    committed_mbps: int,
    price_minor: int,
    actor: str,
    peak_pct: int = LEASE_DEFAULTS["peak_pct"],
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    under_pct: int = LEASE_DEFAULTS["under_pct"],
    over_pct: int = LEASE_DEFAULTS["over_pct"],
    hysteresis_pct: int = LEASE_DEFAULTS["hysteresis_pct"],
    event_seconds: int = LEASE_DEFAULTS["event_seconds"],
    url: str | None = None,
) -> Lease:
    """Write a lease for ``isp``'s uplink on ``router`` (with its version 1) and queue its
    provisioning, or, when it starts later, write it ``scheduled`` and queue nothing.

    The ranges and defaults are :data:`~vpop.leasing.schemas.LEASE_RANGES` and
    :data:`~vpop.leasing.schemas.LEASE_DEFAULTS`, the API's and the command line's too.
    ``starts_at`` (default now) may be at most :data:`PAST_START_LIMIT` in the past; more
    than :data:`START_LEEWAY` ahead schedules the lease. ``ends_at`` must be after both now
    and the start.

    Raises:
        BadInput: a value out of range or a bad start or end. NotFound: unknown ISP or
        router, or the ISP has no uplink there. LeaseConflict: the uplink already has a
        lease that has not ended (a scheduled one included).
    """
    isp = validate.name(isp, "isp")
    router = validate.name(router, "router")
    values = {
        "committed_mbps": committed_mbps,
        "price_minor": price_minor,
        "peak_pct": peak_pct,
        "under_pct": under_pct,
        "over_pct": over_pct,
        "hysteresis_pct": hysteresis_pct,
        "event_seconds": event_seconds,
    }
    for field, bounds in LEASE_RANGES.items():
        bounds.check(values[field], field)
    if under_pct + hysteresis_pct >= over_pct - hysteresis_pct:
        raise BadInput("under_pct and over_pct (with hysteresis) must leave a band between them")
    starts_at, ends_at, scheduled = check_period(starts_at, ends_at, utcnow())
    uplink = _uplinks(router).get(isp)
    if uplink is None:
        raise NotFound(f"{isp!r} has no uplink on {router!r}", code="VPOP-404-UPLINK")
    with session_scope(url) as session:
        if session.get(Isp, isp) is None:
            raise NotFound(f"unknown ISP {isp!r}", code="VPOP-404-ISP")
        busy = session.scalars(
            select(Lease).where(
                Lease.router == router,
                Lease.uplink == uplink["interface"],
                Lease.status.in_(_HOLDING),
            )
        ).first()
        if busy is not None:
            raise LeaseConflict(f"uplink {uplink['interface']} on {router} has lease {busy.id}")
        lease = Lease(
            isp_id=isp,
            router=router,
            uplink=uplink["interface"],
            committed_mbps=committed_mbps,
            peak_pct=peak_pct,
            price_minor=price_minor,
            starts_at=starts_at,
            ends_at=ends_at,
            under_pct=under_pct,
            over_pct=over_pct,
            hysteresis_pct=hysteresis_pct,
            event_seconds=event_seconds,
            status="scheduled" if scheduled else "provisioning",
        )
        session.add(lease)
        session.flush()
        session.add(first_version(lease, actor))
        audit(session, actor, "lease.create", f"lease:{lease.id}", **lease_view(lease))
    if not scheduled:
        emit(lease_changed, lease.id)
    return lease


def close_open_events(session: Session, lease_id: int, at: datetime) -> int:
    """Close the lease's open utilisation events at ``at`` (its end).

    An event that opened after ``at`` (a sample timed after the end) closes where it opened,
    so no event outlives its lease.

    Args:
        session: The transaction the lease is ended in.
        lease_id: The lease.
        at: When the lease ended.

    Returns:
        How many events were closed.
    """
    events = session.scalars(
        select(UtilisationEvent).where(
            UtilisationEvent.lease_id == lease_id, UtilisationEvent.closed_at.is_(None)
        )
    ).all()
    for event in events:
        event.closed_at = max(as_utc(event.opened_at), as_utc(at))
    return len(events)


def end_lease(lease_id: int, actor: str, url: str | None = None) -> Lease:
    """End a lease now: mark it ``ending`` (the queue then removes its shaping), close its
    open utilisation events at its end, and stop it from counting as open anywhere.

    The lease's ``ends_at`` becomes now, or stays the planned end if that is earlier.
    The monitoring poller measures only ``active`` leases, so no event opens after this.

    Args:
        lease_id: The lease to end.
        actor: Who ends it, for the audit log.
        url: The database URL (default: ``VPOP_DATABASE_URL``).

    Returns:
        The lease, ``ending``. Ending an ``ending`` lease again queues its removal again. A
        ``scheduled`` lease (never shaped) is ``ended`` at once and nothing is queued.

    Raises:
        NotFound: no such lease.
        BadInput: it has already ended.
    """
    with session_scope(url) as session:
        lease = session.get(Lease, lease_id)
        if lease is None:
            raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
        if lease.status == "ended":
            raise BadInput(f"lease {lease_id} has already ended")
        now = utcnow()
        ends_at = now if lease.ends_at is None else min(as_utc(lease.ends_at), now)
        shaped = lease.status != "scheduled"
        lease.status = "ending" if shaped else "ended"
        lease.ends_at = ends_at
        if not shaped:
            lease.ended_at = now
        closed = close_open_events(session, lease_id, ends_at)
        audit(session, actor, "lease.end", f"lease:{lease_id}", events_closed=closed)
    if shaped:
        emit(lease_changed, lease_id)
    return lease


def lease_view(lease: Lease) -> dict[str, Any]:
    """The public JSON shape of a lease."""
    return {
        "lease": lease.id,
        "isp": lease.isp_id,
        "router": lease.router,
        "uplink": lease.uplink,
        "committed_mbps": lease.committed_mbps,
        "peak_pct": lease.peak_pct,
        "price_minor": lease.price_minor,
        "currency": lease.currency,
        "starts_at": lease.starts_at.isoformat() if lease.starts_at else None,
        "ends_at": lease.ends_at.isoformat() if lease.ends_at else None,
        "under_pct": lease.under_pct,
        "over_pct": lease.over_pct,
        "hysteresis_pct": lease.hysteresis_pct,
        "event_seconds": lease.event_seconds,
        "status": lease.status,
    }


def provision(lease_id: int, url: str | None = None) -> str:
    """Apply a lease on its router: shape the uplink (provisioning, or active again after a
    change of rate) or unshape it (ending).

    Returns the lease's new status (``active`` or ``ended``); a ``scheduled`` or ``ended``
    lease is left alone and its status returned. When the lease's status changed while the
    router was being shaped (it was set to end meanwhile), the status is left for the job
    queued by that change. On failure the lease keeps its status and the error is audited;
    the caller (a queued task) retries.
    """
    from tasks.shape import shape_uplink
    from vpop.core.locks import hold, lock_ttl, router_lock_name
    from vpop.network.service import one_router, open_nornir

    with session_scope(url) as session:
        lease = session.get(Lease, lease_id)
        if lease is None:
            raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
        router, status = lease.router, lease.status
    if status not in _ON_ROUTER:
        return status
    # the router lock: a lease's shaper is a change to the router like any selection
    with hold(router_lock_name(router), wait=lock_ttl(), url=url) as lock:
        # read again under the lock: a job queued after this one may have run meanwhile
        with session_scope(url) as session:
            lease = session.get(Lease, lease_id)
            assert lease is not None
            uplink, status = lease.uplink, lease.status
            rate = lease.committed_mbps * lease.peak_pct / 100
        if status not in _ON_ROUTER:
            return status
        with open_nornir() as nr:
            target = one_router(nr, router)
            host = target.inventory.hosts.get(router)
            if host is None:
                raise NotFound(f"unknown router {router!r}", code="VPOP-404-ROUTER")
            if host.platform != "frr":
                raise VpopError(
                    f"{router} is {host.platform}: render its policer with render_lease and push"
                    " it with the platform's driver",
                    code="VPOP-501-LEASE-PLATFORM",
                )
            lock.fence()  # a late holder whose lease ended must not push
            result = target.run(
                task=shape_uplink,
                interface=uplink,
                rate_mbps=None if status == "ending" else rate,
                on_failed=True,
            )[router]
        with session_scope(url) as session:
            lock.fence(session)  # record the outcome only while the lock is ours
            lease = session.get(Lease, lease_id)
            assert lease is not None
            if result.failed:
                audit(
                    session,
                    "provisioning",
                    "lease.provision_failed",
                    f"lease:{lease_id}",
                    error=str(result[0].exception),
                )
                raise VpopError(f"lease {lease_id}: {result[0].exception}", code="VPOP-502-LEASE")
            if lease.status != status:
                return lease.status  # changed meanwhile: the job that change queued follows
            lease.status = "ended" if status == "ending" else "active"
            if lease.status == "ended":
                lease.ended_at = utcnow()
            audit(
                session,
                "provisioning",
                f"lease.{lease.status}",
                f"lease:{lease_id}",
                diff=result[0].diff,
            )
            return lease.status
