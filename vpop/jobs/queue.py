"""The job queue: huey, with SQLite storage by default and Redis to scale out.

``VPOP_QUEUE_URL`` chooses the storage: ``sqlite:///path`` (default, a file under ``var/``)
or ``redis://host:port/db``. The queue holds only router names and order ids: the orders
themselves are committed to the database before anything is enqueued, so a lost queue loses
no order (the sweep re-enqueues what is waiting).

Locks are not the queue's: router and monitoring locks are leased rows in the database
(:mod:`vpop.core.locks`), so a killed process never leaves one held for ever, whatever the
queue's storage. The queue keeps no task results either (``results=False``): nothing reads
them, and they would only pile up.

New orders do not go through huey: the order row is the queue entry and the worker
processes' dispatchers (:mod:`vpop.jobs.dispatch`) run them when they are announced. Every
other job does; queuing one also sends a wake-up on the ``jobs`` channel
(:mod:`vpop.core.wake`), so an idle worker in any process on this machine picks it at once
instead of at its next poll.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from huey import Huey
from huey.consumer import Consumer, Worker
from huey.storage import BaseStorage, RedisStorage, SqliteStorage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vpop.core.db import session_scope
from vpop.core.errors import ConfigError
from vpop.core.locks import (
    ROUTER_PREFIX,
    LockBusy,
    clear_expired,
    hold,
    hold_free,
    live_locks,
    lock_ttl,
    router_lock_name,
)
from vpop.core.settings import load_settings
from vpop.core.time import utcnow
from vpop.core.wake import JOBS, QOS, Listener, notify
from vpop.jobs.dispatch import announce, announce_waiting, run_router, waiting_routers
from vpop.selection import service as engine
from vpop.selection.service import Order, OrderStatus

log = logging.getLogger(__name__)


SWEEP_SECONDS = 5.0


STALE_AFTER = timedelta(seconds=10)


# orders waiting this long while nobody holds their router's lock are re-queued at once
UNHELD_AFTER = timedelta(seconds=1)


# how long a graceful stop waits for running jobs (a stop must end within 2 s; a job cut off
# leaves nothing lost: its locks end with their lease, its order is recovered)
SHUTDOWN_SECONDS = 1.5


def _open_storage(name: str) -> BaseStorage:
    """The storage ``VPOP_QUEUE_URL`` names, opened now."""
    url = load_settings().queue_url
    if url.startswith("redis://"):
        return RedisStorage(name, url=url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStorage(name, filename=str(path), timeout=30)
    raise ConfigError(f"VPOP_QUEUE_URL must be sqlite:///PATH or redis://..., not {url!r}")


class _LazyStorage:
    """Huey's storage, opened on first use rather than when this module is imported.

    Huey builds its storage in its constructor, and the tasks below need the ``huey`` object
    at import time; this stand-in lets importing the queue (the CLI, the API, tests) open
    no file and no connection until a job is really queued or consumed.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._storage: BaseStorage | None = None
        self._lock = threading.Lock()

    def _open(self) -> BaseStorage:
        with self._lock:
            if self._storage is None:
                self._storage = _open_storage(self._name)
            return self._storage

    def __getattr__(self, attr: str) -> Any:
        storage = self.__dict__.get("_storage") or self._open()
        return getattr(storage, attr)


huey = Huey("vpop", storage_class=_LazyStorage, results=False)


def opened_storage() -> BaseStorage | None:
    """The queue's storage if this process has opened it yet, else None."""
    storage: _LazyStorage = huey.storage
    return storage.__dict__.get("_storage")


_wake = threading.Event()

#: The job each of this process's consumer threads runs now, and since when (monotonic): what
#: a worker's slow stop names (:class:`vpop.jobs.runner.Worker`).
_running: dict[int, tuple[str, float]] = {}


