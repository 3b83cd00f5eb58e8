"""What the usage report reads: usage rollups for whole buckets, raw counter samples for the
edges, service sessions and lease terms for the time in service.

Raw samples are turned into traffic the way the accounting writer does: a sample's bytes are
its rate times its seconds (``round(rx_bps * seconds / 8)``), counted at the sample's time;
only samples with ``seconds`` (a usable delta) count, and their seconds are *covered* when
the delta was a regular poll (``note`` None or ``wrap``; gaps, resets and first polls are
not). Line samples belong to the service session they name, uplink samples to the lease of
that router and interface.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Select, Table, and_, case, cast, func, not_, or_, select
from sqlalchemy.orm import Session

from vpop.accounting.service import Cut, Measured, ServiceSession, UsageRollup, cut_of, split
from vpop.core.time import as_utc
from vpop.monitoring.service import CounterSample
from vpop.reports.windows import Plan, Span, in_ranges, in_spans, overlap

#: Covered seconds come from deltas with these notes (see vpop.accounting's ``Measured``).
COVERED_NOTES = (None, "wrap")


@dataclass
class Usage:
    """Traffic and measured seconds, summed."""

    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    covered: float = 0.0

    def add(self, other: Usage) -> None:
        """Add ``other`` to this one."""
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.packets_in += other.packets_in
        self.packets_out += other.packets_out
        self.covered += other.covered


def counter_samples() -> Table:
    """The raw counter samples' table (Core columns: the report reads them in bulk)."""
    table = CounterSample.__table__
    assert isinstance(table, Table)
    return table


def _sample_usage(row: Any) -> Usage:
    seconds = float(row.seconds)
    return Usage(
        bytes_in=round((row.rx_bps or 0.0) * seconds / 8),
        bytes_out=round((row.tx_bps or 0.0) * seconds / 8),
        packets_in=round((row.rx_pps or 0.0) * seconds),
        packets_out=round((row.tx_pps or 0.0) * seconds),
        covered=seconds if row.note in COVERED_NOTES else 0.0,
    )


#: Traffic and measured seconds as the database sums them: ``(bytes_in, bytes_out,
#: packets_in, packets_out, covered)``; a plain tuple, as a report may hold thousands.
Sums = tuple[int, int, int, int, float]

NO_SUMS: Sums = (0, 0, 0, 0, 0.0)

_Statement = TypeVar("_Statement", bound=Select[*tuple[Any, ...]])


def _rollup_sums() -> tuple[Any, ...]:
    """The sums of a group's traffic (as integers: PostgreSQL's sum of a bigint is a
    numeric) and of its covered seconds; never NULL, as a group has rows."""
    r = UsageRollup
    return (
        *(
            cast(func.sum(column), BigInteger)
            for column in (r.bytes_in, r.bytes_out, r.packets_in, r.packets_out)
        ),
        func.sum(r.covered_seconds),
    )


def _sums_of(values: Sequence[Any]) -> Sums:
    b_in, b_out, p_in, p_out, covered = values
    return (int(b_in or 0), int(b_out or 0), int(p_in or 0), int(p_out or 0), covered or 0.0)


def _usage_of(values: Sequence[Any]) -> Usage:
    return Usage(*_sums_of(values))


def plus(sums: Sums, part: Usage) -> Sums:
    """``sums`` with ``part`` added."""
    return (
        sums[0] + part.bytes_in,
        sums[1] + part.bytes_out,
        sums[2] + part.packets_in,
        sums[3] + part.packets_out,
        sums[4] + part.covered,
    )


def _scoped(
    statement: _Statement, level: str, isp: str | None, subjects: Sequence[str] | None
) -> _Statement:
    statement = statement.where(UsageRollup.level == level)
    if isp is not None:
        statement = statement.where(UsageRollup.isp_id == isp)
    if subjects is not None:
        statement = statement.where(UsageRollup.subject.in_(subjects))
    return statement


def rollup_usage(
    session: Session,
    level: str,
    plan: Plan,
    *,
    isp: str | None = None,
    subjects: Sequence[str] | None = None,
) -> dict[tuple[str, str], Sums]:
    """The rollups of the plan's whole buckets, summed per ``(isp_id, subject)`` by the
    database (one result row per key, whatever the window's length)."""
    if not plan.ranges:
        return {}
    r = UsageRollup
    statement = (
        select(r.isp_id, r.subject, *_rollup_sums())
        .where(in_ranges(plan.ranges, r.bucket, r.period))
        .group_by(r.isp_id, r.subject)
    )
    found = session.execute(_scoped(statement, level, isp, subjects))
    return {(row[0], row[1]): row[2:] for row in found}


