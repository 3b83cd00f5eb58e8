"""A payment as JSON: what the API answers, the callbacks carry and the pages show."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vpop.billing.payment_models import Payment, PaymentEvent
from vpop.core.time import iso


def event_view(event: PaymentEvent) -> dict[str, Any]:
    """One event of a payment's history: ``kind, amount_minor, at, actor, note``."""
    return {
        "kind": event.kind,
        "amount_minor": event.amount_minor,
        "at": iso(event.at),
        "actor": event.actor,
        "note": event.note,
    }


def payment_view(payment: Payment, events: Sequence[PaymentEvent] | None = None) -> dict[str, Any]:
    """The payment as JSON, with its history (``events``, oldest first; [] when not given).

    Keys: ``id, status, decline_reason, payee, isp, subscriber, identified_by,
    amount_minor, captured_minor, refunded_minor, currency, item, merchant_reference,
    created_at, expires_at, disputed_at, dispute_reason, events``; times are ISO 8601 UTC.
    """
    return {
        "id": payment.id,
        "status": payment.status,
        "decline_reason": payment.decline_reason,
        "payee": payment.payee_id,
        "isp": payment.isp_id,
        "subscriber": payment.subscriber_id,
        "identified_by": payment.identified_by,
        "amount_minor": payment.amount_minor,
        "captured_minor": payment.captured_minor,
        "refunded_minor": payment.refunded_minor,
        "currency": payment.currency,
        "item": payment.item,
        "merchant_reference": payment.merchant_reference,
        "created_at": iso(payment.created_at),
        "expires_at": iso(payment.expires_at),
        "disputed_at": iso(payment.disputed_at),
        "dispute_reason": payment.dispute_reason,
        "events": [event_view(event) for event in events or ()],
    }