@huey.pre_execute()  # type: ignore[untyped-decorator]
def _job_started(task: Any) -> None:
    args = ", ".join(repr(arg) for arg in task.args)
    _running[threading.get_ident()] = (f"{task.name}({args[:200]})", time.monotonic())


@huey.post_execute()  # type: ignore[untyped-decorator]
def _job_ended(task: Any, value: Any, exception: Exception | None) -> None:
    _running.pop(threading.get_ident(), None)


def running_jobs() -> list[str]:
    """The jobs this process runs now, each with how long it has run."""
    now = time.monotonic()
    return sorted(f"{job} for {now - since:.2f} s" for job, since in list(_running.values()))


def wake_workers() -> None:
    """Tell idle workers, in this process and in the worker processes, that a job waits."""
    _wake.set()
    notify(JOBS)  # the channel of queued jobs (callbacks, reconciles, monitoring, leases, CoA)


def forward_wakeups(stop: threading.Event) -> threading.Thread:
    """Start a thread that wakes this process's idle workers when another process queues a
    job (the ``jobs`` channel), until ``stop`` is set."""
    listener = Listener(JOBS)

    def forward() -> None:
        try:
            while not stop.is_set():
                if listener.wait(1.0):
                    _wake.set()
        finally:
            listener.close()

    thread = threading.Thread(target=forward, name="vpop-jobs-wake", daemon=True)
    thread.start()
    return thread


class _WakeableWorker(Worker):  # type: ignore[misc]
    delay: float
    default_delay: float
    max_delay: float
    backoff: float

    def sleep(self) -> None:
        if self.delay > self.max_delay:
            self.delay = self.max_delay
        if _wake.wait(self.delay):
            _wake.clear()
            self.delay = self.default_delay
            return
        self.delay *= self.backoff


class EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """A huey consumer whose idle workers wake as soon as this process enqueues a job."""

    def _create_worker(self) -> Worker:
        return _WakeableWorker(
            huey=self.huey,
            default_delay=self.default_delay,
            max_delay=self.max_delay,
            backoff=self.backoff,
            stop_flag=self.stop_flag,
            max_tasks=self.max_tasks,
        )


def make_consumer(workers: int = 4) -> Consumer:
    """The consumer `vpop serve` and `vpop worker` run (they wire the signals first:
    :mod:`vpop.jobs.wiring`)."""
    return EmbeddedConsumer(
        huey,
        workers=workers,
        worker_type="thread",
        initial_delay=0.05,
        backoff=1.5,
        max_delay=0.5,
        periodic=True,
        check_worker_health=True,
        # SIGTERM stops gracefully: running jobs finish and release their locks (a job
        # still running after the timeout is cut off; its locks end with their lease)
        graceful_signal="TERM",
        shutdown_timeout=SHUTDOWN_SECONDS,
    )


def start_background(consumer: Consumer) -> None:
    """Start a consumer's workers and scheduler as threads, without signal handlers
    (for an embedding process that keeps its own main thread: benchmarks, tests)."""
    consumer.scheduler.start()
    for _, process in consumer.worker_threads:
        process.start()


def stop_background(consumer: Consumer, timeout: float = SHUTDOWN_SECONDS) -> None:
    """Stop what :func:`start_background` started and wait for it, ``timeout`` seconds at
    most (its threads are daemons: one still in a job ends with the process)."""
    deadline = time.monotonic() + timeout
    consumer.stop_flag.set()
    _wake.set()
    for _, process in consumer.worker_threads:
        process.join(max(0.0, deadline - time.monotonic()))
    consumer.scheduler.join(max(0.0, deadline - time.monotonic()))


def storage_problem() -> str | None:
    """Why the queue's storage cannot be reached now, or None when it answers (health)."""
    try:
        huey.storage.queue_size()
    except Exception as err:  # any driver error means the same: jobs cannot be queued
        return f"{type(err).__name__}: {err}"
    return None


