"""Signed callbacks to the caller of an order when it reaches a final status (Standard Webhooks
signatures, private destinations refused unless allowed; each attempt's outcome recorded on the
order, retried by the queue), and to the ISP a line leaves when a switch is done.
"""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from vpop.catalogue.service import Isp
from vpop.core.callbacks import CallbackFailed, post_signed
from vpop.core.db import session_scope
from vpop.core.time import iso
from vpop.selection.models import Order, OrderStatus
from vpop.selection.orders import order_view


def send_order_callback(order_id: int) -> str:
    """POST the order's final state to its callback URL, signed; record the outcome.

    Raises:
        CallbackFailed: the receiver answered non-2xx or could not be reached (retried).
    """
    with session_scope() as session:
        order = session.get(Order, order_id)
        if order is None or not order.callback_url:
            return "no callback"
        url = order.callback_url
        payload = json.dumps({"type": "order.finished", "data": order_view(order)})
    status = post_signed(url, f"order-{order_id}-final", payload)
    _record(order_id, status)
    if status.startswith("not sent"):
        return "not sent"
    if not status.startswith("delivered"):
        raise CallbackFailed(f"callback to {url}: {status}")
    return "delivered"


def losing_isp_callback_url(session: Session, order: Order | None) -> str | None:
    """Where to tell the ISP a done switch moved ``order``'s line away from; None when there
    is nothing to tell (not done, a dry run, no switch, or that ISP has no callback URL)."""
    if (
        order is None
        or order.status != OrderStatus.DONE_SUCCESS
        or order.dry_run
        or order.losing_isp_id is None
        or order.losing_isp_id == order.isp_id
    ):
        return None
    isp = session.get(Isp, order.losing_isp_id)
    return isp.callback_url if isp is not None and isp.callback_url else None


def _record(order_id: int, outcome: str) -> None:
    with session_scope() as session:
        order = session.get(Order, order_id)
        if order is not None:
            order.callback_status = outcome


def send_losing_isp_callback(order_id: int) -> str:
    """Tell the ISP a line used before a done switch that the line has left it, signed.

    Sent to the losing ISP's ``callback_url`` (:class:`~vpop.catalogue.models.Isp`) once
    the order is ``DONE_SUCCESS``; the losing ISP is the one the line used when the order was
    accepted (``losing_isp_id``). The body names the line as the losing ISP knew it (its
    subscriber and identifiers), not the gaining ISP. The message id is
    ``order-<id>-lost``, so a retried delivery is one message to the receiver.

    Returns:
        ``no callback`` when there is nothing to send (not done, no losing ISP, no URL),
        else the delivery outcome.

    Raises:
        CallbackFailed: the receiver answered non-2xx or could not be reached (retried).
    """
    with session_scope() as session:
        order = session.get(Order, order_id)
        url = losing_isp_callback_url(session, order)
        if order is None or url is None:
            return "no callback"
        line = order.line
        payload = json.dumps(
            {
                "type": "line.switched_away",
                "data": {
                    "order": order.id,
                    "isp": order.losing_isp_id,
                    "subscriber": line.subscriber_id,
                    "line": line.id,
                    "calling_number": line.calling_number,
                    "circuit_id": line.circuit_id,
                    "access_id": line.access_id,
                    "switched_at": iso(order.finished_at),
                },
            }
        )
    status = post_signed(url, f"order-{order_id}-lost", payload)
    if status.startswith("not sent"):
        return "not sent"
    if not status.startswith("delivered"):
        raise CallbackFailed(f"losing ISP callback to {url}: {status}")
    return "delivered"
