"""The one place side effects are wired: each domain's signals to the jobs that follow them.

Called once by the processes that serve the API or run the engine and the monitors
(``vpop serve``, ``vpop worker``, benchmarks); importing a domain, the queue, the app or this
module connects nothing. Connecting twice is harmless: blinker keeps one connection per
receiver.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from blinker import NamedSignal
from sqlalchemy import or_, select

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

log = logging.getLogger(__name__)


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
    with _ended_lock:
        first = not _ended
        _ended.append(order_id)
    if first:  # else a decision already queued takes this order too
        # off the router's thread in a worker (its next order need not wait for these reads)
        followups.submit(_follow_up)


#: Orders that ended and whose follow-ups are not decided yet (in the order they ended).
_ended: list[int] = []
_ended_lock = threading.Lock()


def _follow_up() -> None:
    """Queue the due jobs of every order that ended since the last decision, deciding them
    in one read (a batch of dry runs ends eight orders at once: one session and one query
    for all of them, not one each)."""
    with _ended_lock:
        ids = _ended[:]
        _ended.clear()
    if not ids:
        return
    jobs = (  # (whether it is due, the job): looked up now, so a test can stand one in
        (queue.callback_due, queue.callback_task),
        (consent_tasks.losing_isp_callback_due, consent_tasks.losing_isp_callback_task),
        (aaa_tasks.coa_due, aaa_tasks.coa_task),
    )
    due: list[tuple[Callable[[int], object], int]] = []
    with session_scope() as session:
        # only orders that may have one: a callback URL, or a real run (the losing ISP's
        # callback and the CoA follow done switches only); a dry run without a callback
        # URL has none, and bursts of dry runs end thousands of orders a second
        may_have = or_(Order.callback_url.is_not(None), Order.dry_run.is_(False))
        found = select(Order).where(Order.id.in_(ids), may_have).order_by(Order.id)
        for order in session.scalars(found):
            due += [(job, order.id) for wanted, job in jobs if wanted(session, order)]
    for job, order_id in due:
        try:
            job(order_id)
        except Exception:  # one job that could not be queued must not drop the others
            log.exception("could not queue a follow-up of order %s", order_id)
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