@huey.task()  # type: ignore[untyped-decorator]
def reconcile_task(router: str) -> int | None:
    """Converge one router to the confirmed selections (waits up to one lease for the lock);
    orders that came while it held the router's lock are announced when it lets go."""
    try:
        return engine.reconcile(router, requester="auto-reconcile", wait=lock_ttl()).id
    except LockBusy:
        log.info("reconcile of %s skipped: its lock stayed busy (the sweep tries again)", router)
        return None
    finally:
        announce_waiting(router)


@huey.task(retries=5, retry_delay=2)  # type: ignore[untyped-decorator]
def callback_task(order_id: int) -> str:
    """Send the order's signed callback (retried on failure)."""
    from vpop.selection.service import send_order_callback

    return send_order_callback(order_id)


def enqueue_router(router: str) -> None:
    """Announce the router's waiting orders to the worker processes (after the commit: the
    RECEIVED order rows are the queue, :mod:`vpop.jobs.dispatch`). In huey's immediate mode
    (tests) the run happens here, in the caller, like every other job then."""
    if huey.immediate:
        with contextlib.suppress(LockBusy):
            run_router(router)
        return
    announce(router)


def enqueue_reconcile(router: str, delay: float = 1.0) -> None:
    """Queue a reconcile of the router after ``delay`` seconds."""
    reconcile_task.schedule(args=(router,), delay=delay)
    wake_workers()


def callback_due(session: Session, order: Order) -> bool:
    """Whether a finished order has a callback to send (it gave a callback URL)."""
    return bool(order.callback_url)


def recover() -> dict[str, Any]:
    """Recover what dead holders left: RUNNING orders and runs, ended leases, waiting orders.

    Orders left RUNNING whose router lock is no longer live become UNKNOWN at once and their
    routers are reconciled now; runs left RUNNING are closed as FAILED; ended leases are
    cleared; routers with RECEIVED orders are queued. Called when ``vpop serve`` and
    ``vpop worker`` start, and by every :func:`sweep`.

    Returns:
        ``{"recovered": [routers reconciled], "expired": [lock names cleared],
        "waiting": [routers queued]}``.
    """
    recovered = engine.recover_abandoned()
    expired = clear_expired()
    waiting = waiting_routers()
    for router in recovered:
        enqueue_reconcile(router, delay=0)
    for router in waiting:
        enqueue_router(router)
    return {"recovered": recovered, "expired": expired, "waiting": sorted(waiting)}


#: Seconds between two searches for RADIUS sessions that never got their Stop.
STALE_RADIUS_EVERY = 60.0
_stale_radius_at: list[float] = []  # when this process last searched (monotonic)


def _close_stale_radius() -> list[int]:
    """Close silent RADIUS sessions (``vpop.aaa``), at most once a minute per process."""
    from vpop.aaa.service import close_stale

    now = time.monotonic()
    if _stale_radius_at and now - _stale_radius_at[-1] < STALE_RADIUS_EVERY:
        return []
    _stale_radius_at[:] = [now]
    return close_stale()


def sweep() -> dict[str, Any]:
    """Safety net: recover dead holders' work, re-enqueue stale orders, reconcile UNKNOWN ones.

    Returns:
        What it found: ``recovered`` (routers whose abandoned orders became UNKNOWN),
        ``expired`` (locks whose holder died), ``stale`` (routers with RECEIVED orders older
        than :data:`STALE_AFTER`), ``unknown`` (routers with UNKNOWN orders),
        ``consents_expired`` (pending orders nobody confirmed in time, now EXPIRED) and
        ``radius_stale`` (RADIUS sessions closed for silence, searched once a minute).
    """
    consents_expired = engine.expire_consents()
    radius_stale = _close_stale_radius()
    recovered = engine.recover_abandoned()
    expired = clear_expired()
    now = utcnow()
    live = live_locks(prefix=ROUTER_PREFIX)
    with session_scope() as session:
        waiting = session.execute(
            select(Order.router, func.min(Order.created_at))
            .where(Order.status == OrderStatus.RECEIVED.value)
            .group_by(Order.router)
        ).all()
    # waiting past STALE_AFTER, or past a moment while nobody holds the router: the job
    # that should have taken them was lost (with the process that held the lock)
    stale = {
        router
        for router, oldest in waiting
        if oldest < now - STALE_AFTER
        or (oldest < now - UNHELD_AFTER and router_lock_name(router) not in live)
    }
    with session_scope() as session:
        unknown = set(
            session.scalars(select(Order.router).where(Order.status == OrderStatus.UNKNOWN.value))
        )
    for router in stale:
        enqueue_router(router)
    for router in unknown | set(recovered):
        enqueue_reconcile(router, delay=0)
    return {
        "recovered": recovered,
        "expired": expired,
        "stale": sorted(stale),
        "unknown": sorted(unknown),
        "consents_expired": consents_expired,
        "radius_stale": radius_stale,
    }


