"""Signed callbacks to the caller of an order when it reaches a final status (Standard Webhooks
signatures, private destinations refused unless allowed; each attempt's outcome recorded on the
order, retried by the queue).
"""

from __future__ import annotations

import json

from vpop.core.callbacks import CallbackFailed, post_signed
from vpop.core.db import session_scope
from vpop.selection.models import Order
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


def _record(order_id: int, outcome: str) -> None:
    with session_scope() as session:
        order = session.get(Order, order_id)
        if order is not None:
            order.callback_status = outcome
