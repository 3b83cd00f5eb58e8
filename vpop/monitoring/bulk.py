"""A poll's counter series as sample rows, inserted with one driver-level executemany.

Every series of every poll (about 400 per router and poll) goes through
:meth:`PollSeries.read`: one :meth:`~vpop.monitoring.counters.Steps.step`, one row tuple in
:data:`SAMPLE_COLUMNS` order, and for lines and leased uplinks a
:class:`~vpop.accounting.service.Measured` for the usage accounting; no other object per
series. :func:`_insert_many` writes the rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
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
    """Insert rows with one driver-level executemany.

    The ORM's and even Core's per-row parameter processing was most of a poll's CPU (a poll
    stores ~400 rows). Rows are either mappings of column names, whose ``at`` values (one
    timestamp shared by every row of the call) get their type's processing once here, or,
    with ``columns``, sequences in that order holding what the driver takes already (a time
    from :func:`bound_time`): the poller builds those directly. The placeholder style
    follows the driver (qmark for SQLite, format for psycopg), so the statement stays
    portable.

    Raises:
        ValueError: mapping rows that do not share one ``at``.
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    if columns is None:
        dicts: Sequence[Mapping[str, Any]] = rows  # type: ignore[assignment]
        columns = list(dicts[0])
        values: list[Any] = list(map(itemgetter(*columns), dicts))  # tuples, built in C
        if "at" in columns:
            at = dicts[0]["at"]
            if any(row["at"] is not at for row in dicts):
                raise ValueError("_insert_many: rows of one call must share their timestamp")
            index, stored = columns.index("at"), bound_time(session, table.c["at"], at)
            values = [(*v[:index], stored, *v[index + 1 :]) for v in values]
    else:
        values = list(map(tuple, rows))  # SQLAlchemy takes tuples only
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(mark for _ in columns)})"
    )
    connection.exec_driver_sql(sql, values)


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
        table: dict[str, dict[str, int]],
        boot_ids: dict[str, str],
        steps: Steps,
        uplinks: set[str] | None,
    ) -> None:
        """Step every series of ``kind`` (``uplinks`` None: lines) and keep what it gives.

        Raises:
            ValueError: a series without the six counters, or with a value no counter has.
        """
        router, at, is_line, prefix = self.router, self.at, uplinks is None, kind + ":"
        rows, line_rows, step = self.rows, self.line_rows, steps.step
        last = self.last.setdefault((router, kind), {})
        for name, values in table.items():
            try:
                counters = _counters_of(values)
            except KeyError as err:
                raise ValueError(f"counter series {kind}:{name} lacks counter {err}") from err
            last[name], seconds, deltas, rates, note, usable = step(
                last.get(name), counters, boot_ids.get(prefix + name)
            )
            if usable and deltas is not None and rates is not None:
                rx_bps, tx_bps = rates[0] * 8, rates[1] * 8
                row = [
                    router,
                    kind,
                    name,
                    at,
                    *counters,
                    seconds,
                    rx_bps,
                    tx_bps,
                    rates[2],
                    rates[3],
                    deltas[4],
                    deltas[5],
                    note,
                    None,
                ]
                if is_line or name in uplinks:  # type: ignore[operator]
                    m = measured_counts(seconds, deltas, note, usable, counters[:4])
                    if m is not None:
                        (self.used_lines if is_line else self.used_uplinks)[name] = m
                    if not is_line:
                        self.uplink_rates[name] = (rx_bps, tx_bps)
            else:
                row = [router, kind, name, at, *counters, *_NO_RATES, note, None]
            if note:
                self.notes[prefix + name] = note
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
