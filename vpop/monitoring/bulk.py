"""Bulk inserts of monitoring rows: one driver-level executemany per poll."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from vpop.core.db import Base


def Table_(model: type[Base]) -> Table:  # noqa: N802 (reads like the class it unwraps)
    """The Core table of a model (typed for mypy)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _insert_many(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows with one driver-level executemany.

    The ORM's and even Core's per-row parameter processing was most of a poll's CPU (a poll
    stores ~800 rows). Every row of one poll shares its timestamp, so the only value that
    needs type processing (UTCDateTime) is processed once; the rest are plain numbers and
    strings. The placeholder style follows the driver (qmark for SQLite, format for
    psycopg), so the statement stays portable.
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    columns = list(rows[0])
    values = list(map(itemgetter(*columns), rows))  # tuples, built in C
    if "at" in columns:
        at = rows[0]["at"]
        if any(row["at"] is not at for row in rows):
            raise ValueError("_insert_many: rows of one call must share their timestamp")
        process = table.c["at"].type._cached_bind_processor(dialect)  # noqa: SLF001
        if process is not None:
            index, stored = columns.index("at"), process(at)
            values = [(*v[:index], stored, *v[index + 1 :]) for v in values]
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(mark for _ in columns)})"
    )
    params = values
    connection.exec_driver_sql(sql, params)
