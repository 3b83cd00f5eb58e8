"""The queue's jobs for the AAA domain: the CoA that moves a live RADIUS session.

The wiring (:mod:`vpop.jobs.wiring`) asks :func:`coa_due` for every
:data:`~vpop.selection.signals.order_finished`. Only a done, real order whose line has an
open RADIUS session is queued, and never one requested by ``radius``: such an order follows
an Access-Accept that already gave the NAS its ISP. The task sends the CoA (or Disconnect)
to each session's NAS, retrying a silent NAS itself (:mod:`vpop.aaa.coa`), and records the
outcome on the order (``coa_result``) and in the audit log.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from vpop.aaa import service as aaa
from vpop.core.audit import audit
from vpop.core.db import session_scope
from vpop.jobs.queue import huey
from vpop.selection.service import Order, OrderStatus

#: The requester of the orders that follow an Access-Accept (they need no CoA).
RADIUS_REQUESTER = "radius"


def _wants_coa(order: Order | None) -> bool:
    return (
        order is not None
        and order.status == OrderStatus.DONE_SUCCESS
        and not order.dry_run
        and order.requester != RADIUS_REQUESTER
    )


def send_coa_for_order(order_id: int, url: str | None = None) -> str | None:
    """Move the live RADIUS sessions of a done order's line to its ISP; record the outcome.

    Args:
        order_id: The finished order.
        url: The database (default: the configured one).

    Returns:
        What was recorded on the order (``ACK``, ``NAK 503 session context not found``,
        ``no answer after 3 tries``, ...), or None when nothing was sent (not a done real
        order, requested by ``radius``, or no open session that had to move).
    """
    with session_scope(url) as db:
        order = db.get(Order, order_id)
        if order is None or not _wants_coa(order):
            return None
        line_id, isp, losing = order.line_id, order.isp_id, order.losing_isp_id
    result = aaa.move_line_sessions(line_id, isp, losing, url=url)
    if result is None:
        return None
    with session_scope(url) as db:
        order = db.get(Order, order_id)
        assert order is not None
        order.coa_result = result
        audit(db, "vpop", "radius.coa", f"order:{order_id}", line=line_id, isp=isp, result=result)
    return result


@huey.task()  # type: ignore[untyped-decorator]
def coa_task(order_id: int) -> str | None:
    """Send the CoA for a done order (the sender retries a silent NAS; the task does not)."""
    return send_coa_for_order(order_id)


def coa_due(session: Session, order: Order) -> bool:
    """Whether a finished order's line has a live RADIUS session to move (a CoA to send)."""
    return _wants_coa(order) and aaa.has_open_session(session, order.line_id)
