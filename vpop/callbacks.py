"""Signed callbacks (Standard Webhooks) to an order's requester when the order ends."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from vpop.db import Order, session_scope
from vpop.errors import VpopError
from vpop.orders import order_view

TIMEOUT = 5.0


class CallbackFailed(VpopError):
    """The callback URL did not accept the callback (it is retried)."""

    code = "VPOP-502-CALLBACK"


def signing_secret() -> str | None:
    """``VPOP_CALLBACK_SECRET``, else the first of ``VPOP_WEBHOOK_SECRETS``."""
    secret = os.environ.get("VPOP_CALLBACK_SECRET")
    if secret:
        return secret
    secrets = [s.strip() for s in os.environ.get("VPOP_WEBHOOK_SECRETS", "").split(",")]
    return next((s for s in secrets if s), None)


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
    secret = signing_secret()
    if secret is None:
        _record(order_id, "not sent: no signing secret configured")
        return "not sent"
    msg_id = f"order-{order_id}-final"
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, now, payload)
    request = urllib.request.Request(
        url,
        data=payload.encode(),
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        _record(order_id, f"failed: {err}")
        raise CallbackFailed(f"callback to {url} failed: {err}") from err
    if not 200 <= status < 300:
        _record(order_id, f"failed: HTTP {status}")
        raise CallbackFailed(f"callback to {url} answered HTTP {status}")
    _record(order_id, f"delivered: HTTP {status}")
    return "delivered"


def _record(order_id: int, outcome: str) -> None:
    with session_scope() as session:
        order = session.get(Order, order_id)
        if order is not None:
            order.callback_status = outcome
