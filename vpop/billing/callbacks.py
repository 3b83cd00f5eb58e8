"""Signed payment callbacks: each change of a payment is POSTed to its payee's callback URL.

The body is ``{"type": "payment.<event kind>", "payment": <payment_view>, "event": <the
event>}``, signed per Standard Webhooks (:func:`vpop.core.callbacks.post_signed`) with the
message id ``payment-<id>-<event id>``, so a retried delivery is one message to the
receiver. Payees without a callback URL get none. The queue retries failures
(:mod:`vpop.jobs.billing_tasks`).
"""

from __future__ import annotations

import json

from vpop.billing.payment_models import Payee, Payment, PaymentEvent
from vpop.billing.payment_views import event_view, payment_view
from vpop.billing.payments import events_of
from vpop.core.callbacks import CallbackFailed, post_signed
from vpop.core.db import session_scope


def payment_callback_url(payment_id: int, url: str | None = None) -> str | None:
    """The callback URL of the payment's payee, or None."""
    with session_scope(url) as session:
        payment = session.get(Payment, payment_id)
        payee = session.get(Payee, payment.payee_id) if payment is not None else None
        return payee.callback_url if payee is not None else None


def send_payment_callback(payment_id: int, event_id: int, url: str | None = None) -> str:
    """POST the payment (as it is now) and the event to the payee's callback URL, signed.

    Args:
        payment_id: the payment.
        event_id: the event that changed it.
        url: the database (default: the configured one).

    Returns:
        ``no callback`` (no URL, no such event), ``not sent`` (no signing secret, or a
        refused destination) or ``delivered``.

    Raises:
        CallbackFailed: the receiver answered non-2xx or could not be reached (retried).
    """
    with session_scope(url) as session:
        payment = session.get(Payment, payment_id)
        event = session.get(PaymentEvent, event_id)
        if payment is None or event is None or event.payment_id != payment.id:
            return "no callback"
        payee = session.get(Payee, payment.payee_id)
        if payee is None or not payee.callback_url:
            return "no callback"
        target = payee.callback_url
        payload = json.dumps(
            {
                "type": f"payment.{event.kind}",
                "payment": payment_view(payment, events_of(session, payment.id)),
                "event": {"id": event.id, **event_view(event)},
            }
        )
    status = post_signed(target, f"payment-{payment_id}-{event_id}", payload)
    if status.startswith("not sent"):
        return "not sent"
    if not status.startswith("delivered"):
        raise CallbackFailed(f"payment callback to {target}: {status}")
    return "delivered"