@huey.task()  # type: ignore[untyped-decorator]
def monitor_task(job: str, router: str | list[str] | None) -> Any:
    """One monitoring job (counters, probes, prune; ``leases``, the lease schedule;
    ``payments``, expiring uncaptured authorisations) for one router (None for prune, leases
    and payments; for counters, a list: a batch polled at once); overlapping runs of the same
    job and router are skipped, not queued up."""
    from vpop.monitoring import service as monitoring

    if (
        job not in ("counters", "probes", "prune", "leases", "payments")
        or (job in ("counters", "probes") and not router)
        or (job != "counters" and isinstance(router, list))
    ):
        raise ValueError(f"unknown monitoring job {job!r} for {router!r}")
    if job == "counters" and router:
        return _poll_counters([router] if isinstance(router, str) else router)
    try:
        with hold(f"monitor:{job}:{router}"):
            if job == "probes" and router:
                probed = monitoring.probe_router(str(router))
                notify(QOS)  # the API processes' current-QoS caches read the new samples
                return probed
            if job == "leases":
                from vpop.leasing.service import enforce_schedule

                return enforce_schedule()
            if job == "payments":
                from vpop.jobs.billing_tasks import expire_due  # imported by the jobs that need it

                return expire_due()
            return monitoring.prune()
    except LockBusy:
        return None  # the same poll is running elsewhere: skip this one


def _poll_counters(routers: list[str]) -> dict[str, Any]:
    """Poll a batch of routers' counters, each router under its own lock (all taken in one
    transaction): a router whose poll runs elsewhere is skipped (left out of the summaries),
    the others are polled."""
    from vpop.monitoring import service as monitoring

    names = {f"monitor:counters:{router}": router for router in routers}
    with hold_free(list(names)) as held:
        mine = [names[name] for name in held]
        return monitoring.poll_counters_many(mine) if mine else {}


def enqueue_monitor(job: str, router: str | list[str] | None) -> None:
    """Queue one monitoring job."""
    monitor_task(job, router)
    wake_workers()


@huey.task(retries=5, retry_delay=5)  # type: ignore[untyped-decorator]
def lease_task(lease_id: int) -> str:
    """Provision (or end) a lease on its router; retried while the router is unreachable."""
    from vpop.leasing.service import provision

    try:
        return provision(lease_id)
    finally:  # it held its router's lock: orders that came meanwhile were left to it
        announce_waiting()


def enqueue_lease(lease_id: int) -> None:
    """Queue a lease's provisioning (after it is written)."""
    lease_task(lease_id)
    wake_workers()


@huey.task(retries=5, retry_delay=2)  # type: ignore[untyped-decorator]
def event_callback_task(event_id: int) -> str:
    """Send a utilisation event's signed callback to its ISP (retried on failure)."""
    from vpop.leasing.service import send_event_callback

    return send_event_callback(event_id)


def enqueue_event_callback(event_id: int) -> None:
    """Queue a utilisation event's callback."""
    event_callback_task(event_id)
    wake_workers()
