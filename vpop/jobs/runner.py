"""The two kinds of background process ``vpop serve`` supervises, also started alone to scale
out: the worker (``vpop worker``: the order dispatcher and huey's consumer threads) and the
scheduler (``vpop scheduler``: the sweep and the monitoring/lease/payment schedule). Each is
a :class:`Part` with ``start`` and ``stop(timeout)``; :func:`run_until_signal` runs parts
until SIGTERM or SIGINT and stops them within :data:`STOP_SECONDS`.

Nothing an order needs lives only in a process: accepted orders are rows, so a stop (or a
kill) loses none; what a killed process left RUNNING is recovered by the next start.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from vpop.jobs.dispatch import Dispatcher
from vpop.jobs.followups import followups
from vpop.jobs.queue import (
    enqueue_monitor,
    enqueue_reconcile,
    forward_wakeups,
    make_consumer,
    recover,
    running_jobs,
    start_background,
    stop_background,
)
from vpop.jobs.scheduler import Monitor, Sweeper
from vpop.jobs.supervisor import SignalWakeup
from vpop.network.service import register_plugins

log = logging.getLogger(__name__)

#: A stop (SIGTERM) ends every part within this many seconds.
STOP_SECONDS = 1.2

#: A worker's stop that takes this long says what it waited for.
SLOW_STOP_SECONDS = 0.5


class Part(Protocol):
    """Something a process runs in the background until it is stopped."""

    def start(self) -> None: ...

    def stop(self, timeout: float) -> None: ...


class Worker:
    """Runs orders as they are announced (:class:`~vpop.jobs.dispatch.Dispatcher`) and the
    queued jobs (huey's consumer threads), ``workers`` threads each."""

    def __init__(self, workers: int = 4) -> None:
        self.consumer = make_consumer(workers)
        self.dispatcher = Dispatcher(workers)
        self._stopping = threading.Event()

    def start(self) -> None:
        recover()  # a worker may start after a crash while no scheduler runs
        followups.start()
        self.dispatcher.start()
        start_background(self.consumer)
        forward_wakeups(self._stopping)

    def stop(self, timeout: float) -> None:
        started = time.monotonic()
        deadline = started + timeout
        busy = [f"orders of {router}" for router in self.dispatcher.busy()] + running_jobs()
        self._stopping.set()
        self.dispatcher.stop(timeout * 0.75)  # a run in progress gets most of the time
        followups.stop(max(0.0, deadline - time.monotonic()))  # what ended runs left queued
        stop_background(self.consumer, max(0.0, deadline - time.monotonic()))
        took = time.monotonic() - started
        if took >= SLOW_STOP_SECONDS:  # say what it waited for (the supervisor says how long)
            log.warning(
                "vpop worker: stopped in %.2f s; running at the stop: %s",
                took,
                "; ".join(busy) or "nothing (a router run or job that started as it stopped)",
            )


class Scheduler:
    """Recovers what a dead process left, converges every router once, then sweeps and
    schedules the monitoring, lease and payment jobs (:mod:`vpop.jobs.scheduler`)."""

    def __init__(self, routers: Sequence[str] = ()) -> None:
        """Reconcile ``routers`` at start (the routing instances exist before probes)."""
        self.routers = list(routers)
        self.sweeper = Sweeper()
        self.monitor = Monitor(enqueue_monitor)
        self.recovered: dict[str, object] = {}

    def start(self) -> None:
        self.recovered = recover()
        for router in self.routers:
            enqueue_reconcile(router, delay=0)
        self.sweeper.start()
        self.monitor.start()

    def stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.sweeper.stop_event.set()
        self.monitor.stop_event.set()
        self.sweeper.join(max(0.0, deadline - time.monotonic()))
        self.monitor.join(max(0.0, deadline - time.monotonic()))


def settle_heap() -> None:
    """Load what the parts' jobs load on first use, then keep everything alive now out of
    the cyclic garbage collector's passes (``gc.freeze``), as the API processes do
    (:mod:`webhooks.wsgi`).

    Nornir's connection plugins (Netmiko, NAPALM and their drivers, about 600 modules) were
    imported by the first run or poll. A full collection then walked the worker's 218,000
    objects: 270-290 ms in the niced worker and scheduler (measured beside 1,000 accepted
    orders a second, issue 13), and one that fell inside a write-gate hold, a router's lock
    or a selection's run stalled the API's writers or that selection. The first selection
    no longer pays the imports either."""
    register_plugins()
    gc.collect()
    gc.freeze()


def run_until_signal(parts: Sequence[Part], timeout: float = STOP_SECONDS) -> None:
    """Start ``parts`` (the heap settled first: :func:`settle_heap`), block until SIGTERM or
    SIGINT, then stop them (``timeout`` seconds at most in all). Call from the main thread
    of a process that runs them for its life.

    The main thread waits on the signal wake-up pipe (:class:`SignalWakeup`, as the
    supervisor does), not on an event: waiting on an event, it slept on through a SIGTERM
    that another thread took, until the supervisor killed the process at its stop deadline
    (1 stop in about 6 after a load, issue 13)."""
    settle_heap()
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        with SignalWakeup() as wakeup:
            for part in parts:
                part.start()
            while not stop.is_set():  # each pass reads the pipe: the handler has run by then
                wakeup.wait(3600)
    finally:
        deadline = time.monotonic() + timeout
        for part in reversed(parts):
            part.stop(max(0.0, deadline - time.monotonic()) / max(1, len(parts)))
        for sig, handler in previous.items():
            signal.signal(sig, handler)
