"""What follows a finished order, off the router's thread.

When an order ends, the router's thread says so at once (its long-polls answer) and then
queues what follows: the requester's callback, the losing ISP's, the CoA of the line's live
sessions (:func:`vpop.jobs.wiring.order_done`). Deciding those took three reads and
sometimes a queued job: 3-8 ms measured (issue 13) during which the router's next waiting
order, often the same client's next selection, waited for the thread. In a worker process
they run on one thread of their own instead, in the order the orders ended (and the orders
that ended meanwhile are decided together, in one read).

Nothing is lost when the worker stops: :meth:`FollowUps.stop` runs what is still queued
before the process ends (the stop gives it what is left of its time). Processes that never
start the thread (the API, tests, huey's immediate mode) run the follow-ups in the caller,
as before.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_STOP = object()


class FollowUps:
    """One thread running queued follow-ups in order."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # a submit is queued before the stop marker, or runs here

    def start(self) -> None:
        """Run submitted follow-ups on a thread of their own from now on."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="order-follow-ups", daemon=True
                )
                self._thread.start()

    def submit(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the thread, or here when it is not started (or stopped)."""
        with self._lock:
            if self._thread is not None:
                self._queue.put(work)
                return
        work()

    def stop(self, timeout: float) -> None:
        """Run what is queued, then end the thread (``timeout`` seconds at most); later
        submits run in their caller."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:  # until the stop marker
            work = self._queue.get()
            if work is _STOP:
                return
            try:
                work()  # type: ignore[operator]
            except Exception:  # one order's follow-up must not end the others'
                log.exception("a finished order's follow-up failed")


#: This process's follow-ups (started by the worker, :class:`vpop.jobs.runner.Worker`).
followups = FollowUps()
