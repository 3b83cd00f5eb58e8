"""The queue's jobs for switching with consent: the losing ISP's signed callback.

The wiring (:mod:`vpop.jobs.wiring`) calls :func:`enqueue_losing_isp_callback` for every
:data:`~vpop.selection.signals.order_finished`; only a done switch away from another ISP is
queued, and only when that ISP has a callback URL; the task checks both again when it runs.
"""

from __future__ import annotations

from sqlalchemy import select

from vpop.catalogue.service import Isp
from vpop.core.db import session_scope
from vpop.jobs.queue import huey, wake_workers
from vpop.selection.service import Order, OrderStatus


@huey.task(retries=5, retry_delay=2)  # type: ignore[untyped-decorator]
def losing_isp_callback_task(order_id: int) -> str:
    """Send the losing ISP's signed callback for a done switch (retried on failure)."""
    from vpop.selection.service import send_losing_isp_callback

    return send_losing_isp_callback(order_id)


def enqueue_losing_isp_callback(order_id: int) -> None:
    """Queue the losing ISP's callback when the finished order moved its line away from an
    ISP that has a callback URL (a switch away from one without queues nothing: no job to
    store, dequeue and run per switch)."""
    with session_scope() as session:
        order = session.get(Order, order_id)
        due = (
            order is not None
            and order.status == OrderStatus.DONE_SUCCESS
            and not order.dry_run
            and order.losing_isp_id is not None
            and order.losing_isp_id != order.isp_id
            and bool(session.scalar(select(Isp.callback_url).where(Isp.id == order.losing_isp_id)))
        )
    if due:
        losing_isp_callback_task(order_id)
        wake_workers()
