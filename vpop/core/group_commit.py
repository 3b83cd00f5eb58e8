"""Group commit: the short write transactions of one process that arrive together are
written in one transaction, under one hold of the database's write gate, by one thread.

On SQLite one writer is in at a time, so the API's accepted orders queue at the write gate
(:func:`vpop.core.db.write_gate`). Measured at concurrency 32 (issue 13): a hold was 0.25 ms
at the median but 0.6 ms on average and 1.6 ms at p90 (the holder waits for the
interpreter lock between statements while other threads of its process run), and a request
waited 11 ms on average for its turn. Here the writers of a process form a queue: the one at
its front (the leader) takes the gate once, runs the work of everyone queued behind it
(at most :data:`MAX_BATCH`) on its own connection, commits once, and hands each writer its
own result; the next front writer leads the next batch. A writer alone in the queue is a
batch of one, as before.

The leader also runs the reads that decide each writer's write (a writer's work reads and
writes): the writers waiting behind it make no database call at all. Each call into SQLite
lets go of the interpreter lock and waits to take it back; measured in one API process with
8 threads (issue 13), accepting an order cost 0.6 ms of CPU when each request thread read
for itself, twice what it cost with one thread. A writer's work may refuse (raise one of
the ``refusals`` it was given: not found, forbidden) before it writes anything: that is its
answer, and the batch goes on.

If a batch of several fails otherwise (an idempotency key taken meanwhile, for instance), it is
rolled back whole and every writer of it runs its work again alone in its own transaction,
so each gets its own answer or error and nobody's write depends on another's. On databases
without the gate (PostgreSQL, which takes concurrent writers itself) every writer runs alone.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine.interfaces import Dialect

from vpop.core.prepared import gated_commit, raw_transaction

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The most writers one transaction takes.
MAX_BATCH = 64

Work = Callable[[Any, Dialect], T]


#: What a writer's results are announced with once its batch is committed (see ``run``).
After = Callable[[list[T]], None]


class _Writer(Generic[T]):
    __slots__ = ("work", "refusals", "after", "turn", "done", "alone", "result", "refused")

    def __init__(
        self,
        work: Work[T],
        refusals: tuple[type[Exception], ...],
        after: After[T] | None,
        mutex: threading.Lock,
    ) -> None:
        self.work = work
        self.refusals = refusals
        self.after = after
        self.turn = threading.Condition(mutex)
        self.done = False
        self.alone = False  # its batch failed: run again in a transaction of its own
        self.result: Any = None
        self.refused: Exception | None = None  # its work's refusal, raised in its thread


class GroupCommit:
    """The queue of one process's writers to one database (see the module)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._queue: deque[_Writer[Any]] = deque()
        self.batches = 0  # transactions committed for more than one writer (for tests)

    def run(
        self,
        engine: Engine,
        work: Work[T],
        refusals: tuple[type[Exception], ...] = (),
        after: After[T] | None = None,
    ) -> T:
        """Run ``work(cursor, dialect)`` in a committed write transaction and return its
        result, or raise the refusal it raised. ``work`` may run in another thread (the
        batch's leader, on the leader's pooled connection), may run twice (once in a
        rolled-back batch), only uses the cursor it is given, and raises an exception of
        ``refusals`` only before it writes.

        ``after`` (a function that stays the same from call to call) is told of the result
        once it is committed: called once per batch with the results of all its writers
        that gave that ``after`` and were not refused (so what they announce is announced
        once per batch), before ``run`` returns to any of them (one that raises is logged)."""
        if engine.dialect.name != "sqlite":
            return _then(after, _alone(engine, work))
        me: _Writer[T] = _Writer(work, refusals, after, self._mutex)
        with self._mutex:
            self._queue.append(me)
            self._queued(len(self._queue))
            while not me.done and me is not self._queue[0]:
                me.turn.wait()
            if not me.done:
                batch = [self._queue[i] for i in range(min(MAX_BATCH, len(self._queue)))]
        if not me.done:  # at the front: lead the batch (which ends it done too)
            self._lead(engine, batch)
        if me.alone:
            return _then(after, _alone(engine, work))
        if me.refused is not None:
            raise me.refused
        result: T = me.result
        return result

    def _lead(self, engine: Engine, batch: list[_Writer[Any]]) -> None:
        """Write ``batch`` in one transaction; then hand the results and the lead on."""
        ok = False
        try:
            with raw_transaction(engine) as (cursor, dialect), gated_commit(engine, cursor):
                for writer in batch:
                    try:
                        writer.result = writer.work(cursor, dialect)
                    except writer.refusals as refused:
                        writer.refused = refused
            ok = True
        except Exception:
            if len(batch) == 1:
                raise  # a batch of one: its own error, as without grouping
        finally:
            if ok:
                _announce(batch)
            with self._mutex:
                for writer in batch:
                    writer.done = True
                    writer.alone = not ok
                    self._queue.popleft()
                    writer.turn.notify()
                if self._queue:
                    self._queue[0].turn.notify()  # the next leader
                if ok and len(batch) > 1:
                    self.batches += 1

    def _queued(self, depth: int) -> None:
        """Called with the queue's depth each time a writer joins it (a hook for tests)."""


def _announce(batch: list[_Writer[Any]]) -> None:
    """Call each ``after`` of a committed batch once, with its writers' results (every
    writer still gets its answer when one fails)."""
    results: dict[Any, list[Any]] = {}
    for writer in batch:
        if writer.after is not None and writer.refused is None:
            results.setdefault(writer.after, []).append(writer.result)
    for after, told in results.items():
        _tell(after, told)


def _then(after: After[T] | None, result: T) -> T:
    """``result``, once ``after`` (if any) has been told of it."""
    if after is not None:
        _tell(after, [result])
    return result


def _tell(after: After[Any], results: list[Any]) -> None:
    """``after(results)``; one that fails is logged (what was committed stays)."""
    try:
        after(results)
    except Exception:
        log.exception("announcing committed writes failed (%s)", after)


def _alone(engine: Engine, work: Work[T]) -> T:
    """``work`` in a transaction of its own, committed under the write gate."""
    with raw_transaction(engine) as (cursor, dialect), gated_commit(engine, cursor):
        result = work(cursor, dialect)
    return result


_groups: dict[str, GroupCommit] = {}
_groups_lock = threading.Lock()


def group_for(engine: Engine) -> GroupCommit:
    """This process's writer queue for ``engine``'s database."""
    key = f"{os.getpid()}:{engine.url}"
    group = _groups.get(key)
    if group is None:
        with _groups_lock:
            group = _groups.setdefault(key, GroupCommit())
    return group
