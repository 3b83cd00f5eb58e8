"""Lease versions: the terms of a lease (committed rate, peak, price, planned end) over time.

Version 1 is written with the lease and is in force from its start. A renewal (a new planned
end) or a change of terms (:func:`~vpop.leasing.lifecycle.change_lease`) closes the version in
force and opens the next at the same instant, so a lease's versions chain without gaps or
overlaps and a report or bill for a past period reads the terms in force then
(:func:`versions_between`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, get_args

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vpop.core.db import session_scope
from vpop.core.errors import NotFound
from vpop.core.time import as_utc, iso
from vpop.leasing.models import Lease, LeaseVersion
from vpop.leasing.schemas import VersionReason

#: Why a version was written.
VERSION_REASONS: tuple[str, ...] = get_args(VersionReason)


def version_view(row: LeaseVersion) -> dict[str, Any]:
    """The public JSON shape of a lease version (times as ISO 8601 UTC, None while open)."""
    return {
        "lease": row.lease_id,
        "version": row.version,
        "valid_from": iso(row.valid_from),
        "valid_to": iso(row.valid_to),
        "committed_mbps": row.committed_mbps,
        "peak_pct": row.peak_pct,
        "price_minor": row.price_minor,
        "currency": row.currency,
        "ends_at": iso(row.ends_at),
        "reason": row.reason,
        "actor": row.actor,
        "created_at": iso(row.created_at),
    }


def version_of(
    lease: Lease, *, number: int, valid_from: datetime, reason: str, actor: str
) -> LeaseVersion:
    """Version ``number`` of ``lease``: its current terms, in force from ``valid_from``.

    Args:
        lease: The lease (flushed, so it has an id), with the terms to record.
        number: The version number (1 for a new lease).
        valid_from: When these terms take force.
        reason: One of :data:`VERSION_REASONS`.
        actor: Who wrote it.
    """
    return LeaseVersion(
        lease_id=lease.id,
        version=number,
        valid_from=valid_from,
        valid_to=None,
        committed_mbps=lease.committed_mbps,
        peak_pct=lease.peak_pct,
        price_minor=lease.price_minor,
        currency=lease.currency,
        ends_at=lease.ends_at,
        reason=reason,
        actor=actor,
    )


def first_version(lease: Lease, actor: str) -> LeaseVersion:
    """Version 1 of a lease being created: its terms, in force from its start."""
    return version_of(
        lease, number=1, valid_from=as_utc(lease.starts_at), reason="create", actor=actor
    )


def current_version(session: Session, lease_id: int) -> LeaseVersion | None:
    """The lease's version in force (the open one), or None for a lease without versions."""
    return session.scalars(
        select(LeaseVersion)
        .where(LeaseVersion.lease_id == lease_id, LeaseVersion.valid_to.is_(None))
        .order_by(LeaseVersion.version.desc())
    ).first()


def latest_number(session: Session, lease_id: int) -> int:
    """The highest version number the lease has (0 when none)."""
    row = session.scalars(
        select(LeaseVersion.version)
        .where(LeaseVersion.lease_id == lease_id)
        .order_by(LeaseVersion.version.desc())
    ).first()
    return row or 0


def list_versions(lease_id: int, url: str | None = None) -> list[dict[str, Any]]:
    """A lease's versions, oldest first.

    Args:
        lease_id: The lease.
        url: The database URL (default: ``VPOP_DATABASE_URL``).

    Raises:
        NotFound: ``VPOP-404-LEASE``, no such lease.
    """
    with session_scope(url) as session:
        if session.get(Lease, lease_id) is None:
            raise NotFound(f"unknown lease {lease_id}", code="VPOP-404-LEASE")
        rows = session.scalars(
            select(LeaseVersion)
            .where(LeaseVersion.lease_id == lease_id)
            .order_by(LeaseVersion.version)
        ).all()
        return [version_view(row) for row in rows]


def versions_between(
    session: Session, lease_ids: Sequence[int], start: datetime, end: datetime
) -> list[LeaseVersion]:
    """The versions of ``lease_ids`` in force at any time in ``[start, end)``.

    A version is in force over ``[valid_from, valid_to)``; one that never was (a zero-length
    version, changed before its lease started) is left out.

    Args:
        session: An open session.
        lease_ids: The leases (an empty sequence gives an empty list).
        start: The window's start (inclusive).
        end: The window's end (exclusive).

    Returns:
        The versions, by lease id then version number.
    """
    if not lease_ids or end <= start:
        return []
    rows = session.scalars(
        select(LeaseVersion)
        .where(
            LeaseVersion.lease_id.in_(list(lease_ids)),
            LeaseVersion.valid_from < end,
            or_(LeaseVersion.valid_to.is_(None), LeaseVersion.valid_to > start),
        )
        .order_by(LeaseVersion.lease_id, LeaseVersion.version)
    ).all()
    return [
        row for row in rows if row.valid_to is None or as_utc(row.valid_to) > as_utc(row.valid_from)
    ]
