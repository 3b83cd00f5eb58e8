"""The order dispatcher of a worker process: new orders are run the moment they are accepted.

An accepted order is one row (status RECEIVED) written in the same transaction as its
idempotency record and audit entry: the order row *is* the queue entry. The process that
accepted it sends the router's name on the ``orders`` wake-up channel
(:mod:`vpop.core.wake`); every worker process listens there and starts a run for that router
on one of its threads at once (:func:`vpop.selection.service.process_router`, which takes
the router's database lock and applies every waiting order of the router as one change).

No order depends on a wake-up arriving: the dispatcher also looks for routers with waiting
orders when it starts and every :data:`CHECK_SECONDS` (and the sweep re-announces orders
waiting too long), so orders accepted while no worker ran, or whose wake-up was lost, are run
too. A router already running in this process is run again when its run ends if more
orders came meanwhile; a router another process holds is left to it (the holder looks for
waiting orders before it lets the lock go).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select

from vpop.core.db import session_scope
from vpop.core.locks import LockBusy
from vpop.core.wake import FINISHED, ORDERS, Listener, notify
from vpop.selection import service as engine
from vpop.selection.service import Order, OrderStatus

log = logging.getLogger(__name__)

#: Seconds between two looks for waiting orders nobody announced (a safety net).
CHECK_SECONDS = 1.0


def announce(router: str, base: Path | None = None) -> None:
    """Tell every worker process that ``router`` has orders waiting (after the commit)."""
    notify(ORDERS, router.encode(), base)


def announce_finished(order_id: int) -> None:
    """Tell the API processes that order ``order_id`` ended (their long-polls look again)."""
    notify(FINISHED, str(order_id).encode())


def announce_waiting(router: str | None = None) -> None:
    """Announce every router with waiting orders (only ``router``, when named): what a
    holder of a router's lock does when it lets go, since a worker that found the lock busy
    left the router's new orders to it."""
    if router is not None:
        if engine.has_waiting(router):
            announce(router)
        return
    for name in waiting_routers():
        announce(name)


def waiting_routers() -> set[str]:
    """Routers with RECEIVED orders now."""
    with session_scope() as session:
        return set(
            session.scalars(
                select(Order.router).where(Order.status == OrderStatus.RECEIVED.value).distinct()
            )
        )


class Dispatcher(threading.Thread):
    """Listens on the ``orders`` channel and runs each announced router on a pool of threads."""

    def __init__(
        self,
        workers: int = 4,
        run: Callable[[str], object] | None = None,
        base: Path | None = None,
        check_seconds: float = CHECK_SECONDS,
        waiting: Callable[[], set[str]] | None = None,
    ) -> None:
        """Run routers on ``workers`` threads with ``run`` (default: process the router's
        waiting orders); listen in ``base`` (default: the state directory's); ``waiting``
        names the routers with waiting orders (default: :func:`waiting_routers`)."""
        super().__init__(name="vpop-dispatch", daemon=True)
        self.listener = Listener(ORDERS, base)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="vpop-run")
        self.stop_event = threading.Event()
        self.run_router = run or functools.partial(run_router, stopping=self.stop_event.is_set)
        self.check_seconds = check_seconds
        self.waiting = waiting or waiting_routers
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._again: set[str] = set()
        self._futures: set[futures.Future[None]] = set()

    def run(self) -> None:
        try:
            self._submit_all(self.waiting())
            while not self.stop_event.is_set():
                payloads = self.listener.wait(self.check_seconds)
                if self.stop_event.is_set():
                    break
                if payloads:
                    routers = {p.decode(errors="replace") for p in payloads if p}
                else:
                    routers = self.waiting()  # quiet for a while: the safety look
                self._submit_all(routers)
        except Exception:
            log.exception("the order dispatcher stopped")
            raise
        finally:
            self.listener.close()

    def stop(self, timeout: float) -> None:
        """Stop listening and wait up to ``timeout`` seconds for the runs in progress (a run
        still going then is left to the lock's lease and the next start's recovery)."""
        deadline = time.monotonic() + timeout
        self.stop_event.set()
        self.listener.interrupt()  # out of its wait at once
        self.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            running = list(self._futures)
        self.pool.shutdown(wait=False, cancel_futures=True)
        futures.wait(running, timeout=max(0.0, deadline - time.monotonic()))

    def busy(self) -> list[str]:
        """The routers whose orders are being run now."""
        with self._lock:
            return sorted(self._running)

    def _submit_all(self, routers: set[str]) -> None:
        for router in routers:
            with self._lock:
                if router in self._running:
                    self._again.add(router)
                    continue
                self._running.add(router)
            try:
                future = self.pool.submit(self._run_one, router)
            except RuntimeError:  # the pool is shut down: stopping
                with self._lock:
                    self._running.discard(router)
                continue
            with self._lock:
                self._futures.add(future)
            future.add_done_callback(self._forget)

    def _forget(self, future: futures.Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _run_one(self, router: str) -> None:
        for _ in range(1000):  # bounded: each pass applies every order waiting then
            try:
                self.run_router(router)
            except LockBusy:
                pass  # another process holds it and looks for waiting orders before it lets go
            except Exception:
                log.exception("run of %s failed", router)
                with self._lock:  # not again at once: the safety look retries
                    self._again.discard(router)
            with self._lock:
                if router not in self._again or self.stop_event.is_set():
                    self._running.discard(router)
                    return
                self._again.discard(router)
        with self._lock:
            self._running.discard(router)


def run_router(router: str, stopping: Callable[[], bool] | None = None) -> object:
    """Apply the router's waiting orders; if more came while the lock was held, go again
    (unless ``stopping`` says the worker is stopping)."""
    runs = engine.process_router(router, stopping=stopping)
    if stopping is None or not stopping():
        announce_waiting(router)
    return runs
