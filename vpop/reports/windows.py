"""How a report window is read: whole buckets from rollups, the edges from raw samples.

A window ``[start, end)`` splits into the whole UTC days inside it (read from ``day``
rollups), the whole hours around them (``hour`` rollups) and what is left at the edges, at
most two partial hours (raw samples). Every rollup row and raw sample belongs to the bucket
of its time, as the writers put it there, so the three parts never overlap and never leave
a gap: the sum over them is the sum over the window.

The same split with 5-minute buckets serves the QoS and utilisation reports, whose rollups
(:mod:`vpop.monitoring.rollups`) are 5 minutes wide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, false, or_
from sqlalchemy.orm import InstrumentedAttribute

from vpop.accounting.service import WIDTH, bucket_of, buckets
from vpop.core.time import as_utc

Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class Plan:
    """Which rollup buckets and which raw stretches make up a window.

    Attributes:
        ranges: ``(period, first, stop)``: the ``period`` rollups whose bucket starts in
            ``[first, stop)``; each bucket lies wholly inside the window.
        raw: The stretches ``[a, b)`` no whole bucket covers: read from raw samples dated
            in them.
    """

    ranges: tuple[tuple[str, datetime, datetime], ...]
    raw: tuple[Span, ...]


def plan_window(start: datetime, end: datetime, *, days: bool = True) -> Plan:
    """Split ``[start, end)`` into whole days, whole hours and raw edges.

    Args:
        start: The window's start (inclusive, timezone-aware).
        end: The window's end (exclusive).
        days: False reads whole hours even where a whole day would do (a series per hour).

    Returns:
        The plan; its parts are disjoint and together are the window.
    """
    start, end = as_utc(start), as_utc(end)
    ranges: list[tuple[str, datetime, datetime]] = []
    rest: list[Span] = [(start, end)]
    if days:
        whole = buckets(start, end, "day")
        if whole:
            first, stop = whole[0], whole[-1] + WIDTH["day"]
            ranges.append(("day", first, stop))
            rest = [(start, first), (stop, end)]
    raw: list[Span] = []
    for a, b in rest:
        hours = buckets(a, b, "hour") if a < b else []
        if hours:
            first, stop = hours[0], hours[-1] + WIDTH["hour"]
            ranges.append(("hour", first, stop))
            raw += [(a, first), (stop, b)]
        else:
            raw.append((a, b))
    return Plan(
        ranges=tuple(sorted(ranges, key=lambda part: part[1])),
        raw=tuple((a, b) for a, b in raw if a < b),
    )


def plan_minutes(start: datetime, end: datetime, width: timedelta) -> Plan:
    """Split ``[start, end)`` into whole epoch-aligned buckets of ``width`` and raw edges.

    Returns:
        A plan with one range of period ``"5min"`` (whatever the width is called) or none.
    """
    start, end = as_utc(start), as_utc(end)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = epoch + -((epoch - start) // width) * width  # the first bucket start >= start
    stop = epoch + ((end - epoch) // width) * width  # the last bucket end <= end
    if first >= stop:
        return Plan(ranges=(), raw=((start, end),))
    raw = tuple((a, b) for a, b in ((start, first), (stop, end)) if a < b)
    return Plan(ranges=(("5min", first, stop),), raw=raw)


def in_ranges(
    ranges: Sequence[tuple[str, datetime, datetime]],
    bucket: InstrumentedAttribute[datetime],
    period: InstrumentedAttribute[str] | None = None,
) -> ColumnElement[bool]:
    """A WHERE clause: the rollup rows of the plan's ranges (period and bucket)."""
    parts = [
        and_(
            *(() if period is None else (period == name,)),
            bucket >= first,
            bucket < stop,
        )
        for name, first, stop in ranges
    ]
    return or_(*parts) if parts else false()


def in_spans(
    spans: Sequence[Span], at: ColumnElement[datetime] | InstrumentedAttribute[datetime]
) -> ColumnElement[bool]:
    """A WHERE clause: times in any of ``spans`` (half-open)."""
    parts = [and_(at >= a, at < b) for a, b in spans]
    return or_(*parts) if parts else false()


def overlap(a: datetime, b: datetime | None, start: datetime, end: datetime) -> float:
    """Seconds of ``[a, b)`` inside ``[start, end)`` (``b`` None: unbounded)."""
    stop = end if b is None else min(as_utc(b), end)
    return max(0.0, (stop - max(as_utc(a), start)).total_seconds())


def series_buckets(start: datetime, end: datetime, grain: str) -> list[datetime]:
    """The starts of the ``grain`` buckets (``hour`` or ``day``) that meet ``[start, end)``."""
    at = bucket_of(start, grain)
    out: list[datetime] = []
    while at < end:
        out.append(at)
        at += WIDTH[grain]
    return out
