"""Group commit (vpop.core.group_commit): writers of one process that arrive together share a
transaction, each gets its own answer, and a failing batch costs nobody their write."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from vpop.core.db import dispose_engines, get_engine
from vpop.core.group_commit import GroupCommit

WRITERS = 12


class Watched(GroupCommit):
    """Tells the test when ``depth`` writers are queued."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.leading = threading.Event()
        self.all_queued = threading.Event()

    def _queued(self, depth: int) -> None:
        if depth >= self.depth:
            self.all_queued.set()


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    engine = get_engine(f"sqlite:///{tmp_path / 'g.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    yield engine
    dispose_engines()


def insert(name: str) -> Callable[[Any, Any], int]:
    def work(cursor: Any, dialect: Any) -> int:
        cursor.execute("INSERT INTO t (name) VALUES (?) RETURNING id", (name,))
        return int(cursor.fetchone()[0])

    return work


def write_all(
    engine: Engine, group: Watched, works: list[Callable[[Any, Any], int]]
) -> dict[int, object]:
    """Run each work in a thread of its own, the first alone in the queue (it leads and holds
    the gate until the others are queued); each one's result or exception."""
    answers: dict[int, object] = {}

    def one(index: int) -> None:
        try:
            answers[index] = group.run(engine, works[index], refusals=(LookupError,))
        except Exception as err:  # noqa: BLE001 - the answer the writer got
            answers[index] = err

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(works))]
    threads[0].start()
    assert group.leading.wait(timeout=30)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a writer never got its answer"
    return answers


def rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: id_ for id_, name in conn.execute(text("SELECT id, name FROM t"))}


def held_first(group: Watched, name: str) -> Callable[[Any, Any], int]:
    """The first writer's work: holds the gate until every other writer is queued."""
    write = insert(name)

    def work(cursor: Any, dialect: Any) -> int:
        group.leading.set()
        assert group.all_queued.wait(timeout=30)
        return write(cursor, dialect)

    return work


def test_writers_queued_together_share_one_transaction_and_get_their_own_ids(
    engine: Engine,
) -> None:
    group = Watched(WRITERS)
    works = [held_first(group, "w0")] + [insert(f"w{i}") for i in range(1, WRITERS)]
    answers = write_all(engine, group, works)
    stored = rows(engine)
    assert answers == {i: stored[f"w{i}"] for i in range(WRITERS)}
    assert group.batches == 1  # all queued behind the first: one transaction


def test_a_failing_writer_in_a_batch_costs_the_others_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (name) VALUES ('taken')"))
    group = Watched(WRITERS)
    names = [f"w{i}" for i in range(WRITERS)]
    names[7] = "taken"  # a unique name in use: this writer's insert fails
    works = [held_first(group, names[0])] + [insert(name) for name in names[1:]]
    answers = write_all(engine, group, works)
    assert isinstance(answers[7], sqlite3.IntegrityError)
    stored = rows(engine)
    for i, name in enumerate(names):
        if i != 7:
            assert answers[i] == stored[name]  # written, alone, after the batch failed
    assert len(stored) == WRITERS  # "taken" once, and the others
    assert group.batches == 0


def test_a_writer_alone_gets_its_own_error_and_the_queue_goes_on(engine: Engine) -> None:
    group = GroupCommit()
    assert group.run(engine, insert("a")) == 1
    with pytest.raises(sqlite3.IntegrityError):
        group.run(engine, insert("a"))
    with pytest.raises(LookupError, match="no such"):
        group.run(engine, refuse_unless_present("nobody", "c"), refusals=(LookupError,))
    assert group.run(engine, insert("b")) == 2
    assert rows(engine) == {"a": 1, "b": 2}


def refuse_unless_present(needed: str, name: str) -> Callable[[Any, Any], int]:
    """A work that reads first: refuses (LookupError) unless a row ``needed`` exists, and
    then inserts ``name``."""
    write = insert(name)

    def work(cursor: Any, dialect: Any) -> int:
        cursor.execute("SELECT 1 FROM t WHERE name = ?", (needed,))
        if cursor.fetchone() is None:
            raise LookupError(f"no such row {needed!r}")
        return write(cursor, dialect)

    return work


def test_a_refusing_writer_gets_its_refusal_and_the_batch_goes_on(engine: Engine) -> None:
    """A writer whose reads refuse (before it writes) gets that refusal in its own thread;
    the others of its batch, one reading what an earlier writer of the same batch wrote,
    are written together in one transaction."""
    group = Watched(WRITERS)
    works = [held_first(group, "w0")] + [insert(f"w{i}") for i in range(1, WRITERS)]
    works[5] = refuse_unless_present("nobody", "w5")
    works[9] = refuse_unless_present("w0", "w9")  # w0 is written earlier in the batch
    answers = write_all(engine, group, works)
    assert isinstance(answers[5], LookupError)
    assert str(answers[5]) == "no such row 'nobody'"
    stored = rows(engine)
    assert "w5" not in stored
    assert answers == {i: stored[f"w{i}"] for i in range(WRITERS) if i != 5} | {5: answers[5]}
    assert group.batches == 1  # the refusal did not fail the batch