def rollup_pairs(session: Session, plan: Plan, *, isp: str | None = None) -> set[tuple[str, str]]:
    """The ``(isp_id, subscriber)`` pairs with a subscriber rollup in the plan's buckets
    (key columns only: the primary key's index answers it)."""
    if not plan.ranges:
        return set()
    r = UsageRollup
    statement = (
        select(r.isp_id, r.subject).where(in_ranges(plan.ranges, r.bucket, r.period)).distinct()
    )
    return {
        (isp_id, subject)
        for isp_id, subject in session.execute(_scoped(statement, "subscriber", isp, None))
    }


def rollup_series(
    session: Session,
    level: str,
    plan: Plan,
    *,
    isp: str | None = None,
    subjects: Sequence[str] | None = None,
) -> list[tuple[datetime, int, int]]:
    """The rollups of the plan's whole buckets, summed per bucket by the database:
    ``(bucket start, bytes_in, bytes_out)``."""
    if not plan.ranges:
        return []
    r = UsageRollup
    statement = (
        select(r.bucket, *_rollup_sums()[:2])
        .where(in_ranges(plan.ranges, r.bucket, r.period))
        .group_by(r.bucket)
    )
    return [
        (as_utc(bucket), int(b_in or 0), int(b_out or 0))
        for bucket, b_in, b_out in session.execute(_scoped(statement, level, isp, subjects))
    ]


def rollup_buckets(
    session: Session,
    level: str,
    plan: Plan,
    *,
    isp: str | None = None,
    subjects: Sequence[str] | None = None,
) -> list[tuple[str, datetime, Usage]]:
    """The rollups of the plan's whole buckets, summed per subject and bucket start (for a
    few subjects: the leases of a report, whose buckets fall to different terms)."""
    if not plan.ranges:
        return []
    r = UsageRollup
    statement = (
        select(r.subject, r.bucket, *_rollup_sums())
        .where(in_ranges(plan.ranges, r.bucket, r.period))
        .group_by(r.subject, r.bucket)
    )
    return [
        (subject, as_utc(bucket), _usage_of(values))
        for subject, bucket, *values in session.execute(_scoped(statement, level, isp, subjects))
    ]


def raw_lines(
    session: Session,
    spans: Sequence[Span],
    *,
    isp: str | None = None,
    subscriber: str | None = None,
) -> list[tuple[str, str, datetime, Usage]]:
    """Line samples dated in ``spans``: ``(isp_id, subscriber_id, at, usage)`` per part.

    A sample counts for the service sessions that held its line during its interval
    ``(at - seconds, at]``, shared in proportion to time exactly as the accounting writer
    shares it (:func:`share`); a sample without a session counts for nobody.
    """
    if not spans:
        return []
    samples = counter_samples().c
    s = ServiceSession
    statement = (
        select(
            s.line_id,
            samples.at,
            samples.seconds,
            samples.rx_bps,
            samples.tx_bps,
            samples.rx_pps,
            samples.tx_pps,
            samples.note,
            samples.rx_bytes,
            samples.tx_bytes,
            samples.rx_packets,
            samples.tx_packets,
        )
        .join(s, s.id == samples.session_id)
        .where(samples.kind == "line", samples.seconds.is_not(None), in_spans(spans, samples.at))
    )
    if subscriber is not None:
        statement = statement.where(s.subscriber_id == subscriber)
    found = session.execute(statement).all()
    if not found:
        return []
    earliest = min(as_utc(row.at) - timedelta(seconds=float(row.seconds)) for row in found)
    latest = max(as_utc(row.at) for row in found)
    held: dict[int, list[Holder]] = defaultdict(list)
    for row in session.execute(
        select(
            s.line_id,
            s.started_at,
            s.ended_at,
            s.isp_id,
            s.subscriber_id,
            s.baseline_at,
            s.baseline_bytes_in,
            s.baseline_bytes_out,
            s.baseline_packets_in,
            s.baseline_packets_out,
        ).where(
            s.line_id.in_({row.line_id for row in found}),
            s.source == "selection",
            s.started_at < latest,
            or_(s.ended_at.is_(None), s.ended_at > earliest),
        )
    ):
        line_id, started, ended, isp_id, subscriber_id = row[:5]
        ended_at = None if ended is None else as_utc(ended)
        cut = cut_of(row[5], row[6:10])
        held[line_id].append((as_utc(started), ended_at, isp_id, subscriber_id, cut))
    out = []
    for row in found:
        at = as_utc(row.at)
        whole = _sample_usage(row)
        after = (
            None
            if row.note in ("reset", "wrap")
            else (row.rx_bytes, row.tx_bytes, row.rx_packets, row.tx_packets)
        )
        for (isp_id, subscriber_id), part in share(
            whole, float(row.seconds), at, held[row.line_id], after
        ):
            if isp is None or isp_id == isp:
                out.append((isp_id, subscriber_id, at, part))
    return out


