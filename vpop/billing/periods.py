"""Billing periods: calendar months in UTC, named ``YYYY-MM``, half-open.

The period ``2026-12`` is [2026-12-01T00:00Z, 2027-01-01T00:00Z): an event at the first
instant of a month belongs to that month, one at the last microsecond before it to the month
before. Allowances, settlements and bills all use these bounds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from vpop.billing.errors import PeriodInvalid
from vpop.core.time import as_utc

_PERIOD = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])", re.ASCII)


def period_of(at: datetime) -> str:
    """The period (``YYYY-MM``, UTC) that holds the instant ``at`` (naive means UTC)."""
    moment = as_utc(at)
    return f"{moment.year:04d}-{moment.month:02d}"


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The first instant of ``period`` and the first instant after it, aware UTC.

    Raises:
        PeriodInvalid: ``period`` is not ``YYYY-MM`` (a month 01-12, a year from 0001).
    """
    match = _PERIOD.fullmatch(period) if isinstance(period, str) else None
    if match is None or match.group(1) == "0000":
        raise PeriodInvalid(f"period {str(period)[:20]!r} is not YYYY-MM (such as 2026-12)")
    year, month = int(match.group(1)), int(match.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    if month == 12:
        if year == 9999:
            raise PeriodInvalid("period 9999-12 has no end: choose an earlier one")
        return start, datetime(year + 1, 1, 1, tzinfo=UTC)
    return start, datetime(year, month + 1, 1, tzinfo=UTC)


def check_period(period: str, now: datetime) -> str:
    """``period`` if it is well formed and has started by ``now``.

    Raises:
        PeriodInvalid: malformed, or it starts after ``now``.
    """
    start, _ = period_bounds(period)
    if start > as_utc(now):
        raise PeriodInvalid(f"period {period} has not started yet")
    return period
