"""Signed callbacks (Standard Webhooks) to an order's requester when the order ends."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import urllib.error
import urllib.parse
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
    status = _post_signed(url, f"order-{order_id}-final", payload)
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


def send_event_callback(event_id: int) -> str:
    """POST a utilisation event (opened or closed) to its ISP's callback URL, signed.

    Raises:
        CallbackFailed: the receiver answered non-2xx or could not be reached (retried).
    """
    from vpop.db import Isp, Lease, UtilisationEvent

    with session_scope() as session:
        event = session.get(UtilisationEvent, event_id)
        if event is None:
            return "no event"
        isp = session.get(Isp, event.isp_id)
        lease = session.get(Lease, event.lease_id)
        if isp is None or not isp.callback_url or lease is None:
            return "no callback"
        url = isp.callback_url
        state = "closed" if event.closed_at else "opened"
        payload = json.dumps(
            {
                "type": f"utilisation.{event.kind}.{state}",
                "data": {
                    "event": event.id,
                    "lease": lease.id,
                    "isp": event.isp_id,
                    "router": lease.router,
                    "uplink": lease.uplink,
                    "kind": event.kind,
                    "opened_at": event.opened_at.isoformat(),
                    "closed_at": event.closed_at.isoformat() if event.closed_at else None,
                    "extreme_pct": event.extreme_pct,
                    "committed_mbps": lease.committed_mbps,
                },
            }
        )
        msg_id = f"event-{event.id}-{state}"
    status = _post_signed(url, msg_id, payload)
    with session_scope() as session:
        event = session.get(UtilisationEvent, event_id)
        if event is not None:
            event.callback_status = status
    if not status.startswith("delivered"):
        raise CallbackFailed(f"event callback to {url}: {status}")
    return status


def refused_destination(url: str) -> str | None:
    """Why a callback must not go to ``url`` (None when it may).

    Callbacks go to URLs that callers chose, so by default they may not reach this host or
    the operator's internal networks (loopback, private, link-local, reserved addresses):
    otherwise any token holder could make vpop POST into them. ``VPOP_CALLBACK_ALLOW_PRIVATE=1``
    lifts this where receivers really live on such networks (the lab, the tests).
    """
    if os.environ.get("VPOP_CALLBACK_ALLOW_PRIVATE") == "1":
        return None
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        return "no host in the callback URL"
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as err:
        return f"cannot resolve {host}: {err}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if (
            address.is_loopback
            or address.is_private
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
            or address.is_unspecified
        ):
            return (
                f"{host} is {address}, an internal address; set VPOP_CALLBACK_ALLOW_PRIVATE=1 "
                "to allow callbacks there"
            )
    return None


def _post_signed(url: str, msg_id: str, payload: str) -> str:
    secret = signing_secret()
    if secret is None:
        return "not sent: no signing secret configured"
    refused = refused_destination(url)
    if refused is not None:
        return f"not sent: {refused}"
    now = datetime.now(UTC)
    request = urllib.request.Request(
        url,
        data=payload.encode(),
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, payload),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        return f"failed: {err}"
    return f"delivered: HTTP {status}" if 200 <= status < 300 else f"failed: HTTP {status}"
