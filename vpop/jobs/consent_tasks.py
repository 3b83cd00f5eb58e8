"""The queue's jobs for switching with consent: the losing ISP's signed callback.

The wiring (:mod:`vpop.jobs.wiring`) asks :func:`losing_isp_callback_due` for every
:data:`~vpop.selection.signals.order_finished`; only a done switch away from another ISP is
queued, and only when that ISP has a callback URL; the task checks both again when it runs.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from vpop.jobs.queue import huey
from vpop.selection.service import Order, losing_isp_callback_url


@huey.task(retries=5, retry_delay=2)  # type: ignore[untyped-decorator]
def losing_isp_callback_task(order_id: int) -> str:
    """Send the losing ISP's signed callback for a done switch (retried on failure)."""
    from vpop.selection.service import send_losing_isp_callback

    return send_losing_isp_callback(order_id)


def losing_isp_callback_due(session: Session, order: Order) -> bool:
    """Whether the finished order moved its line away from an ISP that has a callback URL (a
    switch away from one without queues nothing: no job to store, dequeue and run)."""
    return losing_isp_callback_url(session, order) is not None
