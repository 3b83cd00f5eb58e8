"""Keep-alive connections spread evenly over gunicorn's API processes.

gunicorn's workers share one listening socket and a connection stays with the process that
accepted it for its whole keep-alive life. When clients open their connections together (a
portal's pool, a benchmark), whichever process happens to be waiting in ``accept`` takes most
of them: at concurrency 32, 24 connections on one process and 8 on the other was measured,
so one process's threads queued for its core and the write gate while the other idled.

:class:`BalancedWorker` is gunicorn's threaded worker (``gthread``) with one rule added:
a process takes a new connection only while it holds at most :data:`SLACK` more than the
least loaded of the other live processes; otherwise it leaves the listening socket to them
until that changes. Each process's count and heartbeat live in a small table shared by all
(anonymous shared memory made by gunicorn's master before the first fork, a slot handed to
each worker by the master in :func:`assign_slot`). A process that stopped beating for
:data:`STALE_SECONDS` (hung, stopped, or at its own connection cap) is left out, so at least
one live process always accepts.

It also polls gunicorn's signal wake-up pipe, so that a SIGTERM that lands on a request
thread stops the process at once (:meth:`BalancedWorker.run`).
"""

from __future__ import annotations

import selectors
import time
from multiprocessing.sharedctypes import RawArray
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from vpop.jobs.supervisor import drain

#: How many more connections than the least loaded other process a process may hold and
#: still accept.
SLACK = 1

#: A process whose heartbeat is older than this is not waited for.
STALE_SECONDS = 3.0

#: Slots in the shared table (more workers than this run unbalanced, as plain ``gthread``).
SLOTS = 64

_table: Any = None  # [connections, heartbeat] per slot, shared by the master and workers


def _shared_table() -> Any:
    global _table
    if _table is None:
        _table = RawArray("d", 2 * SLOTS)
    return _table


def assign_slot(server: Any, worker: Any) -> None:
    """gunicorn's ``pre_fork`` hook (in the master): give ``worker`` a free slot."""
    table = _shared_table()
    used = {getattr(w, "slot", None) for w in server.WORKERS.values()}
    for slot in range(SLOTS):
        if slot not in used:
            table[2 * slot] = table[2 * slot + 1] = 0.0
            worker.slot = slot
            return


def fewest_elsewhere(table: Any, mine: int, now: float) -> float | None:
    """The fewest connections held by another live, accepting process; None if none."""
    fewest: float | None = None
    for slot in range(SLOTS):
        beat = table[2 * slot + 1]
        if slot == mine or beat <= 0.0 or now - beat > STALE_SECONDS:
            continue
        count = table[2 * slot]
        if fewest is None or count < fewest:
            fewest = count
    return fewest


class BalancedWorker(ThreadWorker):  # type: ignore[misc]
    """``gthread`` that leaves new connections to a less loaded sibling (see the module)."""

    slot: int | None = None
    _conns = 0
    _limit = 0

    @property
    def nr_conns(self) -> int:
        return self._conns

    @nr_conns.setter
    def nr_conns(self, value: int) -> None:
        self._conns = value
        if self.slot is not None:
            _table[2 * self.slot] = float(value)

    @property
    def worker_connections(self) -> int:
        """The cap the run loop checks before accepting: this process's own count while a
        sibling holds fewer by more than :data:`SLACK`, else the configured cap."""
        if self.slot is None or not self.alive:
            return self._limit
        fewest = fewest_elsewhere(_table, self.slot, time.monotonic())
        if fewest is not None and self._conns > fewest + SLACK:
            return self._conns
        return self._limit

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._limit = value

    def notify(self) -> None:
        super().notify()
        if self.slot is not None:
            # beating means "alive and able to take connections"
            _table[2 * self.slot + 1] = time.monotonic() if self._conns < self._limit else 0.0

    def run(self) -> None:
        # gunicorn makes PIPE its signal wake-up pipe (signal.set_wakeup_fd) but gthread's
        # main thread does not poll it: a SIGTERM that the kernel hands to a request thread
        # then waits for the main thread's 1 s poll timeout before its handler runs
        self.poller.register(self.PIPE[0], selectors.EVENT_READ, self._signalled)
        try:
            super().run()
        finally:
            if self.slot is not None:
                _table[2 * self.slot + 1] = 0.0  # stopping: never waited for again

    def _signalled(self, _: object) -> None:
        """A signal came (the handler runs as the main thread returns from its poll): empty
        the wake-up pipe, so that it wakes the poll again only for the next signal."""
        drain(self.PIPE[0])
