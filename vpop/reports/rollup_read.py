"""What the QoS and utilisation reports read: 5-minute rollups for whole buckets, raw samples
for the partial buckets at a window's edges, and whether raw samples still cover a window.

A rollup row holds a series' count, total, minimum and maximum over one 5-minute bucket
(:mod:`vpop.monitoring.rollups`), so averages, extremes and counts over any whole buckets are
exact whatever raw retention deleted. Only a percentile needs the values themselves: from raw
samples while they cover the whole window, else from the 5-minute averages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from vpop.core.time import as_utc
from vpop.monitoring.service import Rollup
from vpop.reports.windows import Plan, in_ranges, plan_minutes

#: The rollups' bucket width (:data:`vpop.monitoring.rollups.BUCKET_MINUTES`).
BUCKET = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Where a percentile came from.
P95_SOURCES = ("samples", "5min")


@dataclass
class Stat:
    """Count, sum, minimum and maximum of a series' values."""

    count: int = 0
    total: float = 0.0
    minimum: float | None = None
    maximum: float | None = None

    def add(self, count: int, total: float, minimum: float, maximum: float) -> None:
        """Add a rollup row's figures (or one value: ``1, v, v, v``)."""
        if count <= 0:
            return
        self.count += int(count)
        self.total += float(total)
        self.minimum = minimum if self.minimum is None else min(self.minimum, minimum)
        self.maximum = maximum if self.maximum is None else max(self.maximum, maximum)

    def value(self, value: float) -> None:
        """Add one raw value."""
        self.add(1, value, value, value)

    @property
    def average(self) -> float | None:
        """The mean, or None without values."""
        return self.total / self.count if self.count else None


def bucket_start(at: datetime) -> datetime:
    """The start of the 5-minute bucket holding ``at`` (epoch-aligned, UTC)."""
    return _EPOCH + ((as_utc(at) - _EPOCH) // BUCKET) * BUCKET


def plan(start: datetime, end: datetime) -> Plan:
    """The window as whole 5-minute buckets and raw edges."""
    return plan_minutes(start, end, BUCKET)


def series_stats(session: Session, which: ColumnElement[bool], window: Plan) -> dict[str, Stat]:
    """Per series selected by ``which``: its rollups over the plan's whole buckets."""
    out: dict[str, Stat] = {}
    if not window.ranges:
        return out
    statement = (
        select(
            Rollup.series,
            func.sum(Rollup.count),
            func.sum(Rollup.total),
            func.min(Rollup.minimum),
            func.max(Rollup.maximum),
        )
        .where(which, in_ranges(window.ranges, Rollup.bucket))
        .group_by(Rollup.series)
    )
    for series, count, total, minimum, maximum in session.execute(statement):
        out.setdefault(series, Stat()).add(count, total, minimum, maximum)
    return out


def bucket_rows(
    session: Session, which: ColumnElement[bool], window: Plan
) -> list[tuple[str, datetime, Stat]]:
    """Per series selected by ``which`` and whole bucket of the plan: its rollup row."""
    if not window.ranges:
        return []
    statement = select(
        Rollup.series, Rollup.bucket, Rollup.count, Rollup.total, Rollup.minimum, Rollup.maximum
    ).where(which, in_ranges(window.ranges, Rollup.bucket))
    rows = []
    for series, bucket, count, total, minimum, maximum in session.execute(statement):
        stat = Stat()
        stat.add(count, total, minimum, maximum)
        rows.append((series, as_utc(bucket), stat))
    return rows


def raw_complete_since(
    session: Session, raw_at: InstrumentedAttribute[datetime], which: ColumnElement[bool]
) -> datetime:
    """The time from which raw samples are complete (retention has deleted none after it).

    Retention deletes raw samples older than one cutoff, so every raw sample from the oldest
    one kept onwards is there. When rollups (selected by ``which``) are older than the oldest
    raw sample's bucket, samples were deleted up to some time inside or before that bucket:
    raw is complete from the next bucket (or from the sample itself, on a bucket's start).
    When no rollup is older, nothing was deleted: complete from the beginning.

    Returns:
        The time; ``datetime.max`` (UTC) when there are rollups but no raw samples at all.
    """
    oldest_raw = session.scalar(select(func.min(raw_at)))
    oldest_rollup = session.scalar(select(func.min(Rollup.bucket)).where(which))
    earliest = datetime.min.replace(tzinfo=UTC)
    if oldest_rollup is None:
        return earliest
    if oldest_raw is None:
        return datetime.max.replace(tzinfo=UTC)
    oldest_raw = as_utc(oldest_raw)
    first = bucket_start(oldest_raw)
    if as_utc(oldest_rollup) >= first:
        return earliest
    return oldest_raw if oldest_raw == first else first + BUCKET


def bucket_averages(
    rollups: Sequence[tuple[Any, datetime, Stat]],
    raw: Sequence[tuple[Any, datetime, float]],
) -> dict[Any, list[float]]:
    """Per key: the average of each 5-minute bucket, from rollups and raw edge values."""
    edges: dict[tuple[Any, datetime], Stat] = {}
    for key, at, value in raw:
        edges.setdefault((key, bucket_start(at)), Stat()).value(value)
    out: dict[Any, list[float]] = {}
    for key, _, stat in rollups:
        if stat.average is not None:
            out.setdefault(key, []).append(stat.average)
    for (key, _), stat in edges.items():
        if stat.average is not None:
            out.setdefault(key, []).append(stat.average)
    return out