#: A session that may have held a line: started, ended (None: open), ISP, subscriber, and
#: the cut of the move that opened it (None: none).
Holder = tuple[datetime, datetime | None, str, str, Cut | None]


def share(
    whole: Usage,
    seconds: float,
    at: datetime,
    held: Sequence[Holder],
    after: tuple[int, int, int, int] | None = None,
) -> list[tuple[tuple[str, str], Usage]]:
    """Share one line delta ending at ``at`` among the sessions that held the line.

    The accounting writer's own rule (``vpop.accounting.service.split``): at the cut of a
    move when the session it opened has one and the counters fit, else in proportion to the
    time each session held the line during ``(at - seconds, at]``; a session holding the
    whole interval takes it all.

    Args:
        whole: The delta (its ``covered`` is the interval's seconds, or 0 when not covered).
        seconds: The delta's interval.
        at: The poll time.
        held: The line's sessions (:data:`Holder`).
        after: The sample's raw counters (bytes in/out, packets in/out), for a cut.

    Returns:
        ``((isp, subscriber), usage)`` per session that held the line, in time order.
    """
    delta = Measured(
        seconds=seconds,
        bytes_in=whole.bytes_in,
        bytes_out=whole.bytes_out,
        packets_in=whole.packets_in,
        packets_out=whole.packets_out,
        covered=bool(whole.covered),
        after=after,
    )
    holders = [(index, holder[0], holder[1]) for index, holder in enumerate(held)]
    cuts = {index: holder[4] for index, holder in enumerate(held) if holder[4] is not None}
    parts = []
    for index, counts, held_seconds in split(delta, holders, at, cuts):
        covered = held_seconds if whole.covered else 0.0
        isp_id, subscriber_id = held[index][2], held[index][3]
        parts.append(((isp_id, subscriber_id), Usage(*counts, covered)))
    return parts


def raw_uplink(
    session: Session, router: str, uplink: str, spans: Sequence[Span]
) -> list[tuple[datetime, Usage]]:
    """Samples of one router interface dated in ``spans``: ``(at, usage)`` (in = rx)."""
    if not spans:
        return []
    samples = counter_samples().c
    statement = select(
        samples.at,
        samples.seconds,
        samples.rx_bps,
        samples.tx_bps,
        samples.rx_pps,
        samples.tx_pps,
        samples.note,
    ).where(
        samples.kind == "interface",
        samples.router == router,
        samples.name == uplink,
        samples.seconds.is_not(None),
        in_spans(spans, samples.at),
    )
    return [(as_utc(row.at), _sample_usage(row)) for row in session.execute(statement)]


def service_by_pair(
    session: Session,
    start: datetime,
    end: datetime,
    until: datetime,
    *,
    isp: str | None = None,
    subscriber: str | None = None,
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], float]]:
    """Per ``(isp, subscriber)``: the service sessions overlapping ``[start, end)`` and their
    seconds in service within ``[start, until)`` (``until``: the window's end or now).

    The database counts the sessions and those that span all of ``[start, until)`` (the
    usual case: each is in service for all of it) per pair; only the others are read one by
    one, for their overlap.
    """
    s = ServiceSession
    where = [s.started_at < end, or_(s.ended_at.is_(None), s.ended_at > start)]
    if isp is not None:
        where.append(s.isp_id == isp)
    if subscriber is not None:
        where.append(s.subscriber_id == subscriber)
    spans = and_(s.started_at <= start, or_(s.ended_at.is_(None), s.ended_at >= until))
    span = max(0.0, (until - start).total_seconds())
    sessions: dict[tuple[str, str], int] = {}
    service: dict[tuple[str, str], float] = {}
    counted = select(
        s.isp_id, s.subscriber_id, func.count(), func.sum(case((spans, 1), else_=0))
    ).where(*where)
    for isp_id, subscriber_id, count, spanning in session.execute(
        counted.group_by(s.isp_id, s.subscriber_id)
    ):
        sessions[(isp_id, subscriber_id)] = count
        service[(isp_id, subscriber_id)] = spanning * span
    if start < until:
        partial = select(s.isp_id, s.subscriber_id, s.started_at, s.ended_at).where(
            *where, not_(spans)
        )
        for isp_id, subscriber_id, started, ended in session.execute(partial):
            service[(isp_id, subscriber_id)] += overlap(started, ended, start, until)
    return sessions, service
