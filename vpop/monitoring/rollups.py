"""5-minute rollups of monitoring series, and pruning of raw samples.

Raw samples (counters, rates, QoS, utilisation, the poll log) are kept for days; a
:class:`~vpop.db.Rollup` row per series and 5-minute bucket (count, total, minimum, maximum)
is kept much longer, so reports over months read a few thousand rows. Only portable SQL:
the same code runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, case, delete, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from vpop.accounting.service import UsageRollup
from vpop.leasing.service import UtilisationSample
from vpop.monitoring.models import CounterSample, PollLog, QosSample, Rollup

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BUCKET_MINUTES = 5
SERIES_MAX = 120  # Rollup.series is String(120)

# raw tables and the column that dates their rows
RAW_TABLES: tuple[tuple[type[Any], InstrumentedAttribute[datetime]], ...] = (
    (CounterSample, CounterSample.at),
    (QosSample, QosSample.at),
    (UtilisationSample, UtilisationSample.at),
    (PollLog, PollLog.at),
)


def bucket_start(at: datetime, minutes: int = BUCKET_MINUTES) -> datetime:
    """The start of the ``minutes``-long bucket holding ``at``, in UTC.

    Buckets are aligned on the Unix epoch, so 5-minute buckets start at :00, :05, :10 ...
    A time exactly on a boundary starts its bucket: 12:05:00 is in [12:05, 12:10).

    Args:
        at: A timezone-aware time.
        minutes: The bucket length in minutes (positive).

    Returns:
        The bucket's start, timezone-aware UTC.

    Raises:
        ValueError: When ``at`` is naive or ``minutes`` is not positive.
    """
    if minutes <= 0:
        raise ValueError(f"minutes must be positive, not {minutes!r}")
    width = timedelta(minutes=minutes)
    return EPOCH + ((_utc(at) - EPOCH) // width) * width


def add_to_rollup(session: Session, series: str, at: datetime, value: float) -> None:
    """Add one value to the 5-minute rollup of ``series`` that holds ``at``.

    An UPDATE of the bucket's row (count + 1, total + value, the smaller minimum and the
    larger maximum, computed by the database), and an INSERT when no row was updated; both
    in the caller's transaction. Two writers adding the first value of the same bucket at the
    same moment make one of them fail on the ``(series, bucket)`` unique constraint: a series
    has one writer (its monitoring job), or the caller retries.

    Args:
        session: The caller's session (its transaction is not committed here).
        series: The series name (see :func:`series_name`).
        at: When the value was measured (timezone-aware).
        value: The measured value (finite).

    Raises:
        ValueError: When ``value`` is not finite or ``at`` is naive.
    """
    if not math.isfinite(value):
        raise ValueError(f"rollup value must be finite, not {value!r}")
    value = float(value)
    bucket = bucket_start(at)
    result = session.execute(
        update(Rollup)
        .where(Rollup.series == series, Rollup.bucket == bucket)
        .values(
            count=Rollup.count + 1,
            total=Rollup.total + value,
            minimum=case((Rollup.minimum <= value, Rollup.minimum), else_=value),
            maximum=case((Rollup.maximum >= value, Rollup.maximum), else_=value),
        )
        .execution_options(synchronize_session="fetch")
    )
    if cast(CursorResult[Any], result).rowcount == 0:
        session.add(
            Rollup(series=series, bucket=bucket, count=1, total=value, minimum=value, maximum=value)
        )
        session.flush()


def prune(
    session: Session, *, now: datetime, raw_days: float, rollup_days: float
) -> dict[str, int]:
    """Delete raw samples older than ``raw_days`` and rollups older than ``rollup_days``.

    Raw tables: counter, rate, QoS and utilisation samples and the poll log, dated by ``at``;
    rollups (the 5-minute series and the usage rollups) are dated by their bucket's start.
    Service sessions are accounting records and are never deleted. "Older than" is strict:
    a row exactly at the cutoff stays. Rows already loaded in ``session`` are not expunged.

    Args:
        session: The caller's session (its transaction is not committed here).
        now: The current time (timezone-aware).
        raw_days: Age in days beyond which raw rows go.
        rollup_days: Age in days beyond which rollups go.

    Returns:
        Rows deleted per table name, every table listed (0 when none).

    Raises:
        ValueError: When an age is negative or not a number, or ``now`` is naive.
    """
    for name, days in (("raw_days", raw_days), ("rollup_days", rollup_days)):
        if not days >= 0:
            raise ValueError(f"{name} must be a non-negative number of days, not {days!r}")
    now = _utc(now)
    raw_cutoff = now - timedelta(days=raw_days)
    deleted: dict[str, int] = {}
    for model, column in RAW_TABLES:
        deleted[model.__tablename__] = _delete(session, delete(model).where(column < raw_cutoff))
    rollup_cutoff = now - timedelta(days=rollup_days)
    deleted[Rollup.__tablename__] = _delete(
        session, delete(Rollup).where(Rollup.bucket < rollup_cutoff)
    )
    deleted[UsageRollup.__tablename__] = _delete(
        session, delete(UsageRollup).where(UsageRollup.bucket < rollup_cutoff)
    )
    return deleted


def series_name(kind: str, *parts: str) -> str:
    """A series name: its kind and parts joined by colons.

    ``series_name("qos", "isp-b", "rc1", "latency_ms")`` is ``"qos:isp-b:rc1:latency_ms"``,
    ``series_name("util", "lease", "3")`` is ``"util:lease:3"``.

    Args:
        kind: What the series measures (``qos``, ``util``, ...).
        *parts: What it measures it of, most general first.

    Returns:
        The name.

    Raises:
        ValueError: When a part is empty, holds a colon, whitespace or a control character
            (the name would be ambiguous), or the name is longer than a rollup can store.
    """
    for part in (kind, *parts):
        if not isinstance(part, str) or not part or not part.isprintable():
            raise ValueError(f"series name part must be non-empty printable text: {part!r}")
        if ":" in part or any(char.isspace() for char in part):
            raise ValueError(f"series name part must not hold ':' or spaces: {part!r}")
    name = ":".join((kind, *parts))
    if len(name) > SERIES_MAX:
        raise ValueError(f"series name longer than {SERIES_MAX} characters: {name!r}")
    return name


def _delete(session: Session, statement: Delete) -> int:
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount)


def _utc(at: datetime) -> datetime:
    # SQLite stores DateTime(timezone=True) as naive text: every bound time must be UTC
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a timezone-aware time is needed, not {at!r}")
    return at.astimezone(UTC)
