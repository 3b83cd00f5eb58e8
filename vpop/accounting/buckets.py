"""Where a moment falls in the usage rollups: the start of its hour and of its UTC day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

WIDTH = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def bucket_of(at: datetime, period: str) -> datetime:
    """The start (UTC) of the ``period`` (``hour`` or ``day``) that holds ``at``.

    A moment exactly on a boundary starts its bucket: 13:00:00 is in [13:00, 14:00).

    Raises:
        ValueError: ``at`` is naive or ``period`` is not ``hour`` or ``day``.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a timezone-aware time is needed, not {at!r}")
    at = at.astimezone(UTC)
    if period == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    if period == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"period must be 'hour' or 'day', not {period!r}")


def buckets(start: datetime, end: datetime, period: str) -> list[datetime]:
    """The starts of the ``period`` buckets lying wholly inside ``[start, end)``, in order."""
    width = WIDTH[period]
    first = bucket_of(start, period)
    if first < start.astimezone(UTC):
        first += width
    out: list[datetime] = []
    at = first
    while at + width <= end.astimezone(UTC):
        out.append(at)
        at += width
    return out
