"""A poll's counter series as sample rows, inserted with one multi-row INSERT.

Every series of every poll (about 400 per router and poll) goes through
:meth:`PollSeries.read`: one :meth:`~vpop.monitoring.counters.Steps.step`, one row tuple in
:data:`SAMPLE_COLUMNS` order, and for lines and leased uplinks a
:class:`~vpop.accounting.service.Measured` for the usage accounting; no other object per
series. :func:`_insert_many` writes the rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.orm import Session

from vpop.accounting.service import Measured, measured_counts
from vpop.core.db import Base
from vpop.monitoring.counters import COUNTERS, Last, Steps


def Table_(model: type[Base]) -> Table:  # noqa: N802 (reads like the class it unwraps)
    """The Core table of a model (typed for mypy)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def bound_time(session: Session, column: Column[Any], at: datetime) -> Any:
    """``at`` as the driver takes it for ``column`` (its type's bind processing, done once)."""
    process = column.type._cached_bind_processor(session.connection().dialect)  # noqa: SLF001
    return at if process is None else process(at)


def _insert_many(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
    columns: Sequence[str] | None = None,
) -> None:
    """Insert rows with multi-row ``INSERT ... VALUES (...), (...)`` on the driver's cursor.

    The ORM's and even Core's per-row parameter processing was most of a poll's CPU (a poll
    stores ~400 rows), and then the driver's per-row work of an executemany: one statement
    of many rows costs about three quarters of it. Rows are either mappings of column
    names, whose ``at`` values (one timestamp shared by every row of the call) get their
    type's processing once here, or, with ``columns``, sequences in that order holding what
    the driver takes already (a time from :func:`bound_time`): the poller builds those
    directly. The placeholder style follows the driver (qmark for SQLite, format for
    psycopg), so the statement stays portable; a statement carries at most
    :data:`MAX_PARAMETERS` values (SQLite allows 32,766, PostgreSQL 65,535).

    Raises:
        ValueError: mapping rows that do not share one ``at``.
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    values: Sequence[Sequence[Any]]
    if columns is None:
        dicts: Sequence[Mapping[str, Any]] = rows  # type: ignore[assignment]
        columns = list(dicts[0])
        values = list(map(itemgetter(*columns), dicts))  # tuples, built in C
        if "at" in columns:
            at = dicts[0]["at"]
            if any(row["at"] is not at for row in dicts):
                raise ValueError("_insert_many: rows of one call must share their timestamp")
            index, stored = columns.index("at"), bound_time(session, table.c["at"], at)
            values = [(*v[:index], stored, *v[index + 1 :]) for v in values]
    else:
        values = rows  # type: ignore[assignment]
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    per_statement = max(1, MAX_PARAMETERS // len(columns))
    cursor = connection.connection.cursor()
    try:
        for first in range(0, len(values), per_statement):
            chunk = values[first : first + per_statement]
            sql = _insert_sql(table.name, tuple(columns), mark, len(chunk))
            cursor.execute(sql, tuple(chain.from_iterable(chunk)))
    finally:
        cursor.close()


#: The most values one INSERT of :func:`_insert_many` binds.
MAX_PARAMETERS = 30_000


@lru_cache(maxsize=256)
def _insert_sql(table: str, columns: tuple[str, ...], mark: str, rows: int) -> str:
    """``INSERT INTO table (columns) VALUES (...), ...`` for ``rows`` rows."""
    row = f"({', '.join(mark for _ in columns)})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}"


#: The columns of a poll's counter samples, in the order the poller builds their rows.
SAMPLE_COLUMNS = (
    "router",
    "kind",
    "name",
    "at",
    *COUNTERS,
    "seconds",
    "rx_bps",
    "tx_bps",
    "rx_pps",
    "tx_pps",
    "new_errors",
    "new_drops",
    "note",
    "session_id",
)
_NO_RATES = (None,) * 7
_counters_of = itemgetter(*COUNTERS)


def _as_tuples(
    kind: str, table: Mapping[str, Sequence[int]] | Mapping[str, Mapping[str, int]]
) -> Mapping[str, tuple[int, ...]]:
    """``table`` with each series' counters as a tuple in :data:`COUNTERS` order.

    Raises:
        ValueError: a series given by name that lacks a counter.
    """
    # one table comes one way (a mix is refused by the steps: a mapping is no counter)
    first = next(iter(table.values()), ())
    if type(first) is tuple:
        return table  # type: ignore[return-value]
    converted: dict[str, tuple[int, ...]] = {}
    for name, values in table.items():
        if isinstance(values, Mapping):
            try:
                converted[name] = _counters_of(values)
            except KeyError as err:
                raise ValueError(f"counter series {kind}:{name} lacks counter {err}") from err
        else:
            converted[name] = tuple(values)
    return converted


class PollSeries:
    """One poll's series turned into sample rows, usage deltas and uplink rates."""

    def __init__(
        self,
        router: str,
        at: Any,
        notes: dict[str, str],
        last: dict[tuple[str, str], dict[str, Last]],
    ) -> None:
        """Collect the series of one poll of ``router``.

        Args:
            router: The polled router.
            at: The poll time as the driver takes it (the rows' ``at``).
            notes: Where each series' note goes (``"<kind>:<name>"``).
            last: Per ``(router, kind)``, the previous reading of each series by name: read
                and updated.
        """
        self.last = last
        self.router = router
        self.at = at
        self.notes = notes
        #: The rows in :data:`SAMPLE_COLUMNS` order; a line's ``session_id`` (last) is None
        #: until :meth:`attribute` sets it.
        self.rows: list[list[Any]] = []
        self.line_rows: dict[str, list[Any]] = {}
        self.used_lines: dict[str, Measured] = {}
        self.used_uplinks: dict[str, Measured] = {}
        self.uplink_rates: dict[str, tuple[float, float]] = {}  # rx, tx bit/s

    def read(
        self,
        kind: str,
        table: Mapping[str, Sequence[int]] | Mapping[str, Mapping[str, int]],
        boot_ids: Mapping[str, str],
        steps: Steps,
        uplinks: set[str] | None,
    ) -> None:
        """Step every series of ``kind`` (``uplinks`` None: lines) and keep what it gives.

        Args:
            kind: ``interface`` or ``line``.
            table: Each series' counters by name: a tuple in :data:`COUNTERS` order (what
                ``collect_counters`` gives) or a mapping by counter name.
            boot_ids: The series' boot ids by name.
            steps: The poll's steps.
            uplinks: The leased uplinks among the interfaces; None for lines.

        Raises:
            ValueError: a series without the six counters, or with a value no counter has.
        """
        router, at, is_line, prefix = self.router, self.at, uplinks is None, kind + ":"
        rows, line_rows, notes = self.rows, self.line_rows, self.notes
        used = self.used_lines if is_line else self.used_uplinks
        last = self.last.setdefault((router, kind), {})
        series = _as_tuples(kind, table)
        # fmt: off
        for (name, counters, seconds, d0, d1, d2, d3, d4, d5,
             r0, r1, r2, r3, _, _, note, usable) in steps.each(series, last, boot_ids):
            # fmt: on
            if usable and d0 is not None:
                rx_bps, tx_bps = r0 * 8, r1 * 8  # type: ignore[operator]
                row = [
                    router,
                    kind,
                    name,
                    at,
                    *counters,
                    seconds,
                    rx_bps,
                    tx_bps,
                    r2,
                    r3,
                    d4,
                    d5,
                    note,
                    None,
                ]
                if is_line or name in uplinks:  # type: ignore[operator]
                    m = measured_counts(seconds, (d0, d1, d2, d3), note, usable, counters[:4])  # type: ignore[arg-type]
                    if m is not None:
                        used[name] = m
                    if not is_line:
                        self.uplink_rates[name] = (rx_bps, tx_bps)
            else:
                row = [router, kind, name, at, *counters, *_NO_RATES, note, None]
            if note:
                notes[prefix + name] = note
            rows.append(row)
            if is_line:
                line_rows[name] = row

    def attribute(self, sessions: dict[str, int]) -> None:
        """Set each line row's ``session_id``: the service session its traffic went to."""
        line_rows = self.line_rows
        for name, session_id in sessions.items():
            row = line_rows.get(name)
            if row is not None:
                row[-1] = session_id
