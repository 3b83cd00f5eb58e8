"""The queue's jobs for payments: the payee's signed callback for each payment event, and the
periodic expiry of authorisations nobody captured.

The wiring (:mod:`vpop.jobs.wiring`) calls :func:`enqueue_payment_callback` for every
:data:`~vpop.billing.signals.payment_changed` (sender ``(payment_id, event_id)``, sent after
the commit); only a payee with a callback URL is queued, and the task checks again when it
runs. The monitor (:mod:`vpop.jobs.scheduler`) queues the ``payments`` job every
``VPOP_PAYMENT_CHECK_SECONDS``; it runs :func:`expire_due`.
"""

from __future__ import annotations

from vpop.billing.service import expire_in, payment_callback_url
from vpop.jobs.queue import huey, wake_workers


@huey.task(retries=5, retry_delay=2)  # type: ignore[untyped-decorator]
def payment_callback_task(payment_id: int, event_id: int) -> str:
    """Send one payment event's signed callback to the payee (retried on failure)."""
    from vpop.billing.service import send_payment_callback

    return send_payment_callback(payment_id, event_id)


def enqueue_payment_callback(change: tuple[int, int]) -> None:
    """Queue the callback of a payment event when the payment's payee has a callback URL."""
    payment_id, event_id = change
    if payment_callback_url(payment_id):
        payment_callback_task(payment_id, event_id)
        wake_workers()


def expire_due(url: str | None = None) -> list[int]:
    """Expire the authorisations whose hold ran out (their ids), in one transaction; each
    payee with a callback URL is told (``payment.expired``)."""
    return expire_in(url)
