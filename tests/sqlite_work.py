"""How much work statements make on SQLite, counted in the virtual machine's steps: the same
count whatever the machine's speed, so a test can hold that a read does not grow with a
table's history without timing anything."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy import event

from vpop.core.db import dispose_engines, get_engine


def vm_steps(url: str, work: Callable[[], object]) -> int:
    """The SQLite virtual machine steps that ``work`` makes on ``url`` (on every connection
    the engine opens meanwhile: the pool is emptied before and after)."""
    dispose_engines()
    engine = get_engine(url)
    steps = [0]

    def count(dbapi_connection: Any, _record: Any) -> None:
        def tick() -> int:
            steps[0] += 1
            return 0  # go on

        dbapi_connection.set_progress_handler(tick, 1)

    event.listen(engine, "connect", count)
    try:
        work()
    finally:
        event.remove(engine, "connect", count)
        dispose_engines()
    return steps[0]


#: What a NOT NULL column the caller left out gets, by its declared type's first word.
_FILL = {"INTEGER": 0, "BIGINT": 0, "FLOAT": 0.0, "BOOLEAN": 0, "DATETIME": "2026-12-01 00:00:00"}


def insert_history(url: str, table: str, rows: list[dict[str, object]]) -> None:
    """Rows of past activity written as they are, on the driver (foreign keys not checked:
    a history whose lines and ISPs need not exist); a NOT NULL column without a default
    that the rows leave out gets a zero, an empty string or a fixed time."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        db.execute("PRAGMA foreign_keys=OFF")
        info = db.execute(f"PRAGMA table_info({table})").fetchall()
        fill = {
            name: _FILL.get(kind.split("(")[0].upper(), "")
            for _cid, name, kind, notnull, default, pk in info
            if notnull and default is None and not pk and name not in rows[0]
        }
        columns = [*rows[0], *fill]
        db.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [[*row.values(), *fill.values()] for row in rows],
        )


def with_history(
    url: str, table: str, row: Callable[[int], dict[str, object]], work: Callable[[], object]
) -> tuple[int, int]:
    """The steps of ``work`` with 100 rows of ``table``'s history (``row(i)`` for each), then
    with 5,100."""
    insert_history(url, table, [row(i) for i in range(100)])
    few = vm_steps(url, work)
    insert_history(url, table, [row(i) for i in range(100, 5100)])
    return few, vm_steps(url, work)
