"""What an ISP owes the routing centre for its leases in one period, prorated by day.

A lease version is charged for the days of the period on which it is **in force at 00:00Z**:
the day ``d`` counts when ``valid_from <= d 00:00Z < valid_to`` (``valid_to`` None: still in
force) and the lease had not ended by then (``ended_at`` None or after ``d 00:00Z``). At most
one version of a lease is in force at an instant, so every day of a lease is charged once,
to the version in force when the day began. The charge of a version is its monthly price
times the days it counts over the days of the month, rounded half up in integers::

    (price_minor * days + days_in_month // 2) // days_in_month

Rounding is per version, so two versions of one month may together differ from the monthly
price by a minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.billing.periods import period_bounds
from vpop.core.time import as_utc
from vpop.leasing.service import Lease, LeaseVersion, versions_between

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class LeaseCharge:
    """The charge of one lease version for one period (``amount_minor`` is positive)."""

    isp_id: str
    lease_id: int
    version: int
    currency: str
    price_minor: int
    days: int
    days_in_month: int
    first_day: datetime
    amount_minor: int
    period: str

    @property
    def charge_key(self) -> str:
        """The settlement line's unique key: one charge per lease version and period."""
        return f"lease:{self.lease_id}:{self.version}:{self.period}"

    @property
    def description(self) -> str:
        """The statement line's text."""
        return (
            f"lease {self.lease_id} v{self.version}: {self.days}/{self.days_in_month} days"
            f" of {self.price_minor}"
        )


def prorated(price_minor: int, days: int, days_in_month: int) -> int:
    """``price_minor * days / days_in_month`` rounded half up, in integers."""
    return (price_minor * days + days_in_month // 2) // days_in_month


def _days_in_force(
    version: LeaseVersion, ended_at: datetime | None, start: datetime, end: datetime
) -> list[datetime]:
    """The days (their 00:00Z) of ``[start, end)`` at whose start ``version`` is in force."""
    valid_from = as_utc(version.valid_from)
    valid_to = None if version.valid_to is None else as_utc(version.valid_to)
    ended = None if ended_at is None else as_utc(ended_at)
    days = []
    day = start
    while day < end:
        if (
            valid_from <= day
            and (valid_to is None or day < valid_to)
            and (ended is None or day < ended)
        ):
            days.append(day)
        day += _DAY
    return days


def lease_charges(session: Session, period: str, *, isp: str | None = None) -> list[LeaseCharge]:
    """The charges of every lease version in force on some day of ``period``.

    Args:
        session: An open session.
        period: ``YYYY-MM``.
        isp: Only this ISP's leases (None: every ISP's).

    Returns:
        One charge per version with at least one day, by ISP, lease and version.

    Raises:
        PeriodInvalid: ``period`` is not ``YYYY-MM``.
    """
    start, end = period_bounds(period)
    days_in_month = (end - start).days
    query = select(Lease.id, Lease.isp_id, Lease.ended_at)
    if isp is not None:
        query = query.where(Lease.isp_id == isp)
    leases = {row[0]: (row[1], row[2]) for row in session.execute(query)}
    charges = []
    for version in versions_between(session, sorted(leases), start, end):
        isp_id, ended_at = leases[version.lease_id]
        days = _days_in_force(version, ended_at, start, end)
        if not days:
            continue
        charges.append(
            LeaseCharge(
                isp_id=isp_id,
                lease_id=version.lease_id,
                version=version.version,
                currency=version.currency,
                price_minor=version.price_minor,
                days=len(days),
                days_in_month=days_in_month,
                first_day=days[0],
                amount_minor=prorated(version.price_minor, len(days), days_in_month),
                period=period,
            )  # fmt: skip
        )
    charges.sort(key=lambda c: (c.isp_id, c.lease_id, c.version))
    return charges
