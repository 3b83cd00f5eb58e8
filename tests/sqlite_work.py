"""How much work statements make on SQLite, counted in the virtual machine's steps: the same
count whatever the machine's speed, so a test can hold that a read does not grow with a
table's history without timing anything."""

from __future__ import annotations

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
