"""The one place side effects are wired: each domain's signals to the jobs that follow them.

Called once by the processes that serve the API or run the engine and the monitors
(``vpop serve``, ``vpop worker``, benchmarks); importing a domain, the queue, the app or this
module connects nothing. Connecting twice is harmless: blinker keeps one connection per
receiver.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from blinker import NamedSignal

from vpop.billing.service import payment_changed
from vpop.core.db import session_scope
from vpop.jobs import aaa_tasks, billing_tasks, consent_tasks, queue
from vpop.jobs.dispatch import announce_finished
from vpop.jobs.followups import followups
from vpop.leasing.service import lease_changed
from vpop.monitoring.service import utilisation_event
from vpop.selection.service import (
    Order,
    order_accepted,
    order_finished,
    reconcile_needed,
    reconcile_requested,
)


def reconcile_now(router: str) -> None:
    """Queue a reconcile that NOC staff asked for, without the usual settling delay."""
    queue.enqueue_reconcile(router, delay=0)


def order_done(order_id: int) -> None:
    """Say the order ended (its long-polls answer), then queue what follows: the
    requester's callback (when it gave a URL), the losing ISP's (the task sends it only
    for a done switch away from an ISP with a callback URL), and the CoA that moves the
    line's live RADIUS sessions to the new ISP (only for a done order with an open
    session, never one requested by ``radius``)."""
    announce_finished(order_id)  # first: a client long-polling the order is waiting
    # off the router's thread in a worker (its next order need not wait for these reads)
    followups.submit(partial(_follow_up, order_id))


def _follow_up(order_id: int) -> None:
    """Queue the finished order's jobs that are due, deciding them all in one read."""
    jobs = (  # (whether it is due, the job): looked up now, so a test can stand one in
        (queue.callback_due, queue.callback_task),
        (consent_tasks.losing_isp_callback_due, consent_tasks.losing_isp_callback_task),
        (aaa_tasks.coa_due, aaa_tasks.coa_task),
    )
    with session_scope() as session:
        order = session.get(Order, order_id)
        due = [job for wanted, job in jobs if order is not None and wanted(session, order)]
    for job in due:
        job(order_id)
    if due:
        queue.wake_workers()


RECEIVERS: tuple[tuple[NamedSignal, Callable[[Any], None]], ...] = (
    (order_accepted, queue.enqueue_router),
    (order_finished, order_done),
    (reconcile_needed, queue.enqueue_reconcile),
    (reconcile_requested, reconcile_now),
    (lease_changed, queue.enqueue_lease),
    (utilisation_event, queue.enqueue_event_callback),
    (payment_changed, billing_tasks.enqueue_payment_callback),
)


def connect() -> None:
    """Connect every receiver: a new order or a changed lease is queued for its router,
    finished orders and utilisation events send their callbacks (a done switch also tells
    the ISP the line left, :mod:`vpop.jobs.consent_tasks`, and moves the line's live RADIUS
    sessions, :mod:`vpop.jobs.aaa_tasks`), a changed payment's payee gets its signed
    callback (:mod:`vpop.jobs.billing_tasks`), and a router whose state
    became uncertain (or that NOC staff name) is reconciled."""
    for signal, receiver in RECEIVERS:
        signal.connect(receiver, weak=False)


def disconnect() -> None:
    """Undo :func:`connect` (tests, embedding processes)."""
    for signal, receiver in RECEIVERS:
        signal.disconnect(receiver)
