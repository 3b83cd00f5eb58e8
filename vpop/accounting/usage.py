"""Polled counters become session traffic and usage rollups, in the poll's own transaction.

The monitoring poller measures, per router, one counter delta per line (its nftables
counters) and per interface. :func:`record_poll` attributes each line's delta to the line's
``selection`` service session(s) and adds it to the hourly and daily usage rollups of the
subscriber and of the ISP; an active lease's uplink delta goes to the lease's rollups. All
writes are two driver-level ``executemany`` statements (sessions, rollups): a poll carries
about 200 lines and must stay cheap.

When the line's session changed during the delta's interval ``(at - seconds, at]`` (a
selection was confirmed in between), the delta is split between the sessions in proportion
to the time each held the line, in integers whose sum is exactly the delta's share of the
time the line had a session. Rollups are written at the bucket of the poll time ``at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import bindparam, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from vpop.accounting.buckets import bucket_of
from vpop.accounting.models import PERIODS, ServiceSession, UsageRollup
from vpop.catalogue.service import Line
from vpop.core.prepared import Prepared
from vpop.core.time import as_utc
from vpop.leasing.service import Lease

#: A rollup's key: (level, isp_id, subject).
RollupKey = tuple[str, str, str]
_MICRO = timedelta(microseconds=1)
_COUNTERS = ("bytes_in", "bytes_out", "packets_in", "packets_out")


class Measured(NamedTuple):  # a tuple, not a dataclass: a poll makes one per line
    """One counter delta of a line or an uplink, in the subscriber's (or lease's) directions.

    Attributes:
        seconds: The interval the delta covers, ending at the poll (positive).
        bytes_in: Bytes from the subscriber (a line's rx) or received from the ISP (an
            uplink's rx).
        bytes_out: Bytes to the subscriber (a line's tx) or sent to the ISP (an uplink's tx).
        packets_in: Packets, as ``bytes_in``.
        packets_out: Packets, as ``bytes_out``.
        covered: Whether the delta comes from a regular poll (no gap, reset or first poll):
            only covered seconds count as measured time in a report's coverage.
        after: The raw cumulative counters read at the poll (``bytes_in, bytes_out,
            packets_in, packets_out``), when known: with a session's cut (the counters read
            right after the push that moved the line) the delta is split at the cut.
    """

    seconds: float
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    covered: bool
    after: tuple[int, int, int, int] | None = None


def measured(
    seconds: float,
    values: Mapping[str, int],
    note: str | None,
    usable: bool,
    after: Mapping[str, int] | None = None,
) -> Measured | None:
    """A counter delta (``vpop.monitoring`` ``Delta`` fields) as a :class:`Measured`.

    ``rx`` is ``in`` and ``tx`` is ``out``: for a line, rx is what the subscriber sent.

    Args:
        seconds: The delta's interval.
        values: Its non-negative increases by counter name (``rx_bytes``, ``tx_bytes``,
            ``rx_packets``, ``tx_packets``).
        note: Its note: None, ``wrap``, ``reset``, ``gap`` or ``duplicate``.
        usable: Whether its values are measurements.
        after: The raw counters read at the poll (same names), for a split at a cut; only
            kept when the delta is a plain increase (no reset or wrap in between).

    Returns:
        None for a delta with nothing to count (a first poll, a duplicate or out-of-order
        reading, an implausible reset); covered only when ``note`` is None or ``wrap``.
    """
    if not values:
        return None
    return measured_counts(
        seconds, _raw(values), note, usable, None if after is None else _raw(after)
    )


def measured_counts(
    seconds: float,
    counts: Sequence[int],
    note: str | None,
    usable: bool,
    after: tuple[int, int, int, int] | None = None,
) -> Measured | None:
    """:func:`measured` of counts already in order: what the poller passes for each line.

    Args:
        seconds: The delta's interval.
        counts: Its increases: ``bytes_in, bytes_out, packets_in, packets_out`` (a line's or
            uplink's rx bytes, tx bytes, rx packets, tx packets); more items are ignored.
        note: Its note.
        usable: Whether its values are measurements.
        after: The raw counters read at the poll, in the same order.

    Returns:
        As :func:`measured`.
    """
    if not usable or seconds <= 0 or note == "duplicate":
        return None
    return Measured(
        seconds,
        int(counts[0]),
        int(counts[1]),
        int(counts[2]),
        int(counts[3]),
        note in (None, "wrap"),
        None if after is None or note in ("reset", "wrap") else after,
    )


def _raw(values: Mapping[str, int]) -> tuple[int, int, int, int]:
    return (
        int(values.get("rx_bytes", 0)),
        int(values.get("tx_bytes", 0)),
        int(values.get("rx_packets", 0)),
        int(values.get("tx_packets", 0)),
    )


class Tally:
    """Additions collected in Python, then written in one statement per table."""

    def __init__(self) -> None:
        """An empty tally."""
        # per session id: bytes_in, bytes_out, packets_in, packets_out, covered seconds
        self.sessions: dict[int, list[float]] = {}
        # per rollup key: the same five, and samples
        self.rollups: dict[RollupKey, list[float]] = {}

    def add_session(self, session_id: int, counts: Sequence[int], covered: float) -> None:
        """Add traffic (``bytes_in, bytes_out, packets_in, packets_out``) to a session."""
        _add(self.sessions, session_id, counts, covered, None)

    def add_rollup(
        self, key: RollupKey, counts: Sequence[int], covered: float, samples: int = 1
    ) -> None:
        """Add traffic and ``samples`` deltas to a rollup key (both periods)."""
        _add(self.rollups, key, counts, covered, samples)

    def write(self, session: Session, at: datetime, counted_at: datetime | None = None) -> None:
        """Write the sessions' additions and the rollups at the buckets of ``at``.

        Args:
            session: The caller's session (its transaction is not committed here).
            at: The time the rollups are written at (its hour and UTC day).
            counted_at: The sessions' new ``last_counted_at`` (``at`` when None).
        """
        connection = session.connection()
        if self.sessions:
            _update_sessions(connection, self.sessions, counted_at or at)
        if self.rollups:
            _upsert_rollups(connection, self.rollups, at)


def _add(
    totals: dict[Any, list[float]],
    key: Any,
    counts: Sequence[int],
    covered: float,
    samples: int | None,
) -> None:
    # called for every line of every poll: plain indexing, no loops
    total = totals.get(key)
    if total is None:
        totals[key] = [counts[0], counts[1], counts[2], counts[3], covered]
        if samples is not None:
            totals[key].append(samples)
        return
    total[0] += counts[0]
    total[1] += counts[1]
    total[2] += counts[2]
    total[3] += counts[3]
    total[4] += covered
    if samples is not None:
        total[5] += samples


def _mark(connection: Connection) -> str:
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def _bind_time(connection: Connection, column: Any, value: datetime) -> Any:
    """A time as the driver takes it for ``column`` (UTCDateTime's processing, done once)."""
    process = column.type._cached_bind_processor(connection.dialect)  # noqa: SLF001
    return value if process is None else process(value)


def _update_sessions(
    connection: Connection, additions: Mapping[int, Sequence[float]], counted_at: datetime
) -> None:
    mark = _mark(connection)
    table = ServiceSession.__table__
    stamp = _bind_time(connection, table.c.last_counted_at, counted_at)
    sets = ", ".join(f"{name} = {name} + {mark}" for name in (*_COUNTERS, "covered_seconds"))
    sql = f"UPDATE service_sessions SET {sets}, last_counted_at = {mark} WHERE id = {mark}"
    # in id order: two concurrent writers lock rows in the same order (PostgreSQL)
    params = [(*adds, stamp, session_id) for session_id, adds in sorted(additions.items())]
    _executemany(connection, sql, params)


def _upsert_rollups(
    connection: Connection, additions: Mapping[RollupKey, Sequence[float]], at: datetime
) -> None:
    mark = _mark(connection)
    column = UsageRollup.__table__.c.bucket
    names = (*_COUNTERS, "covered_seconds", "samples")
    sets = ", ".join(f"{name} = usage_rollups.{name} + excluded.{name}" for name in names)
    sql = (
        "INSERT INTO usage_rollups (period, level, isp_id, subject, bucket, "
        f"{', '.join(names)}) VALUES ({', '.join(mark for _ in range(5 + len(names)))}) "
        f"ON CONFLICT (period, level, isp_id, subject, bucket) DO UPDATE SET {sets}"
    )
    # sorted: two concurrent writers lock rows in the same order (PostgreSQL)
    ordered = sorted(additions.items())
    params: list[tuple[Any, ...]] = []
    for period in PERIODS:
        bucket = _bind_time(connection, column, bucket_of(at, period))
        params.extend((period, *key, bucket, *adds) for key, adds in ordered)
    _executemany(connection, sql, params)


def _executemany(connection: Connection, sql: str, params: list[tuple[Any, ...]]) -> None:
    """``executemany`` on the driver's cursor of ``connection`` (in its transaction)."""
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(sql, params)
    finally:
        cursor.close()


def subscriber_keys(subscriber_id: str, isp_id: str) -> tuple[RollupKey, RollupKey]:
    """The rollup keys a subscriber's traffic through an ISP is added to."""
    return ("subscriber", isp_id, subscriber_id), ("isp", isp_id, isp_id)


def _counts(m: Measured) -> tuple[int, int, int, int]:
    return m.bytes_in, m.bytes_out, m.packets_in, m.packets_out


#: A session's cut: when the line's counters were read after the push that opened it, and
#: their raw values (bytes_in, bytes_out, packets_in, packets_out).
Cut = tuple[datetime, tuple[int, int, int, int]]


def split(
    m: Measured,
    held: Iterable[tuple[int, datetime, datetime | None]],
    at: datetime,
    cuts: Mapping[int, Cut] | None = None,
) -> list[tuple[int, tuple[int, int, int, int], float]]:
    """Share a delta ending at ``at`` among the sessions that held the line during it.

    A move has a cut when the engine read the line's counters right after the push (the
    session it opened carries them): the session that held the line before gets exactly
    what was counted up to the cut, the new one the rest (:func:`_at_cut`). Without a cut,
    or when the numbers do not fit (a reset in between, more than one move), the delta is
    shared in proportion to time.

    Args:
        m: The delta; its interval is ``(at - m.seconds, at]``.
        held: ``(session id, started_at, ended_at or None)`` of the candidate sessions.
        at: The poll time.
        cuts: Per session id, the cut of the move that opened it.

    Returns:
        ``(session id, (bytes_in, bytes_out, packets_in, packets_out), seconds)`` per session
        that held the line for part of the interval, in time order: each counter is shared
        in proportion to time with integer parts (cumulative rounding down) whose sum is
        the delta's value times the share of the interval the line had a session, which is
        the whole value when sessions cover the whole interval. ``seconds`` is the time each
        held it.
    """
    start = at - timedelta(seconds=m.seconds)
    whole = (at - start) // _MICRO
    if whole <= 0:
        return []
    held = list(held)
    if cuts and m.after is not None:
        at_cut = _at_cut(m, held, start, at, cuts)
        if at_cut is not None:
            return at_cut
    spans: list[tuple[datetime, int, int]] = []
    for session_id, started_at, ended_at in held:
        low = max(as_utc(started_at), start)
        high = min(as_utc(ended_at) if ended_at is not None else at, at)
        width = (high - low) // _MICRO
        if width > 0:
            spans.append((low, session_id, width))
    spans.sort()
    counts = _counts(m)
    if len(spans) == 1 and spans[0][2] == whole:
        return [(spans[0][1], counts, m.seconds)]
    parts: list[tuple[int, tuple[int, int, int, int], float]] = []
    done = 0
    for _, session_id, width in spans:
        before, done = done, done + width
        share = tuple(v * done // whole - v * before // whole for v in counts)
        parts.append((session_id, (share[0], share[1], share[2], share[3]), width / 1e6))
    return parts


def _at_cut(
    m: Measured,
    held: Sequence[tuple[int, datetime, datetime | None]],
    start: datetime,
    at: datetime,
    cuts: Mapping[int, Cut],
) -> list[tuple[int, tuple[int, int, int, int], float]] | None:
    """Split at a move's cut: the one move of the interval, from a session that held the
    line since before it to one still open. None when that is not the case or the counters
    do not fit between the two readings."""
    if len(held) != 2 or m.after is None:
        return None
    (old_id, old_start, old_end), (new_id, _, new_end) = sorted(held, key=lambda h: h[1])
    cut = cuts.get(new_id)
    if cut is None or old_end is None or new_end is not None or as_utc(old_start) > start:
        return None
    cut_at, baseline = as_utc(cut[0]), cut[1]
    delta = _counts(m)
    if cut_at <= start:  # the traffic moved before this interval began
        return [(new_id, delta, m.seconds)]
    if cut_at > at:
        return None
    before = [after - d for after, d in zip(m.after, delta, strict=True)]
    old = tuple(b - p for b, p in zip(baseline, before, strict=True))
    if any(not 0 <= part <= d for part, d in zip(old, delta, strict=True)):
        return None
    new = tuple(d - part for d, part in zip(delta, old, strict=True))
    old_seconds = (cut_at - start).total_seconds()
    return [
        (old_id, (old[0], old[1], old[2], old[3]), old_seconds),
        (new_id, (new[0], new[1], new[2], new[3]), m.seconds - old_seconds),
    ]


def record_poll(
    session: Session,
    *,
    router: str,
    at: datetime,
    lines: Mapping[str, Measured],
    uplinks: Mapping[str, Measured],
) -> dict[str, int]:
    """Attribute one poll's deltas to service sessions and usage rollups.

    Called by the poller inside the poll's transaction: the samples, the sessions' traffic
    and the rollups commit together or not at all.

    Args:
        session: The poll's session (not committed here).
        router: The polled router.
        at: The poll time (timezone-aware); every delta ends there.
        lines: Per line interface, its delta (lines without one are left out).
        uplinks: Per interface, its delta; those of the router's active leases' uplinks
            go to the lease rollups (in = rx, out = tx), the rest are ignored.

    Returns:
        Per line interface, the service session its sample belongs to (the one holding
        the line at ``at``, else the last that held it during the interval).
    """
    at = as_utc(at)
    tally = Tally()
    attributed: dict[str, int] = {}
    if lines:
        _attribute_lines(session, router, at, lines, tally, attributed)
    if uplinks:
        leases = session.execute(
            select(Lease.id, Lease.isp_id, Lease.uplink).where(
                Lease.router == router, Lease.status == "active"
            )
        ).all()
        for lease_id, isp_id, uplink in leases:
            m = uplinks.get(uplink)
            if m is not None:
                covered = m.seconds if m.covered else 0.0
                tally.add_rollup(("lease", isp_id, str(lease_id)), _counts(m), covered)
    tally.write(session, at)
    return attributed


# a line's selection sessions, with the line's interface: compiled once, bound per poll
_ON_ROUTER = (
    select(Line.interface, ServiceSession.id, ServiceSession.subscriber_id, ServiceSession.isp_id)
    .join(Line, Line.id == ServiceSession.line_id)
    .where(Line.router == bindparam("router"), ServiceSession.source == "selection")
)
# open and started before every delta's interval: each holds its line for the whole delta
# (the common case, read on the driver's cursor: no times to convert)
_WHOLE = Prepared(
    _ON_ROUTER.where(
        ServiceSession.ended_at.is_(None), ServiceSession.started_at <= bindparam("earliest")
    ),
    {"earliest": ServiceSession.__table__.c.started_at.type},
)
# started or ended within the longest interval: shared out by time (split); read with its
# times converted as the ORM converts them (Prepared.rows)
_CHANGED = Prepared(
    _ON_ROUTER.add_columns(
        ServiceSession.started_at,
        ServiceSession.ended_at,
        ServiceSession.baseline_at,
        ServiceSession.baseline_bytes_in,
        ServiceSession.baseline_bytes_out,
        ServiceSession.baseline_packets_in,
        ServiceSession.baseline_packets_out,
    ).where(
        ServiceSession.started_at < bindparam("at"),
        or_(
            ServiceSession.started_at > bindparam("earliest"),
            ServiceSession.ended_at > bindparam("earliest"),
        ),
    ),
    {
        "earliest": ServiceSession.__table__.c.started_at.type,
        "at": ServiceSession.__table__.c.started_at.type,
    },
)


def _attribute_lines(
    session: Session,
    router: str,
    at: datetime,
    lines: Mapping[str, Measured],
    tally: Tally,
    attributed: dict[str, int],
) -> None:
    """Add each line's delta to the sessions that held the line during it.

    The common case is one query: the open sessions that started before every delta's
    interval (each holds its line for the whole interval; no times to read). A second
    query reads, with their times, the sessions that started or ended within the longest
    interval, which :func:`split` shares out.
    """
    earliest = at - timedelta(seconds=max(map(_seconds_of, lines.values())))
    connection = session.connection()
    bound = {"router": router, "earliest": earliest, "at": at}
    cursor = connection.connection.cursor()
    try:
        whole = _WHOLE.run(cursor, connection.dialect, bound).fetchall()
        changed = _CHANGED.rows(cursor, connection.dialect, bound)
    finally:
        cursor.close()
    sessions, rollups = tally.sessions, tally.rollups
    for interface, session_id, subscriber_id, isp_id in whole:
        m = lines.get(interface)
        if m is None:
            continue
        counts = (m.bytes_in, m.bytes_out, m.packets_in, m.packets_out)
        covered = m.seconds if m.covered else 0.0
        sessions[session_id] = [*counts, covered]  # each session is in this query once
        _add(rollups, ("subscriber", isp_id, subscriber_id), counts, covered, 1)
        _add(rollups, ("isp", isp_id, isp_id), counts, covered, 1)
        attributed[interface] = session_id
    held: dict[str, list[tuple[int, datetime, datetime | None]]] = {}
    owner: dict[int, tuple[str, str]] = {}
    cuts: dict[int, Cut] = {}
    for row in changed:
        interface, session_id, subscriber_id, isp_id, started_at, ended_at = row[:6]
        if interface in lines:
            held.setdefault(interface, []).append((session_id, started_at, ended_at))
            owner[session_id] = (subscriber_id, isp_id)
            cut = cut_of(row[6], row[7:11])
            if cut is not None:
                cuts[session_id] = cut
    for interface, candidates in held.items():
        m = lines[interface]
        parts = split(m, candidates, at, cuts)
        seen: set[RollupKey] = set()
        for session_id, counts, seconds in parts:
            covered = seconds if m.covered else 0.0
            tally.add_session(session_id, counts, covered)
            for key in subscriber_keys(*owner[session_id]):
                tally.add_rollup(key, counts, covered, samples=0 if key in seen else 1)
                seen.add(key)
        if parts:
            attributed[interface] = parts[-1][0]


_seconds_of = attrgetter("seconds")


def cut_of(at: datetime | None, values: Sequence[int | None]) -> Cut | None:
    """A session's cut from its ``baseline_*`` columns (None when it has none)."""
    if at is None or any(value is None for value in values):
        return None
    counts = [int(value or 0) for value in values]
    return as_utc(at), (counts[0], counts[1], counts[2], counts[3])
