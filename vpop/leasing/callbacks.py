"""Signed callbacks to an ISP when a utilisation event of its lease opens or closes (to the
ISP's callback URL; Standard Webhooks signatures; retried by the queue).
"""

from __future__ import annotations

import json

from vpop.core.callbacks import CallbackFailed, post_signed
from vpop.core.db import session_scope


def send_event_callback(event_id: int) -> str:
    """POST a utilisation event (opened or closed) to its ISP's callback URL, signed.

    Raises:
        CallbackFailed: the receiver answered non-2xx or could not be reached (retried).
    """
    from vpop.catalogue.service import Isp
    from vpop.leasing.models import Lease, UtilisationEvent

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
    status = post_signed(url, msg_id, payload)
    with session_scope() as session:
        event = session.get(UtilisationEvent, event_id)
        if event is not None:
            event.callback_status = status
    if not status.startswith("delivered"):
        raise CallbackFailed(f"event callback to {url}: {status}")
    return status
