"""The schedulers that run beside the queue's workers in ``vpop serve``: the monitor (counter
polls, QoS probes and pruning per router, each at its own interval, and the lease schedule:
leases start and end on time) and the sweeper (the safety
net that recovers what dead holders left RUNNING, re-queues waiting orders and reconciles
uncertain routers). Both are threads that stop
on their ``stop_event``; what they start runs on the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vpop.core.locks import lock_ttl
from vpop.core.settings import load_settings
from vpop.jobs.queue import SWEEP_SECONDS, sweep
from vpop.monitoring.service import MonitorSettings, routers

log = logging.getLogger(__name__)


class Monitor(threading.Thread):
    """Enqueues the monitoring jobs at their intervals (bounded, stoppable), the ``leases``
    job (:func:`vpop.leasing.service.enforce_schedule`) every ``VPOP_LEASE_CHECK_SECONDS``,
    and the ``payments`` job (expiring uncaptured authorisations,
    :func:`vpop.billing.service.expire_payments`) every ``VPOP_PAYMENT_CHECK_SECONDS``, the
    first one interval after the start (holds last days: nothing is due at once)."""

    def __init__(
        self,
        enqueue: Callable[[str, str | list[str] | None], None],
        settings: MonitorSettings | None = None,
        lease_seconds: float | None = None,
        payment_seconds: float | None = None,
    ) -> None:
        """Enqueue through ``enqueue(job, router)``; the intervals are ``settings`` (default
        the configured ones), ``lease_seconds`` (default ``lease_check_seconds``) and
        ``payment_seconds`` (default ``payment_check_seconds``)."""
        super().__init__(name="vpop-monitor", daemon=True)
        self.enqueue = enqueue
        self.settings = settings or MonitorSettings()
        configured = load_settings()
        self.lease_seconds = (
            configured.lease_check_seconds if lease_seconds is None else lease_seconds
        )
        self.payment_seconds = (
            configured.payment_check_seconds if payment_seconds is None else payment_seconds
        )
        self.stop_event = threading.Event()

    def run(self) -> None:
        intervals = {
            "counters": self.settings.counters_seconds,
            "probes": self.settings.probes_seconds,
            "prune": self.settings.prune_seconds,
            "leases": self.lease_seconds,
            "payments": self.payment_seconds,
        }
        due = {job: time.monotonic() for job in intervals}
        due["payments"] += self.payment_seconds
        while not self.stop_event.wait(0.25):
            now = time.monotonic()
            for job, interval in intervals.items():
                if interval <= 0 or now < due[job]:
                    continue
                due[job] = now + interval
                try:
                    if job in ("prune", "leases", "payments"):
                        self.enqueue(job, None)
                    elif job == "counters":  # a job per batch: asked at once, one transaction
                        names, size = routers(), self.settings.batch
                        for first in range(0, len(names), size):
                            self.enqueue(job, names[first : first + size])
                    else:
                        for router in routers():
                            self.enqueue(job, router)
                except Exception:
                    log.exception("could not schedule %s", job)


def sweep_interval() -> float:
    """Seconds between sweeps: :data:`SWEEP_SECONDS`, or half a lock lease when that is
    shorter, so that work a dead holder left is recovered within 1.5 leases of its death."""
    return min(SWEEP_SECONDS, lock_ttl() / 2)


class Sweeper(threading.Thread):
    """Runs :func:`sweep` every few seconds (huey's own periodic tasks tick once a minute)."""

    def __init__(self, interval: float | None = None) -> None:
        """Sweep every ``interval`` seconds (default :func:`sweep_interval`)."""
        super().__init__(name="vpop-sweeper", daemon=True)
        self.interval = sweep_interval() if interval is None else interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                sweep()
            except Exception:
                log.exception("sweep failed")
