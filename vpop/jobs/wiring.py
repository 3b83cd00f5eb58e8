"""The one place side effects are wired: each domain's signals to the jobs that follow them.

Called once by the processes that run the engine and the monitors (``vpop serve``,
``vpop worker``, benchmarks); importing a domain, the queue or this module connects nothing.
Connecting twice is harmless: blinker keeps one connection per receiver.
"""

from __future__ import annotations

from vpop.jobs import queue
from vpop.monitoring.service import utilisation_event
from vpop.selection.service import order_finished, reconcile_needed


def connect() -> None:
    """Connect every receiver: callbacks for finished orders and utilisation events, and a
    reconcile for a router whose state became uncertain."""
    order_finished.connect(queue.enqueue_callback, weak=False)
    reconcile_needed.connect(queue.enqueue_reconcile, weak=False)
    utilisation_event.connect(queue.enqueue_event_callback, weak=False)


def disconnect() -> None:
    """Undo :func:`connect` (tests, embedding processes)."""
    order_finished.disconnect(queue.enqueue_callback)
    reconcile_needed.disconnect(queue.enqueue_reconcile)
    utilisation_event.disconnect(queue.enqueue_event_callback)
